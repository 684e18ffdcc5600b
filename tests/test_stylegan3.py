"""StyleGAN3: NVIDIA-made reference images, an independent reference, the pickle loader, the interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import checkpoint_factories_sg3 as f3
from nada_core.errors import CheckpointError
from nada_core.formats.checkpoints import load_generator, save_generator, summarize_generator
from nada_core.models.sg3_filters import design_lowpass, upfirdn2d
from nada_core.models.stylegan3 import StyleGAN3Config, StyleGAN3Generator, layer_specs
from reference_stylegan3 import ref_generator, ref_synthesis


def assert_matches(got: torch.Tensor, expected, what: str = "") -> None:
    """The issue's bar: ``|got - expected| <= 1e-5 * max(1, max|expected|)`` for every image."""
    expected = torch.as_tensor(np.asarray(expected)).double()
    got = got.detach().double()
    assert got.shape == expected.shape, what
    for g, e in zip(got, expected):
        tol = 1e-5 * max(1.0, float(e.abs().max()))
        err = float((g - e).abs().max())
        assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


def nvidia_config(kwargs: dict) -> StyleGAN3Config:
    fields = {k: v for k, v in kwargs.items() if k not in ("mapping_kwargs", "c_dim")}
    fields["mapping_layers"] = (kwargs.get("mapping_kwargs") or {}).get("num_layers", 2)
    return StyleGAN3Config(**fields)


@pytest.fixture(scope="module")
def data():
    return f3.fixture()


@pytest.mark.parametrize("kind", ["t", "r"])
def test_layer_derivation_equals_nvidia(kind):
    """Sizes, rates, cutoffs, factors, taps and paddings recorded from NVIDIA's objects."""
    _, kwargs, layers = f3.fixture_generator(kind)
    specs = layer_specs(nvidia_config(kwargs))
    assert [s.name for s in specs] == [r["name"] for r in layers]
    for s, r in zip(specs, layers):
        for key in ("in_channels", "out_channels", "in_size", "out_size", "in_sampling_rate", "out_sampling_rate",
                    "conv_kernel", "up_factor", "down_factor", "up_taps", "down_taps", "down_radial", "is_torgb",
                    "is_critically_sampled"):
            assert getattr(s, key) == r[key], (s.name, key)
        assert list(s.padding) == r["padding"], s.name
        for key in ("in_cutoff", "out_cutoff", "in_half_width", "out_half_width"):
            assert math.isclose(getattr(s, key), r[key], rel_tol=1e-12), (s.name, key)


@pytest.mark.parametrize("kind", ["t", "r"])
def test_filter_design_equals_nvidia(kind):
    """Kaiser sinc (separable) and, for -R, the radial jinc filters NVIDIA's code designed."""
    tensors, kwargs, _ = f3.fixture_generator(kind)
    G = StyleGAN3Generator(nvidia_config(kwargs))
    ours = G.state_dict()
    names = [k for k in tensors if k.endswith("_filter")]
    assert names and all(k in ours for k in names)
    assert set(names) == {k for k in ours if k.endswith("_filter")}
    for k in names:
        assert ours[k].shape == tensors[k].shape, k
        assert torch.allclose(ours[k], tensors[k], atol=1e-7, rtol=0), k
    assert (kind == "r") == any(tensors[k].ndim == 2 for k in names)


def test_upfirdn2d_against_direct_sum():
    """upfirdn2d on a small image equals the defining sum, for up/down/crop and both filter kinds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    for f in (torch.rand(4, generator=g, dtype=torch.float64), torch.rand(3, 3, generator=g, dtype=torch.float64)):
        for up, down, pad in ((2, 1, (2, 1, 3, 0)), (1, 2, (1, 1, 1, 1)), (2, 2, (-1, 2, 0, -1))):
            got = upfirdn2d(x, f, up=up, down=down, padding=pad, gain=3.0)
            k = torch.outer(f, f) if f.ndim == 1 else f
            kh, kw = k.shape
            h, w = x.shape[2] * up, x.shape[3] * up
            hp, wp = h + pad[2] + pad[3], w + pad[0] + pad[1]
            out_h, out_w = (hp - kh) // down + 1, (wp - kw) // down + 1
            exp = torch.zeros(1, 2, out_h, out_w, dtype=torch.float64)
            for oy in range(out_h):
                for ox in range(out_w):
                    for i in range(kh):
                        for j in range(kw):
                            # padded-upsampled coordinate -> source pixel (only where it lands on one)
                            py, px = oy * down + i - pad[2], ox * down + j - pad[0]
                            if 0 <= py < h and 0 <= px < w and py % up == 0 and px % up == 0:
                                exp[0, :, oy, ox] += 3.0 * k[kh - 1 - i, kw - 1 - j] * x[0, :, py // up, px // up]
            assert got.shape == exp.shape
            assert torch.allclose(got, exp, atol=1e-12)


@pytest.mark.parametrize("kind", ["t", "r"])
def test_reference_reproduces_nvidia_images(data, kind):
    """The test reference itself against the images NVIDIA's code made (so it can judge ours)."""
    tensors, kwargs, layers = f3.fixture_generator(kind)
    z = torch.from_numpy(data[f"{kind}/z"])
    assert_matches(ref_generator(tensors, kwargs, layers, z), data[f"{kind}/img_psi1"], "reference psi 1")
    ws = torch.from_numpy(data[f"{kind}/ws"])
    assert_matches(ref_synthesis(tensors, kwargs, layers, ws), data[f"{kind}/img_ws"], "reference W+")


