"""The training defaults reproduce the official StyleGAN-NADA code; the earlier defaults stay available.

What the official code does was read from its source and run on CPU (see docs/method.md section 2):
a chosen rosinality StyledConv trains whole (conv weight, style affine "modulation", noise
strength, activation bias); its all-layers run adds the learned constant; Adam gets lr * 4/5 and
betas ** (4/5); mixing defaults to 0; noise is random; text directions average 79 ImageNet templates.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from nada_core.guidance.losses import LossWeights, clip_loss
from nada_core.guidance.templates import IMAGENET, SHORT
from nada_core.settings import TRAIN
from nada_core.training.trainer import NadaTrainer, TrainConfig
from tests.clip_factory import load_tiny_clip
from tests.factories import tiny_generator


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def direction(clip):
    from nada_core.guidance.directions import text_direction

    return text_direction(clip, "photo", "pencil sketch", templates=False)


def test_default_settings_are_the_official_codes():
    cfg = TrainConfig()
    assert cfg.lr == 0.002 and cfg.adam_ratio == 0.8
    # rosinality's g_reg_ratio = 4 / (4 + 1), applied as lr * r and betas ** r.
    assert cfg.adam_lr == pytest.approx(0.0016, rel=1e-12)
    assert cfg.adam_betas == (0.0, pytest.approx(math.exp(0.8 * math.log(0.99)), rel=1e-12))
    assert cfg.adam_betas[1] == pytest.approx(0.9919919678, abs=1e-10)
    assert (cfg.train_affine, cfg.train_const, cfg.train_torgb) == (True, "auto", False)
    assert cfg.mixing == 0.0 and cfg.noise_mode == "random" and cfg.batch == 2 and cfg.steps == 300
    assert (cfg.n_select_codes, cfg.select_steps, cfg.select_lr) == (8, 1, 0.01)


def test_the_optimiser_runs_at_the_official_rate(clip, direction):
    tr = NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(steps=2, preview_every=0), "cpu")
    group = tr.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.0016) and group["betas"][0] == 0.0
    assert group["betas"][1] == pytest.approx(0.99 ** 0.8)
    # First Adam step with beta1 = 0: m = g, v_hat = g^2, so each weight moves by lr * g / (|g| + eps).
    before = {n: p.detach().clone() for n, p in tr.G_train.named_parameters()}
    grads = {}
    original = tr.optimizer.step

    def step_recording_grads(*a, **k):
        grads.update({n: p.grad.clone() for n, p in tr.G_train.named_parameters() if p.grad is not None})
        return original(*a, **k)

    tr.optimizer.step = step_recording_grads
    tr.step()
    name = "synthesis.convs.2.conv.weight"
    g = grads[name]
    expected = before[name] - 0.0016 * g / (g.abs() + 1e-8)
    torch.testing.assert_close(dict(tr.G_train.named_parameters())[name].detach(), expected, rtol=1e-5, atol=1e-7)


def test_all_layers_trains_convs_affines_and_constant_like_the_official_code(clip, direction):
    tr = NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(steps=1, preview_every=0), "cpu")
    before = {n: p.detach().clone() for n, p in tr.G_train.named_parameters()}
    tr.step()
    changed = {n for n, p in tr.G_train.named_parameters() if not torch.equal(p, before[n])}
    n_convs = len(tr.G_train.synthesis.convs)
    expected = {"synthesis.const"} | {f"synthesis.convs.{i}.{s}" for i in range(n_convs) for s in (
        "conv.weight", "conv.affine.weight", "conv.affine.bias", "bias", "noise_strength")}
    assert changed == expected  # no toRGB, no mapping


def test_adaptive_selection_never_trains_the_constant_by_default(clip, direction):
    tr = NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(steps=4, num_layers=3, preview_every=0), "cpu")
    const = tr.G_train.synthesis.const.detach().clone()
    tr.run()
    assert torch.equal(tr.G_train.synthesis.const, const)
    from nada_core.training.freezing import FreezeOptions, candidate_w_indices, trainable_parameter_names

    G = tr.G_train
    auto = FreezeOptions(train_affine=True, train_const="auto")
    assert "synthesis.const" not in trainable_parameter_names(G, [0, 1, 2], auto)  # a selection, entry 0 in it
    assert "synthesis.const" in trainable_parameter_names(G, candidate_w_indices(G, auto), auto)
    on = NadaTrainer(tiny_generator(16), clip, direction,
                     TrainConfig(steps=1, num_layers=3, train_const="on", preview_every=0), "cpu")
    assert "synthesis.const" in on._opt_names
    assert "synthesis.const" not in NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(
        steps=1, num_layers="all", train_const="off", preview_every=0), "cpu")._opt_names


def test_train_const_takes_the_booleans_saved_by_earlier_versions():
    assert TRAIN.check("train_const", True) == "on" and TRAIN.check("train_const", False) == "off"
    assert TrainConfig.from_dict({"train_const": False}).train_const == "off"
    # A config saved before adam_ratio existed ran plain Adam: it resumes that way.
    assert TrainConfig.from_dict({"lr": 0.002}, saved=True).adam_ratio == 1.0
    assert TrainConfig.from_dict({"lr": 0.002}).adam_ratio == 0.8  # a partial dict from a caller: defaults


def test_template_lists():
    from nada_core.guidance.directions import DEFAULT_TEMPLATES, apply_templates, text_direction

    assert DEFAULT_TEMPLATES == IMAGENET and len(IMAGENET) == 79 and len(set(IMAGENET)) == 79
    assert len(SHORT) == 24 and all(t.count("{}") == 1 for t in IMAGENET + SHORT)
    assert apply_templates("dog", "short") == [t.replace("{}", "dog") for t in SHORT]
    assert apply_templates("dog", True) == apply_templates("dog", "imagenet")


def test_previous_defaults_reproduce_the_earlier_training_step(clip, direction):
    """``TrainConfig.previous_defaults()`` = the earlier recipe, checked against an independent
    re-computation: plain Adam(0.002, (0, 0.99)) on the conv weights, biases and noise strengths
    only, style mixing 0.9 (the pair shares the crossover), the layers' stored noise."""
    G = tiny_generator(16)
    cfg = TrainConfig.previous_defaults(steps=2, preview_every=0)
    assert (cfg.adam_lr, cfg.adam_betas, cfg.train_affine, cfg.train_const, cfg.mixing, cfg.noise_mode) == (
        0.002, (0.0, 0.99), False, "off", 0.9, "const")
    tr = NadaTrainer(G, clip, direction, cfg, "cpu")
    twin = NadaTrainer(G, clip, direction, cfg, "cpu")  # only its _sample_ws is used: the same codes
    ref = copy.deepcopy(tr.G_train.synthesis)
    roles = tr.G_train.parameter_roles()
    names = [n for n, _ in tr.G_train.named_parameters() if roles[n] == "conv"]
    ref_params = dict(ref.named_parameters())
    for p in ref.parameters():
        p.requires_grad_(False)
    for n in names:
        ref_params[n.removeprefix("synthesis.")].requires_grad_(True)
    opt = torch.optim.Adam([ref_params[n.removeprefix("synthesis.")] for n in names], lr=0.002, betas=(0.0, 0.99))
    guides = direction.guides(clip, device="cpu")
    for _ in range(2):
        tr.step()
        ws = twin._sample_ws()
        with torch.no_grad():
            frozen = tr.G_frozen.synthesis(ws, noise_mode="const")
        loss = clip_loss(guides, ref(ws, noise_mode="const"), frozen, LossWeights(1.0, 0.0, 0.0)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    mixed = ws[:, 0].ne(ws[:, -1]).any(dim=-1)
    assert mixed.any()  # mixing 0.9 drew a crossover (seeded)
    got = dict(tr.G_train.synthesis.named_parameters())
    for n, p in ref.named_parameters():
        torch.testing.assert_close(got[n].detach(), p.detach(), rtol=1e-5, atol=1e-7)
    assert not torch.equal(got["convs.1.conv.weight"], tr.G_frozen.synthesis.convs[1].conv.weight)
