"""Class-conditional generators (``c_dim > 0``): the embedding path, loaders, class input everywhere.

Expected values come from :mod:`reference_stylegan2` (NVIDIA's ``mapping.embed`` path written
independently: per-sample sums, float64) or are computed by hand in the test.
"""

from __future__ import annotations

import math

import pytest
import torch

import checkpoint_factories as cf
from nada_core import cli
from nada_core.errors import InputError
from nada_core.formats.checkpoints import load_generator, save_generator, summarize_generator
from nada_core.models.conditioning import ClassInputError, class_one_hot
from reference_stylegan2 import nvidia_reference
from tests.factories import tiny_generator

SETTINGS = dict(img_resolution=16, z_dim=8, w_dim=8, num_layers=2, channel_base=128, channel_max=8)
C_DIM = 4


def close(got, expected):
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= 1e-5 * max(1.0, expected.abs().max().item()), diff


@pytest.fixture(scope="module")
def cond_pkl(tmp_path_factory):
    t = cf.nvidia_generator_tensors(seed=3, c_dim=C_DIM, **SETTINGS)
    path = cf.write_nvidia_pkl(tmp_path_factory.mktemp("cond") / "cond.pkl", t,
                               cf.nvidia_generator_kwargs(c_dim=C_DIM, **SETTINGS))
    return path, t


def zs(n, seed=2):
    return torch.randn(n, SETTINGS["z_dim"], generator=torch.Generator().manual_seed(seed))


def test_conditional_nvidia_pickle_matches_the_embedding_reference(cond_pkl):
    path, t = cond_pkl
    G = load_generator(path)
    assert G.c_dim == C_DIM and G.config.c_embed == "normalized"
    assert torch.equal(G.w_avg, t["mapping.w_avg"])  # the file's all-class mean
    z = zs(3)
    for classes in ([0, 1, 3], [2, 2, 2]):
        c = torch.eye(C_DIM)[classes]
        with torch.no_grad():
            for psi, cut in ((1.0, None), (0.6, 2)):
                close(G(z, c, truncation_psi=psi, truncation_cutoff=cut), nvidia_reference(t, z, psi, cut, c=c))
    with torch.no_grad():  # the class really changes the image
        a, b = G(z, torch.eye(C_DIM)[[0, 0, 0]]), G(z, torch.eye(C_DIM)[[1, 1, 1]])
    assert (a - b).abs().max() > 1e-2


def test_the_embedding_path_by_hand():
    G = tiny_generator(16, z_dim=8, w_dim=8, c_dim=3, embed_features=5, mapping_layers=1)
    m = G.mapping
    z = zs(2)
    c = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    y = c @ (m.embed.weight / math.sqrt(3)).T + m.embed.bias
    x = torch.cat([z / z.pow(2).mean(1, keepdim=True).add(1e-8).sqrt(),
                   y / y.pow(2).mean(1, keepdim=True).add(1e-8).sqrt()], dim=1)
    lin = m.layers[0]
    w = torch.nn.functional.leaky_relu(x @ (lin.weight * 0.01 / math.sqrt(13)).T + lin.bias * 0.01, 0.2) * math.sqrt(2)
    with torch.no_grad():
        close(G.mapping(z, c)[:, 0], w)
        assert G.mapping(z, c).shape == (2, G.num_ws, 8)


def test_missing_or_unexpected_class_is_one_clear_line(cond_pkl):
    G = load_generator(cond_pkl[0])
    with pytest.raises(ClassInputError, match=r"class-conditional \(4 classes\).*--class") as info:
        G(zs(2))
    assert "\n" not in str(info.value) and isinstance(info.value, InputError)
    with pytest.raises(ClassInputError, match=r"shape \[2, 4\]"):
        G.mapping(zs(2), torch.ones(2, 3))
    with pytest.raises(ClassInputError, match="class 4 does not exist"):
        class_one_hot(4, 4, 2)
    U = tiny_generator(16, z_dim=8, w_dim=8)
    with pytest.raises(ClassInputError, match="not class-conditional"):
        U.mapping(zs(2), torch.eye(2))
    with pytest.raises(ClassInputError, match="not class-conditional"):
        class_one_hot(0, 1, 2)
    assert class_one_hot(0, -1, 2) is None and class_one_hot(0, None, 2) is None
    with torch.no_grad():  # NVIDIA's tools pass an empty [N, 0] label to unconditional models
        assert torch.equal(U.mapping(zs(2), torch.zeros(2, 0)), U.mapping(zs(2)))


