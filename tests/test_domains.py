"""Compact domains: apply (strength, mixing, layer range), bake, files (bit-exact, hostile), errors."""

from __future__ import annotations

import json
import struct

import pytest
import torch

import checkpoint_factories as cf
from reference_stylegan2 import nvidia_reference
from nada_core.domains import apply_domains, bake, load_domain, save_domain, style_layers
from nada_core.errors import CheckpointError, InputError
from nada_core.formats.checkpoints import load_generator, save_generator
from tests.factories import mixed_style_factors, random_domain, tiny_generator


def _z(G, n=3, seed=5):
    return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))


@pytest.fixture()
def G():
    G = tiny_generator(32, seed=1)
    G.source_sha256 = "ab" * 32
    return G


def _params(G):
    return {k: v.detach().clone() for k, v in G.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# Strengths
# ----------------------------------------------------------------------------------------------


def test_layer_table_follows_the_contract(G):
    layers = style_layers(G)
    assert [l.path for l in layers[:2]] == ["synthesis.convs.0.conv.affine", "synthesis.convs.1.conv.affine"]
    assert [(l.w_index, l.kind) for l in layers if l.kind == "torgb"] == [(1, "torgb"), (3, "torgb"), (5, "torgb"),
                                                                          (7, "torgb")]
    for layer in layers:
        assert layer.channels == G.get_submodule(layer.path).weight.shape[0]
        assert G.get_submodule(layer.path.rsplit(".", 1)[0]).in_channels == layer.channels


def test_strength_zero_is_the_base_bit_for_bit_and_the_base_never_changes(G):
    z = _z(G)
    before = _params(G)
    d, s = random_domain(G, "domain", 1), random_domain(G, "stylespace", 2)
    with torch.no_grad():
        base = G(z)
        for mode in (torch.no_grad, torch.inference_mode):
            with mode():
                A = apply_domains(G, [(d, 0.0), (s, 0.0)])
                assert torch.equal(A(z), base)
                B = apply_domains(G, [(d, 0.8), (s, -1.5)])
                assert not torch.allclose(B(z), base)
        assert torch.equal(G(z), base)  # the base object renders as before
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())
    # Nothing copied: the light generator holds the very same tensors; no hook left on the base.
    assert all(a is b for a, b in zip(B.parameters(), G.parameters()))
    assert not any(m._forward_hooks for m in G.modules())


def test_strength_one_equals_the_baked_generator_and_bake_keeps_lineage(G, tmp_path):
    z = _z(G)
    d, s = random_domain(G, "domain", 3), random_domain(G, "stylespace", 4)
    with torch.no_grad():
        applied = apply_domains(G, [(d, 1.0), (s, 1.0)])(z)
        baked = bake(G, [(d, 1.0), (s, 1.0)])
        diff = (baked(z) - applied).abs().max().item()
    assert diff <= 1e-5 * applied.abs().max().item()
    assert (applied - G(z)).abs().max() > 0.1  # the domains do change the images
    # The baked generator is independent and saves/loads as a plain generator of the same lineage.
    assert not any(a is b for a, b in zip(baked.parameters(), G.parameters()))
    path = save_generator(baked, tmp_path / "baked.safetensors")
    back = load_generator(path)
    assert back.metadata["source_sha256"] == "ab" * 32
    assert back.metadata["provenance"]["nada"]["kind"] == "baked-domains"
    with torch.no_grad():
        assert torch.equal(back(z), baked(z))


def test_saving_an_applied_generator_saves_it_baked(G, tmp_path):
    d = random_domain(G, "stylespace", 9)
    z = _z(G)
    A = apply_domains(G, [(d, 0.5)])
    back = load_generator(save_generator(A, tmp_path / "a.safetensors"))
    with torch.no_grad():
        assert (back(z) - A(z)).abs().max() < 1e-5


def _styles(G, path, w):
    with torch.no_grad():
        return G.get_submodule(path)(w)


@pytest.mark.parametrize("strength", [-1.0, 0.5, 2.0, 3.5])
def test_strengths_scale_and_extrapolate_each_kind_exactly(G, strength):
    w = torch.randn(4, G.w_dim, generator=torch.Generator().manual_seed(0))
    d, s = random_domain(G, "domain", 5), random_domain(G, "stylespace", 6)
    Ad, As = apply_domains(G, [(d, strength)]), apply_domains(G, [(s, strength)])
    for layer in d.layers:
        base = _styles(G, layer.path, w)
        torch.testing.assert_close(_styles(Ad, layer.path, w), base * (1 + strength * d.values[layer.path]))
        torch.testing.assert_close(_styles(As, layer.path, w), base + strength * s.values[layer.path])


