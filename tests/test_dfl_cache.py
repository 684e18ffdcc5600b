"""dfl/ComfyUI-StyleGan's ``.safetensors`` cache of NVIDIA pickles, read by ``load_generator``.

The cache holds NVIDIA's ``G_ema.state_dict()`` with ``{"arch", "init_kwargs"}`` metadata
(written here by :func:`checkpoint_factories.write_dfl_safetensors`); images are checked against
the independent :mod:`reference_stylegan2`.
"""

from __future__ import annotations

import json

import pytest
import torch

import checkpoint_factories as cf
import tf_factories as tff
from nada_core import cli
from nada_core.errors import CheckpointError
from nada_core.formats.checkpoints import FORMAT_DFL, FORMAT_NADA, detect_format, load_generator, save_generator
from reference_stylegan2 import nvidia_reference

S = dict(img_resolution=16, z_dim=8, w_dim=8, num_layers=2, channel_base=128, channel_max=8)


def zs(n, seed=1):
    return torch.randn(n, S["z_dim"], generator=torch.Generator().manual_seed(seed))


def close(got, expected):
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= 1e-5 * max(1.0, expected.abs().max().item()), diff


@pytest.mark.parametrize("c_dim", [0, 3])
def test_dfl_cache_loads_and_matches_the_reference(tmp_path, c_dim):
    t = cf.nvidia_generator_tensors(seed=9, c_dim=c_dim, **S)
    path = tff.write_dfl_safetensors(tmp_path / "ffhq.safetensors", t, cf.nvidia_generator_kwargs(c_dim=c_dim, **S))
    assert detect_format(path) == FORMAT_DFL
    G = load_generator(path)
    assert G.metadata["format"] == FORMAT_DFL and G.c_dim == c_dim
    assert torch.equal(G.w_avg, t["mapping.w_avg"])
    c = torch.eye(c_dim)[[0, 2]] if c_dim else None
    with torch.no_grad():
        close(G(zs(2), c, truncation_psi=0.7), nvidia_reference(t, zs(2), 0.7, c=c))
    ours = save_generator(G, tmp_path / "ours.safetensors")  # and ours stays ours
    assert detect_format(ours) == FORMAT_NADA


def test_dfl_stylegan3_and_unknown_archs_are_one_line(tmp_path):
    t = cf.nvidia_generator_tensors(seed=9, **S)
    for arch, match in (("stylegan3", "StyleGAN3"), ("biggan", "not supported")):
        path = tff.write_dfl_safetensors(tmp_path / f"{arch}.safetensors", t, cf.nvidia_generator_kwargs(**S), arch=arch)
        with pytest.raises(CheckpointError, match=match) as info:
            load_generator(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("change,match", [
    (lambda kw: kw.update(img_resolution=2**20), "resolution"),
    (lambda kw: kw["synthesis_kwargs"].update(channel_max=10**9, channel_base=10**12), "channel count"),
    (lambda kw: kw.update(z_dim="512"), "not an integer"),
    (lambda kw: kw.pop("w_dim"), "lack"),
    (lambda kw: kw["synthesis_kwargs"].update(architecture="resnet"), "'resnet'"),
    (lambda kw: kw["synthesis_kwargs"].update(channel_max=4), "has shape"),
])
def test_bad_init_kwargs_are_refused_in_one_line(tmp_path, change, match):
    t = cf.nvidia_generator_tensors(seed=9, **S)
    kw = json.loads(json.dumps(cf.nvidia_generator_kwargs(**S)))
    change(kw)
    path = tff.write_dfl_safetensors(tmp_path / "bad.safetensors", t, kw)
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_init_kwargs_that_are_not_json_or_not_a_dict(tmp_path):
    t = cf.nvidia_generator_tensors(seed=9, **S)
    for text in ("{not json", "[1, 2]", "1e999999"):
        path = tff.write_dfl_safetensors(tmp_path / "bad.safetensors", t, {}, init_kwargs_text=text)
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        assert "\n" not in str(info.value) and "init_kwargs" in str(info.value)


def test_nada_info_describes_a_dfl_cache(tmp_path, capsys):
    t = cf.nvidia_generator_tensors(seed=9, **S)
    path = tff.write_dfl_safetensors(tmp_path / "ffhq.safetensors", t, cf.nvidia_generator_kwargs(**S))
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert FORMAT_DFL in out and "dfl/ComfyUI-StyleGan" in out
