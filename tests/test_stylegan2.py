"""The StyleGAN2 generator itself: shapes, truncation, noise, W+ indexing, gradients, config."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nada_core.models.stylegan2 import (Generator, GeneratorConfig, SynthesisLayer, ToRGB, channels_from_base,
                                 channels_from_multiplier)
from reference_stylegan2 import nvidia_reference
from tests.factories import tiny_generator



def make_generator(res: int = 16, seed: int = 0, **kw) -> Generator:
    """The suite's tiny generator (tests/factories.py) at this file's smaller sizes, with every
    usually-zero parameter made non-zero."""
    res_list = [2**i for i in range(2, int(math.log2(res)) + 1)]
    kw.setdefault("channels", tuple((r, max(4, 16 // max(1, r // 16))) for r in res_list))
    kw.setdefault("z_dim", 8)
    kw.setdefault("w_dim", 8)
    kw.setdefault("mapping_layers", 2)
    return tiny_generator(res, seed=seed, bias_std=0.3, w_avg_std=0.5, **kw)


def zs(n: int, dim: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Shapes and structure
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [8, 16, 32, 64])
@pytest.mark.parametrize("variant", ["tiny", "wide_low_res", "gray_dims"])
def test_generator_shapes(res, variant):
    res_list = [2**i for i in range(2, int(math.log2(res)) + 1)]
    kw = {}
    if variant == "wide_low_res":
        kw = dict(channels=tuple((r, 24 if r <= 8 else 6) for r in res_list), z_dim=12, w_dim=12)
    elif variant == "gray_dims":
        kw = dict(img_channels=1, z_dim=6, w_dim=10, mapping_hidden=5, mapping_layers=3)
    G = make_generator(res, **kw)
    L = int(math.log2(res))
    assert G.num_ws == 2 * L - 2 and G.img_resolution == res
    assert len(G.synthesis.convs) == 2 * L - 3 and len(G.synthesis.to_rgbs) == L - 1
    for i, conv in enumerate(G.synthesis.convs):  # resolution and widths per layer
        r = 4 * 2 ** ((i + 1) // 2)
        assert conv.resolution == r and conv.noise_const.shape == (r, r)
        assert conv.conv.out_channels == G.config.channel_dict[r]
    z = zs(3, G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        img = G.synthesis(ws)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert img.shape == (3, G.img_channels, res, res) and torch.isfinite(img).all()
    with torch.no_grad():
        assert torch.equal(img, G(z))


def test_1024_config_f_parameter_count():
    # 30,370,060 is the generator parameter count of both rosinality's Generator(1024, 512, 8,
    # channel_multiplier=2) and NVIDIA's config-f Generator (checked against their code).
    assert channels_from_base(1024) == channels_from_multiplier(1024, 2)
    G = Generator(GeneratorConfig(img_resolution=1024, channels=channels_from_base(1024)))
    assert G.num_ws == 18 and G.num_parameters() == 30_370_060


def test_channel_rules():
    assert dict(channels_from_base(256, 16384, 512)) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert dict(channels_from_multiplier(256, 1)) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    assert dict(channels_from_multiplier(128, 2))[128] == 256


# ----------------------------------------------------------------------------------------------
# Mapping and truncation against a hand computation
# ----------------------------------------------------------------------------------------------


def _hand_mapping(G: Generator, z: torch.Tensor) -> torch.Tensor:
    x = z.double()
    x = x / torch.sqrt((x * x).mean(1, keepdim=True) + 1e-8)
    lr = G.config.mapping_lr_mul
    for layer in G.mapping.layers:
        w, b = layer.weight.double(), layer.bias.double()
        x = x @ (w * lr / math.sqrt(w.shape[1])).T + b * lr
        x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    return x.float()


def test_mapping_and_truncation_match_hand_computation():
    G = make_generator(16, z_dim=6, w_dim=10, mapping_hidden=7, mapping_layers=3)
    z = zs(4, 6)
    w = _hand_mapping(G, z)
    avg = G.w_avg
    with torch.no_grad():
        ws = G.mapping(z)
        assert torch.allclose(ws, w[:, None].expand(-1, G.num_ws, -1), atol=1e-5)
        for psi in (0.0, 0.5, 0.7, 1.3):
            t = G.mapping(z, truncation_psi=psi)
            assert torch.allclose(t, (avg + psi * (w - avg))[:, None].expand_as(t), atol=1e-5), psi
        t = G.mapping(z, truncation_psi=0.6, truncation_cutoff=3)
        assert torch.allclose(t[:, :3], (avg + 0.6 * (w - avg))[:, None].expand(-1, 3, -1), atol=1e-5)
        assert torch.equal(t[:, 3:], ws[:, 3:])
        assert torch.equal(G.mapping(z, truncation_psi=0.6, truncation_cutoff=0), ws)
        assert torch.allclose(G.mapping(z, truncation_psi=0.0), avg.expand_as(ws))


def test_bad_latent_shapes_raise():
    G = make_generator(8)
    with pytest.raises(ValueError, match="z must have shape"):
        G(torch.zeros(2, G.z_dim + 1))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(2, G.num_ws - 1, G.w_dim))
    with pytest.raises(ValueError, match="ws must have shape"):
        G.synthesis(torch.zeros(G.num_ws, G.w_dim))


# ----------------------------------------------------------------------------------------------
# Synthesis numerics with distinct W+ entries, against the independent reference
# ----------------------------------------------------------------------------------------------


def _to_nvidia_names(G: Generator) -> dict[str, torch.Tensor]:
    """Our state dict under NVIDIA's names, for the reference implementation."""
    sd = G.state_dict()
    out = {"mapping.w_avg": sd["mapping.w_avg"], "synthesis.b4.const": sd["synthesis.const"]}
    for i in range(G.config.mapping_layers):
        out[f"mapping.fc{i}.weight"] = sd[f"mapping.layers.{i}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"mapping.layers.{i}.bias"]
    for k in range(len(G.synthesis.convs)):
        r = 4 * 2 ** ((k + 1) // 2)
        dst = "synthesis.b4.conv1" if k == 0 else f"synthesis.b{r}.conv{0 if k % 2 else 1}"
        src = f"synthesis.convs.{k}"
        for a, b in (("weight", "conv.weight"), ("affine.weight", "conv.affine.weight"),
                     ("affine.bias", "conv.affine.bias"), ("bias", "bias"), ("noise_strength", "noise_strength"),
                     ("noise_const", "noise_const")):
            out[f"{dst}.{a}"] = sd[f"{src}.{b}"]
    for j, r in enumerate(G.config.resolutions):
        for a, b in (("weight", "conv.weight"), ("affine.weight", "conv.affine.weight"),
                     ("affine.bias", "conv.affine.bias"), ("bias", "bias")):
            out[f"synthesis.b{r}.torgb.{a}"] = sd[f"synthesis.to_rgbs.{j}.{b}"]
    return out


@pytest.mark.parametrize("clamp", [None, 0.5])
def test_synthesis_matches_reference_for_distinct_w_plus_entries(clamp):
    G = make_generator(32, conv_clamp=clamp)
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = G.synthesis(ws, noise_mode="const")
    expected = nvidia_reference(_to_nvidia_names(G), None, ws=ws, conv_clamp=clamp)
    diff = (got - expected).abs().max().item()
    assert diff <= 1e-5 * max(1.0, expected.abs().max().item()), diff


# ----------------------------------------------------------------------------------------------
# Noise modes
# ----------------------------------------------------------------------------------------------


def test_noise_modes():
    G = make_generator(16)
    ws = G.mapping(zs(2, G.z_dim)).detach()
    with torch.no_grad():
        const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
        none = G.synthesis(ws, noise_mode="none")
        rand1, rand2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    assert torch.equal(const1, const2)
    assert (const1 - none).abs().max() > 1e-3
    assert (rand1 - rand2).abs().max() > 1e-3 and (rand1 - const1).abs().max() > 1e-3
    assert (rand1[0] - rand1[1]).abs().max() > 0  # different samples get different noise
    with torch.no_grad():
        for conv in G.synthesis.convs:
            conv.noise_strength.zero_()
        outs = [G.synthesis(ws, noise_mode=m) for m in ("const", "none", "random")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="sometimes")


# ----------------------------------------------------------------------------------------------
# W+ index -> module mapping (what layer freezing relies on)
# ----------------------------------------------------------------------------------------------


def test_w_plus_index_drives_exactly_the_reported_modules():
    G = make_generator(32)
    syn = G.synthesis
    modules = list(syn.convs) + list(syn.to_rgbs)
    seen: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inputs, out: seen.__setitem__(id(mod), inputs[1].detach().clone()))
             for m in modules]
    try:
        ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            base_img = syn(ws)
            base = dict(seen)
            assert len(base) == len(modules)
            for i in range(G.num_ws):
                ws2 = ws.clone()
                ws2[:, i] += 1.0
                img = syn(ws2)
                changed = {k for k, v in seen.items() if not torch.equal(v, base[k])}
                expected = {id(m) for m in syn.modules_for_w_index(i)}
                assert changed == expected, f"W+ index {i}"
                assert (img - base_img).abs().max() > 0
    finally:
        for h in hooks:
            h.remove()
    # the documented layout
    last = G.num_ws - 1
    assert syn.conv_for_w_index(0) is syn.convs[0] and syn.torgb_for_w_index(0) is None
    assert syn.torgb_for_w_index(1) is syn.to_rgbs[0] and syn.conv_for_w_index(1) is syn.convs[1]
    assert syn.conv_for_w_index(last) is None and syn.torgb_for_w_index(last) is syn.to_rgbs[-1]
    assert all(isinstance(m, (SynthesisLayer, ToRGB)) for i in range(G.num_ws) for m in syn.modules_for_w_index(i))
    with pytest.raises(IndexError):
        syn.modules_for_w_index(G.num_ws)
    with pytest.raises(IndexError):
        syn.conv_for_w_index(-1)