def _nv_prefix(path: str, res_list: list[int]) -> str:
    parts = path.split(".")
    i = int(parts[2])
    if parts[1] == "to_rgbs":
        return f"synthesis.b{res_list[i]}.torgb"
    if i == 0:
        return "synthesis.b4.conv1"
    j = (i + 1) // 2
    return f"synthesis.b{res_list[j]}.conv{0 if i % 2 else 1}"


def test_mixing_multiplies_modulations_and_adds_offsets_against_the_reference(tmp_path):
    """Two domain and two stylespace domains with their strengths, against the independent
    reference StyleGAN2 whose affines are rewritten by hand: weight * M, bias * M + A."""
    tensors = cf.nvidia_generator_tensors(img_resolution=16, seed=3)
    G = load_generator(cf.write_nvidia_pkl(tmp_path / "g.pkl", tensors, cf.nvidia_generator_kwargs(img_resolution=16)))
    d1, d2 = random_domain(G, "domain", 11), random_domain(G, "domain", 12, torgb=False)
    o1, o2 = random_domain(G, "stylespace", 13), random_domain(G, "stylespace", 14)
    mix = [(d1, 0.7), (o1, 1.2), (d2, -0.4), (o2, 0.5)]
    res_list = [4, 8, 16]
    expected_t = dict(tensors)
    for layer in style_layers(G):
        p = _nv_prefix(layer.path, res_list)
        M, A = mixed_style_factors(mix, layer.path, layer.channels)
        expected_t[f"{p}.affine.weight"] = tensors[f"{p}.affine.weight"] * M[:, None]
        expected_t[f"{p}.affine.bias"] = tensors[f"{p}.affine.bias"] * M + A
    z = _z(G, 2)
    with torch.no_grad():
        got = apply_domains(G, mix)(z, noise_mode="const")
    expected = nvidia_reference(expected_t, z)
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
    assert (expected - nvidia_reference(tensors, z)).abs().max() > 0.05


def test_chaining_equals_one_stack_and_layer_ranges_limit_the_edit(G):
    z = _z(G)
    d, s = random_domain(G, "domain", 7), random_domain(G, "stylespace", 8)
    with torch.no_grad():
        one = apply_domains(G, [(d, 0.6), (s, 0.9)])(z)
        chained = apply_domains(apply_domains(G, [(d, 0.6)]), [(s, 0.9)])(z)
    assert torch.equal(one, chained)
    w = torch.randn(2, G.w_dim)
    A = apply_domains(G, [(d, 1.0, "0-2")])
    for layer in d.layers:
        same = torch.equal(_styles(A, layer.path, w), _styles(G, layer.path, w))
        assert same == (layer.w_index > 2), layer


def test_autograd_flows_through_an_applied_domain_built_in_inference_mode(G):
    d = random_domain(G, "domain", 1)
    with torch.inference_mode():
        A = apply_domains(G, [(d, 1.0)])
    w = G.mapping(_z(G, 2)).detach().requires_grad_(True)
    A.synthesis(w).square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# Wrong source / architecture, bad strengths
# ----------------------------------------------------------------------------------------------


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text and len(text) < 400
    return text


def test_a_domain_of_another_source_or_architecture_is_refused_in_one_line(G):
    d = random_domain(G, "domain", 1)
    other = tiny_generator(32, seed=2)
    other.source_sha256 = "cd" * 32
    with pytest.raises(CheckpointError) as err:
        apply_domains(other, [(d, 1.0)])
    assert "trained on generator" in _one_line(err)
    small = tiny_generator(16, seed=1)
    with pytest.raises(CheckpointError) as err:
        apply_domains(small, [(d, 1.0)])
    assert "32 px" in _one_line(err)
    wide = tiny_generator(32, seed=1, channels=((4, 48), (8, 48), (16, 16), (32, 8)))
    d2 = random_domain(G, "stylespace", 1)
    d2.source_sha256 = None
    with pytest.raises(CheckpointError) as err:
        apply_domains(wide, [(d2, 1.0)])
    assert "another architecture" in _one_line(err)
    for bad in (float("nan"), "1", True):
        with pytest.raises(InputError):
            apply_domains(G, [(d, bad)])


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def test_domain_files_read_back_bit_exact_and_are_small(G, tmp_path):
    d = random_domain(G, "stylespace", 21)
    d.metadata = {"nada": {"direction": {"source": "photo", "target": "sketch"}}, "metrics": {"x_after": 0.5}}
    path = save_domain(d, tmp_path / "s.safetensors")
    back = load_domain(path)
    assert back.kind == "stylespace" and back.layers == d.layers and back.source_sha256 == "ab" * 32
    assert back.metadata == d.metadata and back.architecture == G.config.to_dict()
    assert all(torch.equal(back.values[k], d.values[k]) and back.values[k].dtype == torch.float32 for k in d.values)
    assert path.stat().st_size < 8 * 1024
    with pytest.raises(InputError):
        save_domain(d, tmp_path / "s.pt")


