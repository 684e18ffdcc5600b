"""Latent editing directions: SeFa, GANSpace, direction files and edits, against independent computations."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from nada_core.editing.direction_files import load_direction, save_direction
from nada_core.editing.latents import Latents, latents_from_seeds, save_latents
from nada_core.editing.semantic import (Directions, check_directions_compatible, edit, ganspace_directions,
                                        parse_strengths, sefa_affines, sefa_directions, sweep)
from nada_core.errors import CheckpointError, InputError, UnsafeCheckpointError
from tests import checkpoint_factories as cf
from tests.factories import tiny_generator


def assert_one_line(err: BaseException) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text


def same_up_to_sign(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> None:
    """Rows of ``a`` and ``b`` equal up to a per-row sign."""
    for i, (x, y) in enumerate(zip(a, b)):
        s = np.sign(np.dot(x, y)) or 1.0
        np.testing.assert_allclose(x, s * y, atol=tol, err_msg=f"row {i}")


# ----------------------------------------------------------------------------------------------
# SeFa
# ----------------------------------------------------------------------------------------------


def _hand_weights(G: torch.nn.Module, seed: int = 7) -> None:
    """Give every style affine a distinct, non-Gaussian weight with very different row scales."""
    rng = np.random.RandomState(seed)
    with torch.no_grad():
        for name, mod in G.named_modules():
            if name.endswith(".affine"):
                out_f, in_f = mod.weight.shape
                base = rng.uniform(-1, 1, size=(out_f, in_f)) + np.linspace(0, 2, in_f)  # shared tilt
                scale = rng.uniform(0.1, 10.0, size=(out_f, 1))
                mod.weight.copy_(torch.from_numpy(base * scale))


def _sefa_reference(weights: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The SeFa paper's computation, written out: columns = style channels' weight rows, each
    normalised; eigen-decomposition of W Wᵀ with a general (non-symmetric) solver; sorted by value."""
    W = np.concatenate([w.T for w in weights], axis=1).astype(np.float64)  # [w_dim, C]
    W = W / np.linalg.norm(W, axis=0, keepdims=True)
    vals, vecs = np.linalg.eig(W.dot(W.T))
    vals, vecs = vals.real, vecs.real
    order = np.argsort(-vals)[:k]
    return vecs.T[order], vals[order]


def test_sefa_matches_an_explicit_eigendecomposition_of_the_normalised_affine_weights():
    G = tiny_generator(32, seed=3)
    _hand_weights(G)
    syn = G.synthesis
    k = 8
    vecs, vals = sefa_directions(G, k=k)
    weights = [syn.convs[i].conv.affine.weight.detach().numpy() for i in range(len(syn.convs))]  # toRGB excluded
    ref_vecs, ref_vals = _sefa_reference(weights, k)
    np.testing.assert_allclose(vals.numpy(), ref_vals, rtol=1e-5)
    same_up_to_sign(vecs.numpy(), ref_vecs)
    assert bool((vals[:-1] >= vals[1:]).all())
    np.testing.assert_allclose((vecs @ vecs.T).numpy(), np.eye(k), atol=1e-5)


def test_sefa_layer_range_and_torgb_modes_pick_the_affines_the_paper_code_would():
    G = tiny_generator(32, seed=4)
    _hand_weights(G, seed=2)
    syn = G.synthesis
    convs = [syn.convs[i].conv.affine.weight.detach().numpy() for i in range(len(syn.convs))]
    rgbs = [r.conv.affine.weight.detach().numpy() for r in syn.to_rgbs]
    last = G.num_ws - 1
    # layers 1-3: convs 1, 2, 3 only
    vecs, vals = sefa_directions(G, layers="1-3", k=5)
    rv, rl = _sefa_reference(convs[1:4], 5)
    np.testing.assert_allclose(vals.numpy(), rl, rtol=1e-5)
    same_up_to_sign(vecs.numpy(), rv)
    # torgb='last' with every entry: one affine per W+ entry, the final toRGB for the last (the paper code's set)
    vecs, vals = sefa_directions(G, k=5, torgb="last")
    rv, rl = _sefa_reference(convs + [rgbs[-1]], 5)
    np.testing.assert_allclose(vals.numpy(), rl, rtol=1e-5)
    same_up_to_sign(vecs.numpy(), rv)
    assert [i for _, _, i, _ in sefa_affines(G, torgb="last")] == list(range(G.num_ws))
    # torgb='all' on entries 0-3: convs 0-3 plus the toRGBs read from entries 1 and 3
    vecs, vals = sefa_directions(G, layers=[0, 1, 2, 3], k=5, torgb="all")
    rv, rl = _sefa_reference(convs[0:4] + [rgbs[0], rgbs[1]], 5)
    np.testing.assert_allclose(vals.numpy(), rl, rtol=1e-5)
    same_up_to_sign(vecs.numpy(), rv)
    # the last entry drives only a toRGB: nothing to factorise without it
    with pytest.raises(InputError, match="toRGB") as info:
        sefa_directions(G, layers=str(last))
    assert_one_line(info.value)


