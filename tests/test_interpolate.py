"""Latent paths, easing, style mixing and generator blending."""

from __future__ import annotations

import math

import pytest
import torch

from nada_core.errors import CheckpointError, InputError
from nada_core.editing.interpolate import (EASINGS, blend_generators, blend_sequence, ease, interpolate_latents,
                                   interpolate_path, interpolation_schedule, layer_alphas, parse_layers,
                                   render_blend_sequence, slerp, style_mix, w_index_of_tensor)
from nada_core.editing.latents import Latents, latents_from_seeds, render
from tests.factories import tiny_generator



def _tensors(G):
    out = dict(G.named_parameters())
    out.update(dict(G.named_buffers()))
    return out


def _mark(G, sha):
    G.metadata = {"format": "nada-safetensors", "source_sha256": sha}
    G.source_sha256 = sha
    return G


@pytest.fixture(scope="module")
def pair():
    return tiny_generator(16, seed=1), tiny_generator(16, seed=2)


# ---------------------------------------------------------------------------------------------
# Easing and schedules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("easing", EASINGS)
def test_easing_is_monotone_with_exact_ends(easing):
    assert ease(0.0, easing) == 0.0 and ease(1.0, easing) == 1.0
    values = [ease(i / 200, easing) for i in range(201)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert all(0.0 <= v <= 1.0 for v in values)


def test_easing_shapes_and_errors():
    assert ease(0.5, "linear") == 0.5
    assert ease(0.5, "smoothstep") == pytest.approx(0.5) and ease(0.25, "smoothstep") < 0.25
    assert ease(0.25, "cosine") == pytest.approx(0.5 - 0.5 * math.cos(math.pi / 4))
    assert ease(0.5, "ease-in") < 0.5 < ease(0.5, "ease-out")
    with pytest.raises(InputError, match="easing"):
        ease(0.5, "bounce")
    with pytest.raises(InputError, match="frames"):
        interpolation_schedule(2, 0)


def test_schedule_open_and_loop():
    sched = interpolation_schedule(3, 5)
    assert sched == [(0, 1, 0.0), (0, 1, 0.5), (1, 2, 0.0), (1, 2, 0.5), (1, 2, 1.0)]
    loop = interpolation_schedule(2, 4, loop=True)
    assert loop == [(0, 1, 0.0), (0, 1, 0.5), (1, 0, 0.0), (1, 0, 0.5)]  # no repeated first frame


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["lerp", "slerp"])
@pytest.mark.parametrize("easing", ["linear", "ease-in-out"])
def test_path_endpoints_are_exactly_the_keyframes(mode, easing):
    torch.manual_seed(0)
    keys = torch.randn(3, 4, 16)
    path = interpolate_path(keys, 9, mode=mode, easing=easing)
    assert path.shape == (9, 4, 16)
    assert torch.equal(path[0], keys[0]) and torch.equal(path[-1], keys[-1])
    assert torch.equal(path[4], keys[1])  # frame 4 of 9 sits on the middle keyframe
    loop = interpolate_path(keys, 6, mode=mode, loop=True)
    assert torch.equal(loop[0], keys[0]) and torch.equal(loop[2], keys[1]) and torch.equal(loop[4], keys[2])


def test_lerp_midpoint():
    a, b = torch.zeros(1, 8), torch.arange(8.0)[None]
    path = interpolate_path(torch.cat([a, b]), 3)
    assert torch.allclose(path[1], b[0] / 2)


def test_slerp_keeps_norms_and_matches_the_formula():
    torch.manual_seed(1)
    a, b = torch.randn(64), torch.randn(64)
    b = b * (a.norm() / b.norm())  # same norm
    path = interpolate_path(torch.stack([a, b]), 11, mode="slerp")
    norms = path.norm(dim=-1)
    assert torch.allclose(norms, a.norm().expand(11), rtol=1e-5)
    # Independent formula on the sphere.
    omega = torch.acos(torch.dot(a, b) / (a.norm() * b.norm()))
    t = 0.3
    ref = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    assert torch.allclose(slerp(a, b, t), ref, atol=1e-5)
    # Lerp would shrink the midpoint; slerp does not.
    assert interpolate_path(torch.stack([a, b]), 3)[1].norm() < 0.95 * a.norm()
    # Different norms: the length is interpolated linearly.
    c = 2.0 * torch.randn(64)
    mid = slerp(a, c, 0.5)
    assert float(mid.norm()) == pytest.approx(0.5 * float(a.norm() + c.norm()), rel=1e-5)


def test_slerp_degenerate_cases():
    a = torch.tensor([1.0, 0.0])
    assert torch.allclose(slerp(a, a.clone(), 0.4), a)
    anti = slerp(a, -a, 0.5)
    assert torch.isfinite(anti).all()
    assert torch.equal(slerp(a, -a, 0.0), a)


