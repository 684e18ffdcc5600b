"""``nada invert`` and ``nada interpolate`` run the way a user runs them, on tiny saved generators."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.media.animation import read_animation
from nada_core.formats.checkpoints import load_generator, save_generator
from nada_core.cli import main
from nada_core.media.images import save_png, to_uint8
from nada_core.editing.latents import latents_from_seeds, load_latents, render
from tests.factories import tiny_generator

REPO = Path(__file__).resolve().parents[1]
SHA_SOURCE = "5" * 64
SHA_OTHER = "6" * 64



def _save(G, path: Path, sha: str | None) -> Path:
    if sha:
        G.metadata = {"source_sha256": sha, "source_format": "stylegan2-ada-pkl"}
    return save_generator(G, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two generators adapted from one source, one from another source, one of another size; photos."""
    d = tmp_path_factory.mktemp("cli")
    src = tiny_generator(16, seed=0)
    out = {
        "a": _save(src, d / "photo.safetensors", SHA_SOURCE),
        "b": _save(tiny_generator(16, seed=1), d / "sketch.safetensors", SHA_SOURCE),
        "other": _save(tiny_generator(16, seed=2), d / "other_source.safetensors", SHA_OTHER),
        "big": _save(tiny_generator(32, seed=3), d / "big.safetensors", SHA_SOURCE),
        "dir": d,
    }
    imgs = render(src, latents_from_seeds(src, [3, 4], truncation_psi=0.7))
    save_png(imgs[0], d / "face.png")
    # The second "photo" as a user has it: RGBA, non-square (padded sideways with transparent pixels).
    arr = to_uint8(imgs[1:2])[0]
    rgba = np.zeros((16, 24, 4), np.uint8)
    rgba[:, 4:20, :3] = arr
    rgba[:, 4:20, 3] = 255
    Image.fromarray(rgba, "RGBA").save(d / "cutout.png")
    out["faces"] = imgs
    return out


def _frames_equal_render(frame: np.ndarray, G, lat) -> bool:
    return np.array_equal(frame, to_uint8(render(G, lat))[0])


def test_invert_as_a_subprocess(files, tmp_path):
    out = tmp_path / "inv"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "nada_core", "invert", "--generator", str(files["a"]),
                           "--image", str(files["dir"] / "face.png"), str(files["dir"] / "cutout.png"),
                           "--space", "w+", "--steps", "80", "--device", "cpu", "--quiet", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "PSNR" in ln]
    assert len(lines) == 2 and lines[0].startswith("face.png: PSNR") and "SSIM" in lines[0]
    lat = load_latents(out / "latents.safetensors")
    assert lat.ws.shape == (2, 6, 32) and lat.space == "w+" and lat.lineage_sha256 == SHA_SOURCE
    report = json.loads((out / "inversion.json").read_text())
    assert [r["crop_box"] for r in report["images"]] == [[0, 0, 16, 16], [4, 0, 20, 16]]
    psnr = [r["psnr_db"] for r in report["images"]]
    assert min(psnr) > 25, psnr
    for r in report["images"]:
        assert (out / r["reconstruction"]).is_file()
    with Image.open(out / "comparison.png") as im:
        assert im.size == (34, 34)  # 2 rows x (input | reconstruction), 16 px with 2 px gaps
    # The saved reconstruction is what the latents render to.
    G = load_generator(files["a"])
    recon = np.asarray(Image.open(out / "reconstruction_face.png").convert("RGB"))
    assert np.abs(recon.astype(int) - to_uint8(render(G, lat.select([0])))[0].astype(int)).max() <= 1