def _write_raw(path, header: dict, data: bytes = b"") -> str:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return str(path)


def _valid_parts(G):
    d = random_domain(G, "domain", 1, torgb=False)
    layers = [l.to_dict() for l in d.layers]
    meta = {"nada_format": "domain", "format_version": "1", "kind": "domain", "source_sha256": "",
            "layers": json.dumps(layers), "architecture": "{}", "provenance": "{}"}
    header, data, off = {"__metadata__": meta}, b"", 0
    for l in d.layers:
        raw = d.values[l.path].numpy().tobytes()
        header[l.path] = {"dtype": "F32", "shape": [l.channels], "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    return header, data, layers


def test_hostile_domain_files_are_refused_in_one_line(G, tmp_path):
    header, data, layers = _valid_parts(G)
    ok = _write_raw(tmp_path / "ok.safetensors", header, data)
    assert load_domain(ok).num_values == sum(l["channels"] for l in layers)
    first = layers[0]["path"]
    cases = {}

    def case(name, mutate, data_=data):
        h = json.loads(json.dumps(header))
        mutate(h)
        cases[name] = _write_raw(tmp_path / f"{name}.safetensors", h, data_)

    case("huge_shape", lambda h: h[first].update(shape=[10**12]))
    case("huge_channels", lambda h: h["__metadata__"].update(layers=json.dumps(
        [dict(layers[0], channels=10**9)] + layers[1:])))
    case("many_layers", lambda h: h["__metadata__"].update(layers=json.dumps(
        [dict(layers[0], path=f"p{i}") for i in range(1000)])))
    case("wrong_dtype", lambda h: h[first].update(dtype="F16"))
    case("bad_layers_json", lambda h: h["__metadata__"].update(layers="[{not json"))
    case("deep_json", lambda h: h["__metadata__"].update(provenance="[" * 5000 + "]" * 5000))
    case("provenance_not_object", lambda h: h["__metadata__"].update(provenance="[1, 2]"))
    case("bad_kind", lambda h: h["__metadata__"].update(kind="exec"))
    case("not_domain", lambda h: h["__metadata__"].update(nada_format="generator"))
    case("newer_version", lambda h: h["__metadata__"].update(format_version="99"))
    case("metadata_not_text", lambda h: h["__metadata__"].update(kind=["domain"]))
    case("extra_tensor", lambda h: h.update(extra={"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}))
    nan = bytearray(data)
    nan[0:4] = struct.pack("<f", float("nan"))
    case("nan", lambda h: None, bytes(nan))
    case("truncated", lambda h: None, data[:-8])
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    cases["short"] = str(tmp_path / "short.safetensors")
    (tmp_path / "bigheader.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"{}")
    cases["bigheader"] = str(tmp_path / "bigheader.safetensors")
    expect = {"huge_shape": "has shape", "huge_channels": "malformed", "many_layers": "1000 layers",
              "wrong_dtype": "float32", "bad_layers_json": "not valid JSON", "deep_json": "nested deeper",
              "provenance_not_object": "provenance", "bad_kind": "unknown domain kind", "not_domain": "not a ComfyUI-NADA",
              "newer_version": "version", "metadata_not_text": "text values", "extra_tensor": "do not match",
              "nan": "NaN", "truncated": "truncated", "short": "too short", "bigheader": "header size"}
    assert set(expect) == set(cases)
    for name, path in cases.items():
        with pytest.raises(CheckpointError) as err:
            load_domain(path)
        assert expect[name] in _one_line(err), (name, str(err.value))
    with pytest.raises(InputError):
        load_domain(tmp_path / "missing.safetensors")


def test_copies_and_blends_of_an_applied_generator_keep_the_domain(G):
    from nada_core.editing.interpolate import blend_generators
    from nada_core.training.runtime import copy_generator

    d = random_domain(G, "domain", 31)
    A = apply_domains(G, [(d, 0.8)])
    z = _z(G)
    with torch.no_grad():
        ref = A(z)
        assert (copy_generator(A, torch.device("cpu"))(z) - ref).abs().max() < 1e-5
        # alpha 1 of a blend from the base to the applied generator is the applied one.
        assert (blend_generators(G, A, 1.0)(z) - ref).abs().max() < 1e-5
        assert torch.equal(blend_generators(A, G, 1.0)(z), G(z))