def test_interpolate_latents_lerp_and_slerp(pair):
    G = pair[0]
    keys = latents_from_seeds(G, [1, 5, 9], truncation_psi=0.7)
    walk = interpolate_latents(keys, 7, mode="slerp", G=G)
    assert walk.ws.shape == (7, G.num_ws, G.w_dim)
    assert torch.equal(walk.ws[0], keys.ws[0]) and torch.equal(walk.ws[3], keys.ws[1])
    assert torch.equal(walk.ws[-1], keys.ws[2])
    # In-between frames are the mapped slerp of z with the same truncation.
    z = interpolate_path(keys.z, 7, mode="slerp")
    with torch.no_grad():
        expected = G.mapping(z, truncation_psi=0.7)
    assert torch.allclose(walk.ws[1], expected[1], atol=1e-6)
    lin = interpolate_latents(keys, 5, mode="lerp")
    assert torch.allclose(lin.ws[1], 0.5 * (keys.ws[0] + keys.ws[1]), atol=1e-6)
    inverted = Latents(keys.ws)  # no z codes
    with pytest.raises(InputError, match="lerp"):
        interpolate_latents(inverted, 5, mode="slerp", G=G)


# ---------------------------------------------------------------------------------------------
# Style mixing
# ---------------------------------------------------------------------------------------------


def test_parse_layers():
    assert parse_layers("coarse", 18) == [0, 1, 2, 3]
    assert parse_layers("middle", 18) == [4, 5, 6, 7]
    assert parse_layers("fine", 18) == list(range(8, 18))
    assert parse_layers("0-2, 5, 16-", 18) == [0, 1, 2, 5, 16, 17]
    assert parse_layers([3, 1], 8) == [1, 3]
    with pytest.raises(InputError, match="no fine layers"):
        parse_layers("fine", 8)
    with pytest.raises(InputError, match="out of range"):
        parse_layers("0-9", 8)
    with pytest.raises(InputError, match="cannot read"):
        parse_layers("top", 8)


def test_style_mix_takes_layers_from_a(pair):
    G = pair[0]
    a = latents_from_seeds(G, [1, 2])
    b = latents_from_seeds(G, [3])  # one code broadcast to both
    mixed = style_mix(a, b, "0-3")
    assert mixed.ws.shape == (2, G.num_ws, G.w_dim) and mixed.space == "w+"
    assert torch.equal(mixed.ws[:, :4], a.ws[:, :4])
    assert torch.equal(mixed.ws[:, 4:], b.ws[:, 4:].expand(2, -1, -1))
    raw = style_mix(a.ws, b.ws, [5])
    assert isinstance(raw, torch.Tensor) and torch.equal(raw[:, 5], a.ws[:, 5]) and torch.equal(raw[:, 0], b.ws[0, 0].expand(2, -1))
    with pytest.raises(InputError, match="cannot mix"):
        style_mix(a, latents_from_seeds(G, [1, 2, 3]), "coarse")


def test_style_mix_noise_follows_layers():
    n = 5
    a = Latents(torch.zeros(1, 6, 4), noise=[torch.full((1, 1, 4, 4), float(i)) for i in range(n)])
    b = Latents(torch.ones(1, 6, 4), noise=[torch.full((1, 1, 4, 4), -float(i) - 1) for i in range(n)])
    mixed = style_mix(a, b, [0, 2])
    assert [float(m[0, 0, 0, 0]) for m in mixed.noise] == [0.0, -2.0, 2.0, -4.0, -5.0]


# ---------------------------------------------------------------------------------------------
# Generator blending
# ---------------------------------------------------------------------------------------------


def test_blend_alpha_0_and_1_are_bit_exact(pair):
    Ga, Gb = pair
    lat = latents_from_seeds(Ga, [0, 1])
    for alpha, ref in ((0.0, Ga), (1.0, Gb)):
        out = blend_generators(Ga, Gb, alpha)
        assert out is not Ga and out is not Gb
        to, tr = _tensors(out), _tensors(ref)
        assert to.keys() == tr.keys()
        assert all(torch.equal(to[k], tr[k]) for k in to)
        assert torch.equal(render(out, lat), render(ref, lat))
        assert not any(p.requires_grad for p in out.parameters())


def test_blend_is_a_lerp_of_every_tensor(pair):
    Ga, Gb = pair
    out = blend_generators(Ga, Gb, 0.25)
    ta, tb, to = _tensors(Ga), _tensors(Gb), _tensors(out)
    for name in ("mapping.w_avg", "synthesis.const", "synthesis.convs.2.noise_const",
                 "synthesis.convs.1.conv.affine.weight", "synthesis.to_rgbs.0.bias", "mapping.layers.0.weight"):
        assert torch.allclose(to[name], 0.75 * ta[name] + 0.25 * tb[name], rtol=1e-5, atol=1e-5), name
    # Inputs untouched.
    assert not torch.equal(_tensors(Ga)["synthesis.const"], to["synthesis.const"])