def test_sefa_on_a_hand_built_two_dimensional_case_through_style_affines():
    """Rows (1,0), (0,3), (2,2): normalised AᵀA = [[1.5, .5], [.5, 1.5]] -> eigenvalues 2 and 1 with
    eigenvectors (1,1)/√2 and (1,-1)/√2 (sign: largest component positive)."""
    a = torch.nn.Linear(2, 2, bias=False)
    b = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        b.weight.copy_(torch.tensor([[2.0, 2.0]]))
    rgb = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        rgb.weight.copy_(torch.tensor([[1.0, -5.0]]))
    syn = types.SimpleNamespace(style_affines=lambda: [("s.a", a, 0, "conv"), ("s.b", b, 1, "conv"),
                                                       ("s.rgb", rgb, 1, "torgb")])
    G = types.SimpleNamespace(synthesis=syn, num_ws=2, w_dim=2, z_dim=2, metadata={})
    vecs, vals = sefa_directions(G, k=2)
    np.testing.assert_allclose(vals.numpy(), [2.0, 1.0], atol=1e-6)
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(vecs.numpy(), [[r, r], [r, -r]], atol=1e-6)
    # eigenvalues of all w_dim directions sum to the number of unit rows (trace of AᵀA)
    _, vals3 = sefa_directions(G, k=2, torgb="all")
    assert float(vals3.sum()) == pytest.approx(4.0, abs=1e-5)


def test_sefa_is_blind_to_per_layer_gains_and_refuses_bad_k():
    G = tiny_generator(32, seed=5)
    v1, l1 = sefa_directions(G, k=4)
    with torch.no_grad():
        G.synthesis.convs[2].conv.affine.weight.mul_(37.0)  # one layer's equalised-lr gain
    v2, l2 = sefa_directions(G, k=4)
    torch.testing.assert_close(v1, v2, atol=1e-5, rtol=0)
    torch.testing.assert_close(l1, l2, atol=1e-4, rtol=1e-5)
    for bad in (0, G.w_dim + 1, 2.5, True):
        with pytest.raises(InputError, match="number of directions") as info:
            sefa_directions(G, k=bad)
        assert_one_line(info.value)


# ----------------------------------------------------------------------------------------------
# GANSpace
# ----------------------------------------------------------------------------------------------


def test_ganspace_matches_an_svd_of_the_same_sampled_codes_and_is_seeded():
    G = tiny_generator(32, seed=6)
    n, k = 3000, 6
    d = ganspace_directions(G, n_samples=n, k=k, seed=11, batch_size=700)
    z = torch.from_numpy(np.random.RandomState(11).standard_normal((n, G.z_dim))).float()
    with torch.no_grad():
        w = G.mapping(z)[:, 0].double().numpy()
    X = w - w.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    np.testing.assert_allclose(d.values.numpy(), s[:k] / np.sqrt(n - 1), rtol=1e-4)
    same_up_to_sign(d.vectors.numpy(), vt[:k], tol=1e-4)
    np.testing.assert_allclose(d.provenance["mean"], w.mean(0), atol=1e-5)
    np.testing.assert_allclose((d.vectors @ d.vectors.T).numpy(), np.eye(k), atol=1e-5)
    again = ganspace_directions(G, n_samples=n, k=k, seed=11, batch_size=4096)  # batch size does not matter
    torch.testing.assert_close(again.vectors, d.vectors, atol=1e-5, rtol=0)
    other = ganspace_directions(G, n_samples=n, k=k, seed=12)
    assert not torch.allclose(other.vectors, d.vectors, atol=1e-3)


def test_ganspace_refuses_bad_sample_counts():
    G = tiny_generator(32, seed=6)
    with pytest.raises(InputError, match="samples") as info:
        ganspace_directions(G, n_samples=10, k=3)
    assert_one_line(info.value)


# ----------------------------------------------------------------------------------------------
# Editing
# ----------------------------------------------------------------------------------------------


