"""``nada edit`` (and MP4 from ``nada interpolate``) run the way a user runs them, on tiny saved generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.cli import main
from nada_core.editing.direction_files import load_direction, save_direction
from nada_core.editing.latents import latents_from_seeds, render, save_latents
from nada_core.editing.semantic import edit, ganspace_directions, sefa_directions
from nada_core.formats.checkpoints import load_generator, save_generator
from nada_core.media.images import make_grid, to_uint8
from tests.factories import tiny_generator

SHA = "5" * 64


def _save(G, path, sha):
    G.metadata = {"source_sha256": sha, "source_format": "stylegan2-ada-pkl"}
    return save_generator(G, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edit")
    return {"a": _save(tiny_generator(16, seed=0), d / "photo.safetensors", SHA),
            "b": _save(tiny_generator(16, seed=1), d / "sketch.safetensors", SHA),
            "other": _save(tiny_generator(16, seed=2), d / "other.safetensors", "6" * 64),
            "dir": d}


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def _grid_reference(gens, lat, dirs, index, strengths, layers=None):
    """The grid built independently: rows code-major then generator, columns = strengths."""
    tiles = []
    for i in range(len(lat)):
        for G in gens:
            for s in strengths:
                tiles.append(render(G, edit(lat.select(i), dirs, s, layers=layers, index=index)))
    return to_uint8(make_grid(torch.cat(tiles), ncols=len(strengths), pad=2, pad_value=1.0))[0]


def test_sefa_grid_on_source_and_adapted_generator(files, tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = main(["edit", "--generator", str(files["a"]), "--seeds", "1,2", "--direction", "sefa:1",
               "--strengths", "-3,0,3", "--layers", "0-3", "--render-with", str(files["b"]),
               "--device", "cpu", "--quiet", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "2 code(s) x 2 generator(s)" in capsys.readouterr().out
    A, B = load_generator(files["a"]), load_generator(files["b"])
    lat = latents_from_seeds(A, [1, 2], truncation_psi=0.7)
    dirs = sefa_directions(A, layers="0-3", k=10)
    expected = _grid_reference([A, B], lat, dirs, 1, [-3.0, 0.0, 3.0])
    got = np.asarray(Image.open(out).convert("RGB"))
    assert got.shape == expected.shape and np.array_equal(got, expected)
    # strength 0 column is the unedited image; the others differ from it
    plain = to_uint8(render(A, lat.select(0)))[0]
    h = plain.shape[0]
    assert np.array_equal(got[:h, h + 2:2 * h + 2], plain)
    assert not np.array_equal(got[:h, :h], plain)


def test_file_direction_on_inverted_style_latents_and_saved_directions(files, tmp_path, capsys):
    A = load_generator(files["a"])
    lat = latents_from_seeds(A, [4, 5, 6])
    save_latents(lat, tmp_path / "lat.safetensors")
    boundary = np.random.RandomState(3).standard_normal((1, A.w_dim))
    np.save(tmp_path / "smile_boundary.npy", boundary)
    out = tmp_path / "smile.png"
    assert main(["edit", "--generator", str(files["a"]), "--latents", str(tmp_path / "lat.safetensors"),
                 "--index", "0,2", "--direction", str(tmp_path / "smile_boundary.npy"), "--strengths", "-1:1:3",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    d = load_direction(tmp_path / "smile_boundary.npy")
    expected = _grid_reference([A], lat.select([0, 2]), d, 0, [-1.0, 0.0, 1.0])
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected)
    # GANSpace directions saved, then used as a file: the same grid as ganspace:0
    saved = tmp_path / "gs.safetensors"
    assert main(["edit", "--generator", str(files["a"]), "--seeds", "3", "--direction", "ganspace:0",
                 "--samples", "2000", "--count", "2", "--direction-seed", "4", "--strengths=-2,2",
                 "--save-directions", str(saved), "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "g1.png")]) == 0
    gs = load_direction(saved)
    torch.testing.assert_close(gs.vectors, ganspace_directions(A, 2000, 2, 4).vectors)
    assert main(["edit", "--generator", str(files["a"]), "--seeds", "3", "--direction", str(saved),
                 "--strengths", "-2,2", "--device", "cpu", "--quiet", "--out", str(tmp_path / "g2.png")]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g1.png")), np.asarray(Image.open(tmp_path / "g2.png")))


def test_edit_walk_as_mp4_has_the_frames_asked_for(files, tmp_path, capsys):
    av = pytest.importorskip("av")
    out = tmp_path / "walk.mp4"
    assert main(["edit", "--generator", str(files["a"]), "--seeds", "1", "--direction", "sefa:0",
                 "--strengths", "-4,4", "--frames", "9", "--fps", "12", "--device", "cpu", "--quiet",
                 "--out", str(out)]) == 0
    assert "9 frames at 12 fps" in capsys.readouterr().out
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert float(s.average_rate) == 12.0
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 9 and frames[0].shape == (16, 16, 3)
    A = load_generator(files["a"])
    lat = latents_from_seeds(A, [1], truncation_psi=0.7)
    dirs = sefa_directions(A, k=10)
    expected = [_luma(to_uint8(render(A, edit(lat, dirs, s, index=0)))[0]) for s in np.linspace(-4, 4, 9)]
    # 16 px colour-noise tiles lose their colour detail to 4:2:0 chroma; luma is kept at full resolution
    for i, f in enumerate(frames):
        dist = [np.abs(_luma(f) - e).mean() for e in expected]
        assert int(np.argmin(dist)) == i and dist[i] < 6, (i, dist)


def test_interpolate_writes_mp4(files, tmp_path, capsys):
    av = pytest.importorskip("av")
    out = tmp_path / "morph.mp4"
    assert main(["interpolate", "--generators", f"{files['a']},{files['b']}", "--seeds", "1,2,3",
                 "--frames", "5", "--fps", "10", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert len(frames) == 5
    # 2x2 grid of 16 px tiles with 2 px gaps is 34 px: even already, no padding
    assert (frames[0].width, frames[0].height) == (34, 34)


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "1", "--direction", "sefa:0", "--render-with", "{other}"], "different sources"),
    (["--seeds", "1", "--direction", "pca:0"], "sefa:K"),
    (["--seeds", "1", "--direction", "{dir}/missing.npy"], "not found"),
    (["--seeds", "1", "--direction", "sefa:0", "--strengths", "a,b"], "strengths"),
    (["--seeds", "1", "--direction", "sefa:0", "--layers", "0-40"], "out of range"),
    (["--seeds", "1", "--direction", "sefa:0", "--count", "0"], "count"),
    (["--seeds", "1", "--direction", "sefa:0", "--out", "{dir}/x.jpg"], "unknown animation type"),
    (["--seeds", "1", "--direction", "ganspace:0", "--samples", "5"], "samples"),
])
def test_edit_errors_are_one_line(files, tmp_path, capsys, argv, message):
    fmt = {k: v for k, v in files.items()}
    argv = [a.format(**fmt) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.png")]
    rc = main(["edit", "--generator", str(files["a"]), *argv, "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


def test_directions_of_another_lineage_are_refused(files, tmp_path, capsys):
    other = load_generator(files["other"])
    save_direction(sefa_directions(other, k=2), tmp_path / "o.safetensors")
    rc = main(["edit", "--generator", str(files["a"]), "--seeds", "1", "--direction", str(tmp_path / "o.safetensors"),
               "--device", "cpu", "--quiet", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "lineage" in err and "6666666666" in err