@pytest.mark.parametrize("kind", ["t", "r"])
def test_loaded_pkl_matches_nvidia_images(tmp_path, data, kind):
    """A snapshot in NVIDIA's layout, from NVIDIA-made tensors: z, psi + cutoff, W+ and transform."""
    from nada_core.editing.transforms import input_transform

    tensors, kwargs, layers = f3.fixture_generator(kind)
    marker = tmp_path / "executed.txt"
    path = f3.write_nvidia3_pkl(tmp_path / f"stylegan3-{kind}-tiny-16x16.pkl", tensors, kwargs, layers,
                                module_src=f3.SG3_MODULE_SRC.format(marker=str(marker)))
    G = load_generator(path)
    assert not marker.exists()
    assert isinstance(G, StyleGAN3Generator) and G.metadata["format"] == "stylegan3-pkl"
    assert G.config.use_radial_filters == (kind == "r") and G.num_ws == len(layers) + 1
    z = torch.from_numpy(data[f"{kind}/z"])
    with torch.no_grad():
        assert_matches(G(z), data[f"{kind}/img_psi1"], "psi 1")
        assert_matches(G(z, truncation_psi=0.7, truncation_cutoff=2), data[f"{kind}/img_psi07_cut2"], "psi cutoff")
        assert_matches(G.synthesis(torch.from_numpy(data[f"{kind}/ws"])), data[f"{kind}/img_ws"], "W+")
        tx, ty, angle = (float(v) for v in data[f"{kind}/transform_args"])
        m = input_transform(translate=(tx, ty), rotate=angle)
        assert torch.allclose(m, torch.from_numpy(data[f"{kind}/transform"]), atol=1e-6)
        ws = G.mapping(z, truncation_psi=0.5)
        assert_matches(G.synthesis(ws, input_transform=m), data[f"{kind}/img_transform"], "transform")
        # The override is for that call only: the stored buffer stays the identity.
        assert torch.equal(G.synthesis.input.transform, torch.eye(3))


CONFIGS = {
    "t32": dict(img_resolution=32, num_layers=6, margin_size=4, channel_max=12),
    "r16": dict(conv_kernel=1, use_radial_filters=True, channel_base=256, channel_max=16),
    "no_clamp_scale1": dict(conv_clamp=None, output_scale=1.0, num_critical=1, margin_size=0),
    "filters": dict(filter_size=4, lrelu_upsampling=1, first_cutoff=3, img_channels=1, mapping_kwargs={"num_layers": 3}),
    "rect_w": dict(z_dim=6, w_dim=10, num_layers=3, num_critical=0, last_stopband_rel=1.5),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_configs_match_reference(tmp_path, name):
    tensors, kwargs, layers = f3.random_sg3(seed=7, **CONFIGS[name])
    path = f3.write_nvidia3_pkl(tmp_path / "g.pkl", tensors, kwargs, layers, numpy_style="numpy1", protocol=3)
    G = load_generator(path)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, kwargs["z_dim"], generator=g)
    with torch.no_grad():
        assert_matches(G(z, truncation_psi=0.6, truncation_cutoff=2),
                       ref_generator(tensors, kwargs, layers, z, 0.6, 2), name)
        m = torch.tensor([[0.9, -0.3, 0.05], [0.3, 0.9, 0.1], [0.0, 0.0, 1.0]])
        ws = G.mapping(z)
        assert_matches(G.synthesis(ws, input_transform=m), ref_synthesis(tensors, kwargs, layers, ws, m), name)


def test_safetensors_round_trip_rebuilds_stylegan3(tmp_path):
    tensors, kwargs, layers = f3.fixture_generator("r")
    G = load_generator(f3.write_nvidia3_pkl(tmp_path / "r.pkl", tensors, kwargs, layers))
    out = save_generator(G, tmp_path / "r.safetensors")
    G2 = load_generator(out)
    assert isinstance(G2, StyleGAN3Generator) and G2.config == G.config
    assert G2.metadata["source_format"] == "stylegan3-pkl"
    for (k, a), (k2, b) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    info = summarize_generator(G2)
    assert info["architecture"] == "stylegan3" and info["num_ws"] == G.num_ws
    assert info["stylegan3"]["config"].startswith("R")