def test_edit_adds_strength_times_direction_only_to_the_chosen_layers():
    G = tiny_generator(32, seed=1)
    lat = latents_from_seeds(G, "0-2", truncation_psi=0.7)
    d = torch.randn(G.w_dim)
    out = edit(lat, d, 2.5, layers="1-3")
    diff = out.ws - lat.ws
    for i in range(G.num_ws):
        if i in (1, 2, 3):
            torch.testing.assert_close(diff[:, i], (2.5 * d).expand(3, -1), atol=1e-6, rtol=0)
        else:
            assert torch.equal(out.ws[:, i], lat.ws[:, i])
    assert out.space == "w+" and out.z is None and out.lineage_sha256 == lat.lineage_sha256
    assert out.provenance["layers"] == [1, 2, 3] and out.provenance["strength"] == 2.5
    whole = edit(lat, d[None], -1.0)  # [1, w_dim] like an InterFaceGAN boundary; every entry
    torch.testing.assert_close(whole.ws, lat.ws - d, atol=1e-6, rtol=0)
    assert whole.space == "w"
    assert torch.equal(edit(lat, d, 0.0).ws, lat.ws)
    tensor_out = edit(lat.ws, d, 1.0, layers=[0])
    assert isinstance(tensor_out, torch.Tensor) and torch.equal(tensor_out[:, 1:], lat.ws[:, 1:])


def test_edit_uses_a_direction_sets_own_layers_and_index():
    G = tiny_generator(32, seed=1)
    lat = latents_from_seeds(G, "0-1")
    dirs = sefa_directions(G, layers="0-2", k=3)
    out = edit(lat, dirs, 3.0, index=2)
    torch.testing.assert_close(out.ws[:, :3] - lat.ws[:, :3], (3.0 * dirs.vectors[2]).expand(2, 3, -1),
                               atol=1e-6, rtol=0)
    assert torch.equal(out.ws[:, 3:], lat.ws[:, 3:])
    assert out.provenance["direction"] == "sefa:2"
    everywhere = edit(lat, dirs, 3.0, index=0, layers="all")
    assert not torch.equal(everywhere.ws[:, -1], lat.ws[:, -1])
    with pytest.raises(InputError, match="say which one"):
        edit(lat, dirs, 1.0)
    with pytest.raises(InputError, match="out of range"):
        edit(lat, dirs, 1.0, index=3)


def test_edit_refuses_mismatches_in_one_line():
    G = tiny_generator(32, seed=1)
    lat = latents_from_seeds(G, "0")
    plain = Latents(lat.ws[:, :1].clone(), "w")
    for call, match in ((lambda: edit(lat, torch.randn(G.w_dim + 1), 1.0), "dimensions"),
                        (lambda: edit(lat, torch.randn(2, 3, G.w_dim), 1.0), "shape"),
                        (lambda: edit(lat, torch.randn(G.w_dim), float("nan")), "strength"),
                        (lambda: edit(lat, torch.randn(G.w_dim), 1.0, layers="0-99"), "out of range"),
                        (lambda: edit(plain, torch.randn(G.w_dim), 1.0, layers="0-2"), "broadcast")):
        with pytest.raises(InputError, match=match) as info:
            call()
        assert_one_line(info.value)
    moved = edit(plain, torch.ones(G.w_dim), 1.0)  # a plain W code moves as a whole
    torch.testing.assert_close(moved.ws, plain.ws + 1)


def test_sweep_is_code_major_and_parse_strengths_reads_lists_and_ranges():
    G = tiny_generator(32, seed=1)
    lat = latents_from_seeds(G, "0-1")
    d = torch.randn(G.w_dim)
    out = sweep(lat, d, "-2,0,2", layers="0-1")
    assert len(out) == 6 and out.provenance["strengths"] == [-2, 0, 2, -2, 0, 2]
    assert out.provenance["codes"] == [0, 0, 0, 1, 1, 1]
    for j, (code, s) in enumerate(zip(out.provenance["codes"], out.provenance["strengths"])):
        torch.testing.assert_close(out.ws[j], edit(lat.select(code), d, s, layers="0-1").ws[0])
    assert parse_strengths("-3:3:7") == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert parse_strengths(" -1.5, 0 ,2") == [-1.5, 0.0, 2.0]
    for bad in ("a,b", "", "1:2:1", "1e9"):
        with pytest.raises(InputError) as info:
            parse_strengths(bad)
        assert_one_line(info.value)


