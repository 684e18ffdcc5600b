"""Latents: creation from seeds, rendering, compatibility checks and files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nada_core.errors import CheckpointError, InputError
from nada_core.editing.latents import (Latents, check_compatible, generator_lineage, latents_from_seeds, load_latents,
                               render, save_latents, synthesize)
from nada_core.seeds import z_from_seeds
from tests.factories import tiny_generator


SHA_A = "a" * 64
SHA_B = "b" * 64


def _with_lineage(G, sha):
    """Mark G the way the checkpoint loaders do (metadata of a loaded file)."""
    G.metadata = {"format": "nada-safetensors", "source_sha256": sha}
    G.source_sha256 = sha
    return G


@pytest.fixture(scope="module")
def G():
    return tiny_generator(16)


def test_latents_validates_shapes():
    lat = Latents(torch.zeros(2, 6, 8, dtype=torch.float64))
    assert lat.ws.dtype == torch.float32 and lat.num_ws == 6 and lat.w_dim == 8 and len(lat) == 2
    with pytest.raises(InputError, match="num_ws"):
        Latents(torch.zeros(6, 8))
    with pytest.raises(InputError, match="space"):
        Latents(torch.zeros(1, 6, 8), space="z")
    with pytest.raises(InputError, match="z codes"):
        Latents(torch.zeros(2, 6, 8), z=torch.zeros(3, 4))


def test_latents_from_seeds_match_mapping(G):
    lat = latents_from_seeds(G, "3,7", truncation_psi=0.5)
    z = z_from_seeds([3, 7], G.z_dim)
    with torch.no_grad():
        expected = G.mapping(z, truncation_psi=0.5)
    assert torch.equal(lat.ws, expected)
    assert torch.equal(lat.z, z)
    assert lat.space == "w" and lat.ws.shape == (2, G.num_ws, G.w_dim)
    assert lat.provenance["seeds"] == [3, 7] and lat.provenance["truncation_psi"] == 0.5
    cut = latents_from_seeds(G, [3], truncation_psi=0.5, truncation_cutoff=2)
    assert cut.space == "w+"
    assert not torch.equal(cut.ws[0, 0], cut.ws[0, -1])


def test_render_matches_synthesis_in_batches(G):
    lat = latents_from_seeds(G, "0-4", truncation_psi=0.7)
    calls = []
    out = render(G, lat, batch_size=2, on_progress=lambda done, total: calls.append((done, total)))
    with torch.no_grad():
        expected = G.synthesis(lat.ws, noise_mode="const")
    assert out.shape == (5, 3, 16, 16) and out.device.type == "cpu"
    assert torch.allclose(out, expected, atol=1e-5)
    assert calls == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(InputError, match="batch size"):
        render(G, lat, batch_size=0)


def test_render_works_under_inference_mode(G):
    lat = latents_from_seeds(G, [1])
    with torch.inference_mode():
        out = render(G, lat)
    assert torch.isfinite(out).all()


def test_per_image_noise_maps_are_used(G):
    lat = latents_from_seeds(G, [1, 2])
    noise = [torch.randn(2, 1, c.noise_const.shape[-1], c.noise_const.shape[-1]) for c in G.synthesis.convs]
    with_noise = Latents(lat.ws, "w", None, {}, None, noise)
    out = render(G, with_noise)
    # Independent computation: put each image's maps into the buffers and render it alone.
    for i in range(2):
        saved = [c.noise_const.clone() for c in G.synthesis.convs]
        try:
            with torch.no_grad():
                for c, m in zip(G.synthesis.convs, noise):
                    c.noise_const.copy_(m[i, 0])
                ref = G.synthesis(lat.ws[i:i + 1])
        finally:
            with torch.no_grad():
                for c, s in zip(G.synthesis.convs, saved):
                    c.noise_const.copy_(s)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5)
    assert not torch.allclose(out, render(G, lat), atol=1e-3)  # the maps matter
    # The generator's own buffers were not touched.
    assert torch.equal(synthesize(G, lat.ws), G.synthesis(lat.ws))


def test_plain_w_code_is_broadcast(G):
    lat = latents_from_seeds(G, [5])
    w_only = Latents(lat.ws[:, :1], "w")
    assert torch.allclose(render(G, w_only), render(G, lat), atol=1e-6)


def test_check_compatible_shapes_and_lineage(G):
    lat = latents_from_seeds(G, [1])
    other = tiny_generator(32)
    with pytest.raises(InputError, match=r"16 px|\[N, 8, 32\]"):
        check_compatible(lat, other)
    # Unknown lineage on either side: allowed, with a note.
    assert "cannot verify" in check_compatible(lat, G)
    src = _with_lineage(tiny_generator(16), SHA_A)
    lat_a = latents_from_seeds(src, [1])
    assert lat_a.lineage_sha256 == SHA_A == generator_lineage(src)
    adapted = _with_lineage(tiny_generator(16, seed=3), SHA_A)  # adapted from the same source
    assert check_compatible(lat_a, adapted) is None
    foreign = _with_lineage(tiny_generator(16, seed=4), SHA_B)
    with pytest.raises(CheckpointError) as err:
        check_compatible(lat_a, foreign)
    assert SHA_A[:12] in str(err.value) and SHA_B[:12] in str(err.value)
    with pytest.raises(CheckpointError):
        render(foreign, lat_a)


def test_save_load_round_trip(tmp_path, G):
    lat = latents_from_seeds(_with_lineage(tiny_generator(16), SHA_A), "1-3", truncation_psi=0.6)
    lat.noise = [torch.randn(3, 1, r, r) for r in (4, 8, 8)]
    path = save_latents(lat, tmp_path / "lat.safetensors")
    back = load_latents(path)
    assert torch.equal(back.ws, lat.ws) and torch.equal(back.z, lat.z)
    assert all(torch.equal(a, b) for a, b in zip(back.noise, lat.noise))
    assert back.space == "w" and back.lineage_sha256 == SHA_A
    assert back.provenance == lat.provenance
    plain = Latents(torch.randn(2, 6, 32), "w+")
    back2 = load_latents(save_latents(plain, tmp_path / "plain.safetensors"))
    assert torch.equal(back2.ws, plain.ws) and back2.z is None and back2.noise is None
    assert back2.lineage_sha256 is None and back2.space == "w+"


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "lat.safetensors"
    first = Latents(torch.ones(1, 6, 32))
    save_latents(first, path)

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError):
        save_latents(Latents(torch.zeros(1, 6, 32)), path)
    assert torch.equal(load_latents(path).ws, first.ws)
    assert sorted(os.listdir(tmp_path)) == ["lat.safetensors"]


def test_load_errors(tmp_path, G):
    with pytest.raises(InputError, match="not found"):
        load_latents(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_latents(bad)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp_path / "gen.safetensors"))
    with pytest.raises(CheckpointError, match="generator checkpoint"):
        load_latents(tmp_path / "gen.safetensors")


def test_load_numpy_projector_outputs(tmp_path, G):
    lat = latents_from_seeds(G, [2])
    np.savez(tmp_path / "projected_w.npz", w=lat.ws.numpy())  # NVIDIA projector layout [1, num_ws, w_dim]
    back = load_latents(tmp_path / "projected_w.npz")
    assert torch.equal(back.ws, lat.ws) and back.space == "w" and back.lineage_sha256 is None
    np.save(tmp_path / "w.npy", lat.ws[0, 0].numpy())  # one plain W code [w_dim]
    w = load_latents(tmp_path / "w.npy")
    assert w.num_ws == 1
    assert torch.allclose(render(G, w), render(G, lat), atol=1e-6)
    np.save(tmp_path / "wplus.npy", lat.ws[0].numpy())  # one W+ code [num_ws, w_dim]
    assert load_latents(tmp_path / "wplus.npy").ws.shape == (1, G.num_ws, G.w_dim)


def test_select_and_concat():
    a = Latents(torch.randn(3, 6, 8), "w+", SHA_A, {"seeds": [1, 2, 3]}, torch.randn(3, 4))
    sub = a.select([2, 0])
    assert torch.equal(sub.ws, a.ws[[2, 0]]) and torch.equal(sub.z, a.z[[2, 0]])
    assert sub.provenance["seeds"] == [3, 1]
    with pytest.raises(InputError, match="out of range"):
        a.select(5)
    both = Latents.concat([a, sub])
    assert both.ws.shape == (5, 6, 8) and both.lineage_sha256 == SHA_A
    with pytest.raises(CheckpointError):
        Latents.concat([a, Latents(torch.randn(1, 6, 8), lineage_sha256=SHA_B)])