# ----------------------------------------------------------------------------------------------
# Gradients and parameter roles
# ----------------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter_and_every_w_plus_entry():
    G = make_generator(16).train()
    img = G(zs(2, G.z_dim), truncation_psi=0.8, noise_mode="const")
    img.square().mean().backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    G.zero_grad(set_to_none=True)
    ws = G.mapping(zs(2, G.z_dim)).detach().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert (ws.grad.abs().sum(dim=(0, 2)) > 0).all()
    assert all(p.grad is None for p in G.mapping.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.synthesis.parameters())


def test_parameter_roles_are_complete():
    G = make_generator(16)
    roles = G.parameter_roles()
    names = [n for n, _ in G.named_parameters()]
    assert set(roles) == set(names)
    assert set(roles.values()) == {"mapping", "affine", "const", "conv", "torgb"}
    assert roles["synthesis.const"] == "const"
    assert roles["mapping.layers.0.weight"] == "mapping"
    assert roles["synthesis.convs.0.conv.affine.weight"] == "affine"
    assert roles["synthesis.to_rgbs.1.conv.affine.bias"] == "affine"
    assert roles["synthesis.convs.2.conv.weight"] == "conv" and roles["synthesis.convs.2.noise_strength"] == "conv"
    assert roles["synthesis.convs.2.bias"] == "conv"
    assert roles["synthesis.to_rgbs.0.conv.weight"] == "torgb" and roles["synthesis.to_rgbs.0.bias"] == "torgb"
    total = sum(sum(p.numel() for p in G.parameters_with_role(r)) for r in set(roles.values()))
    assert total == G.num_parameters()


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = GeneratorConfig(img_resolution=64, channels=channels_from_base(64, 2048, 128), z_dim=24, w_dim=20,
                          img_channels=1, mapping_layers=3, mapping_hidden=12, mapping_lr_mul=0.02, conv_clamp=256.0,
                          num_fp16_res=4, resample_filter=(1, 2, 1))
    d = json.loads(json.dumps(cfg.to_dict()))
    assert GeneratorConfig.from_dict(d) == cfg
    assert d["channels"] == {"4": 128, "8": 128, "16": 128, "32": 64, "64": 32}
    assert GeneratorConfig.from_dict({**d, "channels": [[4, 128], [8, 128], [16, 128], [32, 64], [64, 32]]}) == cfg
    assert GeneratorConfig(img_resolution=16).channel_dict == {4: 512, 8: 512, 16: 512}  # config-f default rule
    with pytest.raises(ValueError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({**d, "colour": "blue"})
    for bad in (4, 12, 2048):
        with pytest.raises(ValueError, match="power of two"):
            GeneratorConfig(img_resolution=bad)
    with pytest.raises(ValueError, match="channels must give a width"):
        GeneratorConfig(img_resolution=16, channels=((4, 8), (8, 8)))
    with pytest.raises(ValueError, match="mapping_layers"):
        GeneratorConfig(img_resolution=8, mapping_layers=0)


def test_both_modulated_conv_formulations_agree_in_value_and_gradient():
    """Grouped per-sample weights (inference) and activation scaling (autograd) are the same maths."""
    from nada_core.models.stylegan2 import ModulatedConv2d

    torch.manual_seed(0)
    for up, demod, k in ((False, True, 3), (True, True, 3), (False, False, 1)):
        conv = ModulatedConv2d(6, 5, k, w_dim=4, demodulate=demod, up=up)
        x = torch.randn(3, 6, 8, 8, requires_grad=True)
        w = torch.randn(3, 4, requires_grad=True)
        outs, grads = [], []
        for grouped in (True, False):
            conv.grouped = grouped
            y = conv(x, w)
            outs.append(y)
            grads.append(torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum(),
                                             [x, w, conv.weight]))
        assert outs[0].shape == (3, 5, 16 if up else 8, 16 if up else 8)
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
        for g0, g1 in zip(*grads):
            torch.testing.assert_close(g0, g1, rtol=1e-4, atol=1e-5)