def test_invert_ctrl_c_keeps_the_best_so_far(files, tmp_path, monkeypatch, capsys):
    import nada_core.editing.invert as inv

    real = inv.lr_schedule

    def schedule_with_ctrl_c(step, total, *a):
        if step == 4:
            signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C during step 5
        return real(step, total, *a)

    monkeypatch.setattr(inv, "lr_schedule", schedule_with_ctrl_c)
    out = tmp_path / "inv"
    rc = main(["invert", "--generator", str(files["a"]), "--image", str(files["dir"] / "face.png"),
               "--steps", "500", "--device", "cpu", "--quiet", "--out", str(out)])
    assert rc == 130
    lat = load_latents(out / "latents.safetensors")
    assert lat.provenance["interrupted"] is True and lat.provenance["steps"] == [5]
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_interpolate_seed_walk_gif(files, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    rc = main(["interpolate", "--generator", str(files["a"]), "--seeds", "1,5,9", "--frames", "9",
               "--fps", "12", "--device", "cpu", "--quiet", "--out", str(out)])
    assert rc == 0
    frames = read_animation(out)
    assert 2 <= len(frames) <= 9 and frames[0].shape == (16, 16, 3)  # identical frames may merge in GIF
    with Image.open(out) as im:
        assert im.n_frames == len(frames) and im.info["duration"] == pytest.approx(1000 / 12, abs=10)  # GIF counts in 1/100 s
    assert "9 frames" in capsys.readouterr().out


def test_interpolate_walk_frames_hit_the_keyframes(files, tmp_path):
    out = tmp_path / "walk"  # no extension: a folder of PNG frames
    assert main(["interpolate", "--generator", str(files["a"]), "--seeds", "1,5,9", "--frames", "5",
                 "--easing", "ease-in-out", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    frames = read_animation(out)
    assert len(frames) == 5
    G = load_generator(files["a"])
    for i, seed in ((0, 1), (2, 5), (4, 9)):
        assert _frames_equal_render(frames[i], G, latents_from_seeds(G, [seed], truncation_psi=0.7))
    # A shorter second run into the same folder removes the stale frames.
    assert main(["interpolate", "--generator", str(files["a"]), "--seeds", "1,5", "--frames", "3",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]


def test_generator_morph_endpoints_are_each_generator(files, tmp_path):
    out = tmp_path / "morph"
    assert main(["interpolate", "--generators", f"{files['a']},{files['b']}", "--seed", "3", "--frames", "4",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    frames = read_animation(out)
    Ga, Gb = load_generator(files["a"]), load_generator(files["b"])
    lat = latents_from_seeds(Ga, [3], truncation_psi=0.7)
    assert len(frames) == 4
    assert _frames_equal_render(frames[0], Ga, lat) and _frames_equal_render(frames[-1], Gb, lat)
    assert not np.array_equal(frames[1], frames[0])


def test_morph_of_inverted_latents_as_lossless_webp(files, tmp_path):
    inv = tmp_path / "inv"
    assert main(["invert", "--generator", str(files["a"]), "--image", str(files["dir"] / "face.png"),
                 "--steps", "10", "--device", "cpu", "--quiet", "--out", str(inv)]) == 0
    out = tmp_path / "morph.webp"
    assert main(["interpolate", "--generators", f"{files['a']},{files['b']}", "--latents",
                 str(inv / "latents.safetensors"), "--frames", "3", "--lossless", "--layers", "3-",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    frames = read_animation(out)
    lat = load_latents(inv / "latents.safetensors")
    assert len(frames) == 3 and _frames_equal_render(frames[0], load_generator(files["a"]), lat)


@pytest.mark.parametrize("argv,message", [
    (["--generators", "{a},{big}", "--seed", "1"], "different architectures"),
    (["--generators", "{a},{other}", "--seed", "1"], "5555555555"),
    (["--generator", "{a}", "--seed", "1"], "at least two keyframes"),
    (["--generator", "{a}", "--seeds", "1,2", "--layers", "coarse"], "--layers"),
    (["--generator", "{a}", "--seeds", "1,2", "--out", "{dir}/clip.mov"], "use .mp4"),  # .mp4 is written (tests/test_video.py)
    (["--generator", "{a}", "--seeds", "1,2", "--frames", "0"], "--frames"),
])
def test_interpolate_errors_are_one_line(files, tmp_path, capsys, argv, message):
    argv = [a.format(**{k: v for k, v in files.items() if k != "faces"}) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.gif")]
    rc = main(["interpolate", *argv, "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.gif").exists()


def test_latents_of_another_source_are_refused(files, tmp_path, capsys):
    inv = tmp_path / "inv"
    assert main(["invert", "--generator", str(files["other"]), "--image", str(files["dir"] / "face.png"),
                 "--steps", "2", "--space", "w", "--device", "cpu", "--quiet", "--out", str(inv)]) == 0
    rc = main(["interpolate", "--generators", f"{files['a']},{files['b']}", "--latents",
               str(inv / "latents.safetensors"), "--frames", "2", "--device", "cpu", "--quiet",
               "--out", str(tmp_path / "m.gif")])
    err = capsys.readouterr().err
    assert rc == 2 and SHA_OTHER[:12] in err and SHA_SOURCE[:12] in err


def test_invert_errors(files, tmp_path, capsys):
    rc = main(["invert", "--generator", str(files["a"]), "--image", str(tmp_path / "missing.png"),
               "--device", "cpu", "--quiet", "--out", str(tmp_path / "o")])
    assert rc == 2 and "not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["invert", "--generator", str(files["a"]), "--image", str(empty), "--device", "cpu", "--quiet",
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "no images" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Animation files (nada_core.media.animation)
# ---------------------------------------------------------------------------------------------


def test_animation_formats_round_trip(tmp_path):
    from nada_core.media.animation import animation_format, write_animation
    from nada_core.errors import InputError

    torch.manual_seed(0)
    frames = torch.rand(4, 3, 12, 10) * 2 - 1
    expected = to_uint8(frames)
    for name in ("a.webp", "a.apng", "frames_dir"):
        path = write_animation(frames, tmp_path / name, fps=8, lossless=True)
        back = read_animation(path)
        assert len(back) == 4 and all(np.array_equal(a, b) for a, b in zip(back, expected)), name
    gif = read_animation(write_animation(list(frames), tmp_path / "a.gif", fps=8))
    assert len(gif) == 4 and np.abs(gif[0].astype(int) - expected[0].astype(int)).mean() < 12  # 256 colours
    with Image.open(tmp_path / "a.webp") as im:
        assert im.n_frames == 4 and im.info["loop"] == 0
    assert animation_format(tmp_path) == "frames" and animation_format("x.GIF") == "gif"
    with pytest.raises(InputError, match="same size"):
        write_animation([frames[0], torch.zeros(3, 4, 4)], tmp_path / "b.gif")
    with pytest.raises(InputError, match="unknown animation type"):
        write_animation(frames, tmp_path / "b.xyz")
    with pytest.raises(InputError, match="fps"):
        write_animation(frames, tmp_path / "b.gif", fps=0)
    assert not (tmp_path / "b.gif").exists()


def test_frame_durations_keep_the_total_time():
    from nada_core.media.animation import _durations

    d = _durations(30, 24.0)
    assert sum(d) == 1250 and set(d) <= {41, 42}
