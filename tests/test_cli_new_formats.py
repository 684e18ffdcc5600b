"""``nada sample/interpolate/train/invert`` on a TF-era pickle and a class-conditional snapshot,
both written by the tests in their real layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoint_factories as cf
import tf_factories as tff
from nada_core.cli import main
from nada_core.editing.latents import latents_from_seeds, load_latents, render
from nada_core.formats.checkpoints import load_generator, read_metadata
from nada_core.media.animation import read_animation
from nada_core.media.images import to_uint8
from tests.clip_factory import save_tiny_clip

NV = dict(img_resolution=16, z_dim=8, w_dim=8, num_layers=2, channel_base=128, channel_max=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    kw = tff.tf_generator_settings()
    tf = tff.write_tf_pkl(root / "stylegan2-tiny-config-f.pkl", tff.tf_generator_variables(kw, seed=1), kw)
    t = cf.nvidia_generator_tensors(seed=3, c_dim=3, **NV)
    cond = cf.write_nvidia_pkl(root / "cond.pkl", t, cf.nvidia_generator_kwargs(c_dim=3, **NV))
    face = root / "face.png"
    Image.fromarray((np.random.RandomState(0).rand(16, 16, 3) * 255).astype(np.uint8)).save(face)
    return {"tf": str(tf), "cond": str(cond), "face": str(face), "clip": save_tiny_clip(root / "clip"), "root": root}


def test_sample_and_interpolate_with_a_class(files, tmp_path):
    out = tmp_path / "walk"
    assert main(["interpolate", "--generator", files["cond"], "--seeds", "1,5", "--class", "2", "--frames", "3",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    frames = read_animation(out)
    G = load_generator(files["cond"])
    first = to_uint8(render(G, latents_from_seeds(G, [1], truncation_psi=0.7, class_index=2)))[0]
    assert np.array_equal(frames[0], first)
    other = to_uint8(render(G, latents_from_seeds(G, [1], truncation_psi=0.7, class_index=0)))[0]
    assert not np.array_equal(frames[0], other)
    assert main(["sample", "--generator", files["tf"], "--seeds", "0-3", "--out", str(tmp_path / "g.png")]) == 0


def test_train_a_class_of_a_conditional_model_and_a_tf_model(files, tmp_path, capsys):
    for name, extra in (("cond", ["--class", "1"]), ("tf", [])):
        out = tmp_path / name
        rc = main(["train", "--generator", files[name], "--clip", files["clip"], "--source", "photo", "--target",
                   "sketch", "--steps", "2", "--batch", "2", "--layers", "1", "--device", "cpu", "--quiet",
                   "--eval-seeds", "1000-1001", "--no-templates", "--out", str(out), *extra])
        assert rc == 0, capsys.readouterr().err
        G = load_generator(out / "generator.safetensors")
        assert G.c_dim == (3 if name == "cond" else 0)
        settings = read_metadata(out / "generator.safetensors")["provenance"]["nada"]["settings"]
        assert settings["class_index"] == (1 if name == "cond" else -1)  # the adapted class is recorded
    rc = main(["train", "--generator", files["cond"], "--clip", files["clip"], "--source", "photo", "--target",
               "sketch", "--steps", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path / "no_class")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "--class" in err, err


def test_invert_into_a_conditional_model_and_a_tf_model(files, tmp_path, capsys):
    for name, extra in (("cond", ["--class", "0"]), ("tf", [])):
        out = tmp_path / name
        rc = main(["invert", "--generator", files[name], "--image", files["face"], "--steps", "3",
                   "--device", "cpu", "--quiet", "--out", str(out), *extra])
        assert rc == 0, capsys.readouterr().err
        lat = load_latents(out / "latents.safetensors")
        assert lat.ws.shape[0] == 1 and torch.isfinite(lat.ws).all()
    rc = main(["invert", "--generator", files["cond"], "--image", files["face"], "--steps", "2", "--device", "cpu",
               "--quiet", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "--class" in err, err