def test_automatic_formulation_choice_follows_autograd_and_size():
    """Scaled whenever only the styles need a gradient (per-sample weights would need a per-sample
    weight gradient); otherwise the form with less elementwise work: grouped when the per-sample
    weights (N * out * in * 3 * 3 = 288 here) are no larger than the activations."""
    from nada_core.models.stylegan2 import ModulatedConv2d

    conv = ModulatedConv2d(4, 4, 3, w_dim=4)
    calls = []
    conv._forward_grouped = lambda x, s: calls.append("grouped") or x
    conv._forward_scaled = lambda x, s: calls.append("scaled") or x
    big, small, w = torch.randn(2, 4, 16, 16), torch.randn(2, 4, 2, 2), torch.randn(2, 4)
    with torch.no_grad():
        conv(big, w)
        conv(small, w)
    conv(big, w)                      # the weight requires grad: training, fine layer
    conv(small, w)                    # training, coarse layer
    conv.requires_grad_(False)
    conv(big, w)                      # nothing needs a gradient
    conv(big.requires_grad_(True), w)  # a frozen layer inside a trained network: input gradient only
    conv(big, w.requires_grad_(True))  # codes being optimised (layer selection, inversion)
    assert calls == ["grouped", "scaled", "grouped", "scaled", "grouped", "grouped", "scaled"]
