"""``nada info/sample/interpolate/invert/train`` on StyleGAN3-T/-R snapshots built in NVIDIA's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoint_factories_sg3 as f3
from nada_core import cli
from nada_core.editing.transforms import input_transform
from nada_core.formats.checkpoints import load_generator
from nada_core.media.images import make_grid, to_uint8
from nada_core.seeds import z_from_seeds
from tests.clip_factory import save_tiny_clip


@pytest.fixture(scope="module")
def pkls(tmp_path_factory):
    root = tmp_path_factory.mktemp("sg3")
    out = {}
    for kind in ("t", "r"):
        tensors, kwargs, layers = f3.fixture_generator(kind)
        out[kind] = f3.write_nvidia3_pkl(root / f"stylegan3-{kind}-tiny-16x16.pkl", tensors, kwargs, layers)
    return out


def _png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_info_describes_stylegan3(pkls, capsys):
    assert cli.main(["info", str(pkls["r"])]) == 0
    text = capsys.readouterr().out
    assert "stylegan3-pkl" in text and "StyleGAN3-R (rotation equivariant)" in text and "1x1 convs" in text
    assert cli.main(["info", str(pkls["t"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "stylegan3" and info["num_ws"] == 7 and info["stylegan3"]["conv_kernel"] == 3


@pytest.mark.parametrize("kind", ["t", "r"])
def test_sample_with_translate_and_rotate(pkls, tmp_path, kind):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--generator", str(pkls[kind]), "--seeds", "0-2", "--truncation", "0.6",
                     "--truncation-cutoff", "3", "--translate", "0.1,-0.2", "--rotate", "30", "--columns", "3",
                     "--out", str(out), "--device", "cpu"]) == 0
    G = load_generator(pkls[kind])
    with torch.no_grad():
        ws = G.mapping(z_from_seeds([0, 1, 2], G.z_dim), truncation_psi=0.6, truncation_cutoff=3)
        imgs = G.synthesis(ws, input_transform=input_transform((0.1, -0.2), 30))
        plain = G.synthesis(ws)
    expected = to_uint8(make_grid(imgs, ncols=3, pad=2, pad_value=1.0))[0]
    got = _png(out)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (imgs - plain).abs().max() > 0.02  # the transform really moved the image


def test_translate_on_stylegan2_is_a_clear_error(tmp_path, capsys):
    from factories import tiny_generator
    from nada_core.formats.checkpoints import save_generator

    path = save_generator(tiny_generator(16), tmp_path / "sg2.safetensors")
    rc = cli.main(["sample", "--generator", str(path), "--seeds", "0", "--rotate", "10",
                   "--out", str(tmp_path / "x.png"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc != 0 and "StyleGAN3" in err and len(err.strip().splitlines()) == 1
    rc = cli.main(["sample", "--generator", str(path), "--seeds", "0", "--translate", "1",
                   "--out", str(tmp_path / "x.png"), "--device", "cpu"])
    assert rc != 0 and "--translate" in capsys.readouterr().err


def test_interpolate_walk_with_rotation(pkls, tmp_path):
    out = tmp_path / "walk.gif"
    assert cli.main(["interpolate", "--generator", str(pkls["t"]), "--seeds", "1,2", "--frames", "3",
                     "--rotate", "15", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    frames = Image.open(out)
    assert frames.n_frames == 3 and frames.size == (16, 16)


def test_invert_and_train_on_stylegan3(pkls, tmp_path):
    G = load_generator(pkls["t"])
    with torch.no_grad():
        img = G(z_from_seeds([4], G.z_dim))[0]
    target = tmp_path / "target.png"
    Image.fromarray(to_uint8(img[None])[0]).save(target)
    assert cli.main(["invert", "--generator", str(pkls["t"]), "--image", str(target), "--steps", "3",
                     "--out", str(tmp_path / "inv"), "--device", "cpu", "--quiet"]) == 0
    lat = tmp_path / "inv" / "latents.safetensors"
    assert lat.exists()
    clip = save_tiny_clip(tmp_path / "clip", layout="safetensors")
    run = tmp_path / "run"
    assert cli.main(["train", "--generator", str(pkls["t"]), "--clip", clip, "--source", "photo", "--target",
                     "pencil sketch", "--steps", "2", "--batch", "2", "--layers", "2", "--device", "cpu",
                     "--eval-seeds", "none", "--out", str(run), "--quiet"]) == 0
    adapted = load_generator(run / "generator.safetensors")
    source = load_generator(pkls["t"])
    assert type(adapted).__name__ == "StyleGAN3Generator" and adapted.config == source.config
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, source.state_dict()[k])}
    # only synthesis layers change (conv weights and biases, and their style affines: the official default)
    assert changed and all(k.startswith("synthesis.L") and k.endswith((".weight", ".bias")) for k in changed)
    assert any(".affine." in k for k in changed) and not any(k.startswith("synthesis.input") for k in changed)
    # The source's inverted codes render through the adapted generator (same lineage).
    assert cli.main(["sample", "--generator", str(run / "generator.safetensors"), "--latents", str(lat),
                     "--out", str(tmp_path / "adapted.png"), "--device", "cpu"]) == 0
    assert _png(tmp_path / "adapted.png").shape == (16, 16, 3)