def test_interface_matches_stylegan2():
    cfg = StyleGAN3Config(img_resolution=16, z_dim=8, w_dim=8, channel_base=128, channel_max=16, num_layers=4,
                          margin_size=2)
    G = StyleGAN3Generator(cfg).eval()
    syn = G.synthesis
    assert G.num_ws == 6 and syn.num_ws == 6
    assert syn.modules_for_w_index(0) == [syn.input]
    assert [syn.conv_for_w_index(i) for i in range(1, 5)] == syn.layers[:4]
    assert syn.conv_for_w_index(5) is None and syn.torgb_for_w_index(5) is syn.layers[-1]
    assert all(syn.torgb_for_w_index(i) is None for i in range(5))
    affines = syn.style_affines()
    assert [(a[2], a[3]) for a in affines] == [(1, "conv"), (2, "conv"), (3, "conv"), (4, "conv"), (5, "torgb")]
    params = dict(G.named_parameters())
    for prefix, module, index, _ in affines:
        assert params[prefix + ".weight"] is module.weight
        assert module.weight.shape[0] == syn.modules_for_w_index(index)[0].in_channels
    roles = G.parameter_roles()
    assert roles["synthesis.input.weight"] == "const" and roles["synthesis.input.affine.weight"] == "affine"
    assert {roles[n] for n in params if n.startswith(f"synthesis.{syn.layer_names[-1]}.") and ".affine." not in n} \
        == {"torgb"}
    assert set(roles.values()) == {"mapping", "affine", "const", "conv", "torgb"}
    # W+ entry i changes only what its layers produce: editing ws[:, 3] leaves layers before it alone.
    ws = G.mapping(torch.randn(1, 8))
    ws2 = ws.clone()
    ws2[:, 3] += 1.0
    with torch.no_grad():
        assert not torch.allclose(syn(ws), syn(ws2))
    # gradients reach W+ and the conv weights
    ws = ws.detach().requires_grad_(True)
    G.requires_grad_(True)
    syn(ws).square().mean().backward()
    assert ws.grad.abs().sum() > 0 and syn.layers[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="3, 3"):
        syn(ws.detach(), input_transform=torch.eye(2))


def test_filter_design_identity_and_sum():
    assert design_lowpass(1, 2.0, 1.0, 16) is None
    f = design_lowpass(12, 4.0, 3.0, 32)
    assert f.shape == (12,) and abs(float(f.sum()) - 1) < 1e-6
    r = design_lowpass(11, 4.0, 3.0, 32, radial=True)  # odd: the r = 0 centre tap is finite
    assert r.shape == (11, 11) and torch.isfinite(r).all() and abs(float(r.sum()) - 1) < 1e-6


def test_conditional_stylegan3_mapping_matches_an_independent_computation(tmp_path):
    """NVIDIA's stylegan3 mapping with c_dim > 0: normalised z and normalised embed(c), concatenated,
    then the fc layers (lrelu * sqrt 2, lr multiplier), broadcast to every W+ entry."""
    tensors, kwargs, layers = f3.fixture_generator("t")
    tensors, kwargs = dict(tensors), dict(kwargs)
    g = torch.Generator().manual_seed(5)
    w_dim, z_dim, c_dim = kwargs["w_dim"], kwargs["z_dim"], 3
    kwargs["c_dim"] = c_dim
    tensors["mapping.embed.weight"] = torch.randn(w_dim, c_dim, generator=g)
    tensors["mapping.embed.bias"] = torch.randn(w_dim, generator=g)
    tensors["mapping.fc0.weight"] = torch.randn(w_dim, z_dim + w_dim, generator=g) / 0.01
    path = f3.write_nvidia3_pkl(tmp_path / "cond.pkl", tensors, kwargs, layers)
    G = load_generator(path, device="cpu")
    assert G.c_dim == c_dim
    z = torch.randn(2, z_dim, generator=g)
    c = torch.eye(c_dim)[[0, 2]]
    with torch.no_grad():
        ws = G.mapping(z, c)
    # independent float64 computation from the NVIDIA-named tensors
    t = {k: v.double() for k, v in tensors.items()}
    norm = lambda x: x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()  # noqa: E731
    y = c.double() @ (t["mapping.embed.weight"] / math.sqrt(c_dim)).t() + t["mapping.embed.bias"]
    x = torch.cat([norm(z.double()), norm(y)], dim=1)
    lr = (kwargs.get("mapping_kwargs") or {}).get("lr_multiplier", 0.01)
    n_map = (kwargs.get("mapping_kwargs") or {}).get("num_layers", 2)
    for i in range(n_map):
        w = t[f"mapping.fc{i}.weight"]
        x = x @ (w * lr / math.sqrt(w.shape[1])).t() + t[f"mapping.fc{i}.bias"] * lr
        x = torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2)
    assert torch.allclose(ws[:, 0].double(), x, atol=1e-5, rtol=1e-5)
    assert torch.equal(ws[:, 0], ws[:, -1])
    with pytest.raises(Exception, match="class"):
        G.mapping(z)  # a conditional model needs its class
    G2 = load_generator(save_generator(G, tmp_path / "cond.safetensors"), device="cpu")
    with torch.no_grad():
        assert torch.equal(G2.mapping(z, c), ws)