def test_directions_found_on_the_source_apply_to_the_same_lineage_only():
    G = tiny_generator(32, seed=1)
    G.metadata = {"source_sha256": "a" * 64}
    dirs = sefa_directions(G, k=2)
    assert dirs.lineage_sha256 == "a" * 64
    adapted = tiny_generator(32, seed=9)
    adapted.metadata = {"source_sha256": "a" * 64}
    check_directions_compatible(dirs, adapted)
    stranger = tiny_generator(32, seed=9)
    stranger.metadata = {"source_sha256": "b" * 64}
    with pytest.raises(CheckpointError, match="lineage") as info:
        check_directions_compatible(dirs, stranger)
    assert_one_line(info.value)
    with pytest.raises(InputError, match="dimensions"):
        check_directions_compatible(dirs, tiny_generator(32, w_dim=16, z_dim=16))


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def test_direction_files_round_trip_and_foreign_vectors_load(tmp_path):
    G = tiny_generator(32, seed=1)
    dirs = sefa_directions(G, layers="0-3", k=4)
    path = save_direction(dirs, tmp_path / "sefa.safetensors")
    back = load_direction(path)
    assert torch.equal(back.vectors, dirs.vectors) and torch.equal(back.values, dirs.values)
    assert (back.method, back.layers, back.names) == ("sefa", [0, 1, 2, 3], dirs.names)
    boundary = np.random.RandomState(0).standard_normal((1, 512))
    boundary /= np.linalg.norm(boundary)
    np.save(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", boundary)  # InterFaceGAN: float64 [1, 512]
    got = load_direction(tmp_path / "stylegan_ffhq_smile_w_boundary.npy")
    assert got.vectors.shape == (1, 512) and got.names == ["stylegan_ffhq_smile_w_boundary"]
    np.testing.assert_allclose(got.vectors.numpy(), boundary, atol=1e-7)
    assert float(got.values[0]) == pytest.approx(1.0, abs=1e-6)
    t = torch.from_numpy(boundary).float()
    torch.save(t, tmp_path / "smile.pt")  # the official StyleGAN-NADA boundaries are torch.save'd tensors
    torch.save(t, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"direction": t[0]}, tmp_path / "dict.pth")
    np.savez(tmp_path / "z.npz", boundary=boundary)
    np.save(tmp_path / "plain.npy", boundary[0].astype(np.float32))
    for name in ("smile.pt", "legacy.pt", "dict.pth", "z.npz", "plain.npy"):
        loaded = load_direction(tmp_path / name)
        np.testing.assert_allclose(loaded.vectors.numpy(), t.numpy(), atol=1e-7, err_msg=name)
    several = np.random.RandomState(1).standard_normal((3, 32)).astype(np.float32)
    np.save(tmp_path / "three.npy", several)
    assert len(load_direction(tmp_path / "three.npy")) == 3


def test_hostile_or_wrong_direction_files_are_refused_in_one_line(tmp_path):
    marker = tmp_path / "pwned"
    cf.write_malicious_pt(tmp_path / "evil.pt", marker)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_direction(tmp_path / "evil.pt")
    assert_one_line(info.value)
    assert not marker.exists()
    evil = cf.write_pt_zip(tmp_path / "evil2.pt", cf.Op().glob("os", "system").mark().str("true").tuple()
                           .reduce().done())
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_direction(evil)
    # an .npy header declaring 2**40 floats: refused from the header, nothing allocated
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)})
        fh.write(b"\0" * 64)
    with pytest.raises(CheckpointError, match="not a direction file") as info:
        load_direction(huge)
    assert_one_line(info.value)
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CheckpointError) as info:
        load_direction(pickled)
    assert_one_line(info.value)
    np.save(tmp_path / "zeros.npy", np.zeros((1, 8), np.float32))
    np.save(tmp_path / "nan.npy", np.full((1, 8), np.nan, np.float32))
    np.save(tmp_path / "wplus.npy", np.ones((2, 18, 512), np.float32))
    for name, match in (("zeros.npy", "all zeros"), ("nan.npy", "NaN"), ("wplus.npy", "shape")):
        with pytest.raises(CheckpointError, match=match) as info:
            load_direction(tmp_path / name)
        assert_one_line(info.value)
    G = tiny_generator(32, seed=1)
    save_latents(latents_from_seeds(G, "0"), tmp_path / "lat.safetensors")
    with pytest.raises(CheckpointError, match="latents file") as info:
        load_direction(tmp_path / "lat.safetensors")
    assert_one_line(info.value)
    (tmp_path / "x.txt").write_text("1,2,3")
    with pytest.raises(InputError, match="unknown direction file type"):
        load_direction(tmp_path / "x.txt")
    with pytest.raises(InputError, match="not found"):
        load_direction(tmp_path / "missing.npy")
    with pytest.raises(InputError, match=".safetensors"):
        save_direction(Directions(torch.ones(1, 4), torch.ones(1)), tmp_path / "d.npy")