def test_conditional_round_trip_and_summary(tmp_path, cond_pkl):
    G = load_generator(cond_pkl[0])
    H = load_generator(save_generator(G, tmp_path / "c.safetensors"))
    assert H.config == G.config and summarize_generator(H)["classes"] == C_DIM
    c = torch.eye(C_DIM)[[3, 1]]
    with torch.no_grad():
        assert torch.equal(G(zs(2), c), H(zs(2), c))


def test_estimated_w_avg_of_a_conditional_model_averages_every_class():
    G = tiny_generator(16, z_dim=8, w_dim=8, c_dim=3)
    est = G.estimate_w_avg(num_samples=30, seed=4, batch=7)
    gen = torch.Generator().manual_seed(4)
    z = torch.cat([torch.randn(min(7, 30 - i), 8, generator=gen) for i in range(0, 30, 7)])  # as drawn, in batches
    c = torch.eye(3)[torch.arange(30) % 3]  # classes keep cycling across the batches
    with torch.no_grad():
        close(est, G.mapping(z, c)[:, 0].double().mean(0))


def test_latents_from_seeds_and_slerp_use_the_class(cond_pkl):
    from nada_core.editing.interpolate import interpolate_latents
    from nada_core.editing.latents import latents_from_seeds
    from nada_core.seeds import z_from_seeds

    G = load_generator(cond_pkl[0])
    lat = latents_from_seeds(G, [5, 6], truncation_psi=0.7, class_index=2)
    with torch.no_grad():
        want = G.mapping(z_from_seeds([5, 6], 8), torch.eye(C_DIM)[[2, 2]], truncation_psi=0.7)
    assert torch.equal(lat.ws, want) and lat.provenance["class_index"] == 2
    with pytest.raises(ClassInputError, match="needs a class"):
        latents_from_seeds(G, [5, 6])
    walk = interpolate_latents(lat, 5, "slerp", G=G)
    assert torch.equal(walk.ws[0], lat.ws[0]) and torch.equal(walk.ws[-1], lat.ws[-1])
    other = latents_from_seeds(G, [5, 6], truncation_psi=0.7, class_index=1)
    with torch.no_grad():  # a middle frame is mapped with class 2, not another class
        mid_z = walk.z[2:3]
        close(walk.ws[2:3], G.mapping(mid_z, torch.eye(C_DIM)[[2]], truncation_psi=0.7))
    assert not torch.equal(other.ws, lat.ws)


def test_cli_sample_with_class(tmp_path, cond_pkl, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--generator", str(cond_pkl[0]), "--seeds", "0-1", "--class", "3",
                     "--out", str(out)]) == 0
    assert out.exists()
    capsys.readouterr()
    rc = cli.main(["sample", "--generator", str(cond_pkl[0]), "--seeds", "0-1", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1 and "--class" in err, err
    assert cli.main(["info", str(cond_pkl[0])]) == 0
    assert "4 (class-conditional" in capsys.readouterr().out


def test_trainer_draws_every_code_of_the_given_class(tmp_path):
    from nada_core.guidance.directions import text_direction
    from nada_core.training.trainer import NadaTrainer, TrainConfig
    from tests.clip_factory import load_tiny_clip

    clip = load_tiny_clip(tmp_path / "clip")
    direction = text_direction(clip, "photo", "sketch", templates=False)
    G = tiny_generator(16, z_dim=8, w_dim=8, c_dim=3)
    with pytest.raises(ClassInputError, match="needs a class"):
        NadaTrainer(G, clip, direction, TrainConfig(steps=1, batch=2, preview_every=0), "cpu")
    cfg = TrainConfig(steps=2, batch=2, num_layers=1, preview_every=0, mixing=0.0, class_index=1)
    tr = NadaTrainer(G, clip, direction, cfg, "cpu")
    rng_copy = torch.Generator().manual_seed(cfg.seed)
    ws = tr._sample_ws()
    z = torch.randn(2, 8, generator=rng_copy)
    with torch.no_grad():
        assert torch.equal(ws, G.mapping(z, torch.eye(3)[[1, 1]], truncation_psi=cfg.truncation))
    tr.step()
    tr.step()  # layer selection and the update both ran with the class
    assert tr.step_index == 2
