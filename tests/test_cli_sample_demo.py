"""`nada sample` and `nada demo` run as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from factories import tiny_generator
from nada_core.formats.checkpoints import save_generator
from nada_core.cli import main
from nada_core.media.images import make_grid, to_uint8
from nada_core.editing.latents import latents_from_seeds, save_latents
from nada_core.seeds import z_from_seeds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    G = tiny_generator(16, seed=3)
    return save_generator(G, tmp_path_factory.mktemp("g") / "tiny.safetensors"), G


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_sample_grid_matches_generator_and_is_deterministic(gen_file, tmp_path):
    path, G = gen_file
    out1, out2 = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["sample", "--generator", str(path), "--seeds", "0-3,9", "--truncation", "0.5",
                 "--columns", "5", "--out", str(out1), "--device", "cpu"]) == 0
    assert main(["sample", "--generator", str(path), "--seeds", "0-3,9", "--truncation", "0.5",
                 "--columns", "5", "--out", str(out2), "--device", "cpu"]) == 0
    a = _png(out1)
    assert np.array_equal(a, _png(out2))  # same seeds, same image, every run
    # Independent computation: z from the seeds, mapping with truncation, synthesis, grid.
    with torch.no_grad():
        imgs = G(z_from_seeds([0, 1, 2, 3, 9], G.z_dim), truncation_psi=0.5)
    expected = to_uint8(make_grid(imgs, ncols=5, pad=2, pad_value=1.0))[0]
    assert a.shape == (16, 5 * 16 + 4 * 2, 3)
    assert np.abs(a.astype(int) - expected.astype(int)).max() <= 1


def test_sample_renders_saved_latents_and_individual_files(gen_file, tmp_path):
    path, G = gen_file
    lat = latents_from_seeds(G, [5, 6], truncation_psi=0.7)
    lat_file = save_latents(lat, tmp_path / "lat.safetensors")
    out = tmp_path / "lat.png"
    assert main(["sample", "--generator", str(path), "--latents", str(lat_file), "--out", str(out),
                 "--individual", "--device", "cpu"]) == 0
    ref = tmp_path / "ref.png"
    assert main(["sample", "--generator", str(path), "--seeds", "5,6", "--truncation", "0.7",
                 "--out", str(ref), "--device", "cpu"]) == 0
    assert np.array_equal(_png(out), _png(ref))
    assert (tmp_path / "lat_latent0.png").is_file() and (tmp_path / "lat_latent1.png").is_file()


def test_sample_errors_are_one_line(tmp_path, capsys):
    assert main(["sample", "--generator", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pt" in err
    bad = tmp_path / "garbage.pkl"
    bad.write_bytes(b"\x00garbage" * 10)
    assert main(["sample", "--generator", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "garbage.pkl" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_sample_as_a_subprocess(gen_file, tmp_path):
    path, _ = gen_file
    out = tmp_path / "grid.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "nada_core", "sample", "--generator", str(path), "--seeds", "0-1",
                        "--out", str(out), "--device", "cpu"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and out.is_file()


def test_demo_writes_every_stage(tmp_path, monkeypatch):
    monkeypatch.setenv("NADA_DEMO_QUIET", "1")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2", "--device", "cpu"]) == 0
    for name in ("random_generator.safetensors", "samples.png", "interpolation.gif",
                 "train/generator.safetensors", "train/loss.png", "train/metrics.json"):
        assert (out / name).is_file(), name
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 24