def test_w_index_of_tensor_names():
    assert w_index_of_tensor("mapping.layers.0.weight") is None
    assert w_index_of_tensor("synthesis.const") == 0
    assert w_index_of_tensor("synthesis.convs.4.conv.affine.bias") == 4
    assert w_index_of_tensor("synthesis.to_rgbs.2.conv.weight") == 5


@pytest.mark.parametrize("index", [0, 3, 5])
def test_per_layer_alpha_touches_only_its_layers(pair, index):
    Ga, Gb = pair
    out = blend_generators(Ga, Gb, {index: 0.5})
    ta, to = _tensors(Ga), _tensors(out)
    changed = {k for k in to if not torch.equal(to[k], ta[k])}
    # Independent expectation from the architecture: conv `index`, toRGB (index-1)/2 for odd
    # indices, the const input for index 0; never the mapping.
    expected_prefixes = [f"synthesis.convs.{index}."]
    if index % 2 == 1:
        expected_prefixes.append(f"synthesis.to_rgbs.{(index - 1) // 2}.")
    if index == 0:
        expected_prefixes.append("synthesis.const")
    expected = {k for k in to if any(k.startswith(p) for p in expected_prefixes)}
    expected = {k for k in expected if not torch.equal(ta[k], _tensors(Gb)[k])}  # tensors equal in both can't change
    assert changed == expected and changed


def test_per_layer_list_and_layer_alphas(pair):
    Ga, Gb = pair
    alphas = layer_alphas(Ga.num_ws, "0-3", 1.0)
    assert alphas == [1.0] * 4 + [0.0] * (Ga.num_ws - 4)
    out = blend_generators(Ga, Gb, alphas, mapping_alpha=0.0)
    ta, tb, to = _tensors(Ga), _tensors(Gb), _tensors(out)
    assert torch.equal(to["synthesis.convs.3.conv.weight"], tb["synthesis.convs.3.conv.weight"])
    assert torch.equal(to["synthesis.convs.4.conv.weight"], ta["synthesis.convs.4.conv.weight"])
    assert torch.equal(to["synthesis.to_rgbs.1.conv.weight"], tb["synthesis.to_rgbs.1.conv.weight"])  # W+ 3
    assert torch.equal(to["mapping.w_avg"], ta["mapping.w_avg"])
    with pytest.raises(InputError, match="per-layer alphas"):
        blend_generators(Ga, Gb, [0.5, 0.5])


def test_blend_refuses_mismatched_generators(pair):
    Ga, _ = pair
    with pytest.raises(InputError, match="architectures"):
        blend_generators(Ga, tiny_generator(32), 0.5)
    a = _mark(tiny_generator(16, seed=5), "a" * 64)
    b = _mark(tiny_generator(16, seed=6), "b" * 64)
    with pytest.raises(CheckpointError, match="aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        blend_generators(a, b, 0.5)
    c = _mark(tiny_generator(16, seed=7), "a" * 64)
    blended = blend_generators(a, c, 0.5)
    from nada_core.editing.latents import generator_lineage

    assert generator_lineage(blended) == "a" * 64  # the blend keeps the shared lineage


def test_blend_sequence_reuses_one_generator(pair):
    Ga, Gb = pair
    Gc = tiny_generator(16, seed=3)
    seen = []
    snapshots = []
    for G in blend_sequence([Ga, Gb, Gc], 5):
        seen.append(id(G))
        snapshots.append({k: v.clone() for k, v in _tensors(G).items()})
    assert len(seen) == 5 and len(set(seen)) == 1
    for frame, ref in ((0, Ga), (2, Gb), (4, Gc)):
        tr = _tensors(ref)
        assert all(torch.equal(snapshots[frame][k], tr[k]) for k in tr), frame
    mid = snapshots[1]["synthesis.const"]
    assert torch.allclose(mid, 0.5 * (Ga.synthesis.const + Gb.synthesis.const), atol=1e-6)


def test_blend_sequence_with_layers_and_stop(pair):
    Ga, Gb = pair
    frames = list(G.synthesis.convs[0].conv.weight.clone() for G in blend_sequence([Ga, Gb], 3, layers="1-"))
    assert all(torch.equal(f, Ga.synthesis.convs[0].conv.weight) for f in frames)  # layer 0 not morphed
    calls = []
    stopped = list(blend_sequence([Ga, Gb], 10, should_stop=lambda: len(calls.append(1) or calls) > 2))
    assert len(stopped) == 2


def test_render_blend_sequence_endpoints(pair):
    Ga, Gb = pair
    lat = latents_from_seeds(Ga, [4, 5])
    frames = list(render_blend_sequence([Ga, Gb], lat, 4))
    assert len(frames) == 4 and frames[0].shape == (2, 3, 16, 16)
    assert torch.equal(frames[0], render(Ga, lat)) and torch.equal(frames[-1], render(Gb, lat))
    assert not torch.equal(frames[1], frames[0])
