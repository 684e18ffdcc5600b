"""nada_core.guidance.losses: loss maths against explicit loops, weighting, gradients through CLIP."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from nada_core.guidance.clip import ClipEnsemble
from nada_core.guidance.directions import text_direction
from nada_core.errors import InputError
from nada_core.guidance.losses import (SELECTION_WEIGHTS, LossWeights, angle_consistency_loss, clip_loss, combine,
                                       directional_loss, global_loss)
from nada_core.guidance.directions import Guide
from tests.factories import tiny_generator



def _rand(n, d, seed):
    return torch.from_numpy(np.random.RandomState(seed).randn(n, d)).float()


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _unit(v):
    return v / np.linalg.norm(v)


def _loop_directional(train, frozen, direction):
    total = 0.0
    for t, f in zip(train, frozen):
        total += 1 - _cos(_unit(t) - _unit(f), direction)
    return total / len(train)


def _loop_global(emb, target):
    return sum(1 - _cos(e, target) for e in emb) / len(emb)


def _loop_angle(train, frozen):
    terms = []
    for i in range(len(train)):
        for j in range(i + 1, len(train)):
            terms.append((_cos(train[i], train[j]) - _cos(frozen[i], frozen[j])) ** 2)
    return sum(terms) / len(terms)


# ------------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------------
def test_directional_loss_matches_a_loop():
    train, frozen, d = _rand(5, 16, 0), _rand(5, 16, 1), _rand(1, 16, 2)[0]
    got = directional_loss(train, frozen, d)
    expected = _loop_directional(train.double().numpy(), frozen.double().numpy(), d.double().numpy())
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # Aligned with the direction -> 0; opposite -> 2.
    f = torch.nn.functional.normalize(_rand(3, 16, 3), dim=-1)
    unit_d = torch.nn.functional.normalize(d, dim=0)
    assert directional_loss(f + 0.1 * unit_d, f, unit_d).item() == pytest.approx(0.0, abs=0.02)
    assert directional_loss(f - 0.1 * unit_d, f, unit_d).item() == pytest.approx(2.0, abs=0.02)


def test_directional_loss_is_finite_at_identical_generators():
    frozen = _rand(2, 16, 4)
    train = frozen.clone().requires_grad_(True)
    loss = directional_loss(train, frozen, _rand(1, 16, 5)[0])
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert torch.isfinite(train.grad).all() and train.grad.abs().sum() > 0


def test_global_loss_matches_a_loop():
    emb, target = _rand(4, 16, 6), _rand(1, 16, 7)[0]
    got = global_loss(emb, target)
    assert got.item() == pytest.approx(_loop_global(emb.double().numpy(), target.double().numpy()), abs=1e-6)
    assert global_loss(target[None] * 3, target).item() == pytest.approx(0.0, abs=1e-6)


def test_angle_consistency_loss_matches_a_double_loop():
    train, frozen = _rand(6, 16, 8), _rand(6, 16, 9)
    got = angle_consistency_loss(train, frozen)
    assert got.item() == pytest.approx(_loop_angle(train.double().numpy(), frozen.double().numpy()), abs=1e-6)
    # Same pairwise similarities (a rotation of every embedding) -> zero loss.
    q, _ = torch.linalg.qr(_rand(16, 16, 10))
    assert angle_consistency_loss(frozen @ q, frozen).item() == pytest.approx(0.0, abs=1e-6)


def test_angle_loss_of_a_single_image_is_zero_and_backpropagates():
    train = _rand(1, 16, 11).requires_grad_(True)
    loss = angle_consistency_loss(train, _rand(1, 16, 12))
    assert loss.item() == 0.0
    loss.backward()
    assert train.grad is not None


def test_shape_errors():
    with pytest.raises(InputError, match="same shape"):
        directional_loss(_rand(2, 16, 0), _rand(3, 16, 0), _rand(1, 16, 0)[0])
    with pytest.raises(InputError, match="at least one"):
        angle_consistency_loss(torch.zeros(0, 4), torch.zeros(0, 4))
    with pytest.raises(InputError):
        global_loss(torch.zeros(0, 4), torch.ones(4))


# ------------------------------------------------------------------------------------------------
# The one combination (losses.combine / clip_loss), which the trainer's step and layer selection call
# ------------------------------------------------------------------------------------------------
def test_defaults_follow_the_paper_and_bad_weights_are_rejected():
    from nada_core.training.config import TrainConfig

    w = LossWeights()
    assert (w.directional, w.global_, w.angle) == (1.0, 0.0, 0.0)
    cfg = TrainConfig()
    assert (cfg.directional_weight, cfg.global_weight, cfg.angle_weight) == (1.0, 0.0, 0.0)
    # weights are validated once, with the other settings, at the boundary
    for bad in (dict(directional_weight=-1), dict(global_weight=math.nan), dict(angle_weight="x"),
                dict(directional_weight=0, global_weight=0, angle_weight=0)):
        with pytest.raises(InputError):
            TrainConfig(**bad)


def _guides(vectors, targets, weights=None):
    return [Guide(name, None, (weights or {}).get(name, 1.0), vectors[name], targets[name]) for name in vectors]


def test_from_embeddings_weights_terms_and_models_as_documented():
    emb = {"a": (_rand(3, 8, 1), _rand(3, 8, 2)), "b": (_rand(3, 8, 3), _rand(3, 8, 4))}
    vectors = {"a": _rand(1, 8, 5)[0], "b": _rand(1, 8, 6)[0]}
    targets = {"a": _rand(1, 8, 7)[0], "b": _rand(1, 8, 8)[0]}
    weights = {"a": 1.0, "b": 3.0}
    result = combine(emb, _guides(vectors, targets, weights), LossWeights(directional=0.8, global_=0.2, angle=0.5))
    expected, per = 0.0, {}
    for name, (t, f) in emb.items():
        tn, fn = t.double().numpy(), f.double().numpy()
        terms = {"directional": _loop_directional(tn, fn, vectors[name].double().numpy()),
                 "global": _loop_global(tn, targets[name].double().numpy()),
                 "angle": _loop_angle(tn, fn)}
        per[name] = terms
        expected += weights[name] * (0.8 * terms["directional"] + 0.2 * terms["global"] + 0.5 * terms["angle"])
    assert result.total.item() == pytest.approx(expected, abs=1e-5)
    report = result.report()
    assert report["total"].item() == pytest.approx(expected, abs=1e-5)
    averaged = result.averaged()
    for term in ("directional", "global", "angle"):
        avg = (per["a"][term] * 1 + per["b"][term] * 3) / 4
        assert averaged[term] == pytest.approx(avg, abs=1e-5)
        assert result.per_guide["b"][term].item() == pytest.approx(per["b"][term], abs=1e-5)
        assert report[f"{term}/b"].item() == pytest.approx(per["b"][term], abs=1e-5)
    assert all(isinstance(v, float) for v in averaged.values())


def test_global_only_loss_needs_no_frozen_images():
    vectors, targets = {"a": _rand(1, 8, 5)[0]}, {"a": _rand(1, 8, 7)[0]}
    train = _rand(2, 8, 1)
    res = combine({"a": (train, None)}, _guides(vectors, targets), SELECTION_WEIGHTS)
    assert res.total.item() == pytest.approx(_loop_global(train.double().numpy(),
                                                          targets["a"].double().numpy()), abs=1e-6)
    assert set(res.report()) == {"total", "global"}
    with pytest.raises(InputError, match="frozen"):
        combine({"a": (train, None)}, _guides(vectors, targets), LossWeights())


# ------------------------------------------------------------------------------------------------
# Through CLIP and a generator
# ------------------------------------------------------------------------------------------------
def test_gradients_reach_the_trained_generator_only(tiny):
    G_frozen = tiny_generator(32, seed=0)
    G_train = tiny_generator(32, seed=0).train()
    G_train.requires_grad_(True)
    G_frozen.requires_grad_(False)
    direction = text_direction(tiny, "photo", "sketch")
    z = torch.randn(2, G_frozen.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ws = G_frozen.mapping(z)
        frozen_img = G_frozen.synthesis(ws)
    with torch.no_grad():  # move the trained copy a little so the two generators differ
        for p in G_train.synthesis.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    train_img = G_train.synthesis(ws)
    result = clip_loss(direction.guides(tiny), train_img, frozen_img, LossWeights(1.0, 0.5, 1.0))
    result.total.backward()
    grads = [p.grad for p in G_train.synthesis.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in G_frozen.parameters())
    assert all(p.grad is None for p in tiny.model.parameters())
    assert set(result.report()) == {"total", "directional", "global", "angle"}


def test_frozen_images_are_encoded_without_autograd_and_the_loss_matches_direct_encodings(tiny, monkeypatch):
    """The frozen images go through CLIP under no_grad (their own call: CLIP's backward pass covers
    only the trained images), the trained ones with grad; the loss equals the terms computed from
    separate encodings."""
    direction = text_direction(tiny, "photo", "sketch")
    gen = torch.Generator().manual_seed(3)
    frozen = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    train = (frozen + 0.2 * torch.randn(3, 3, 32, 32, generator=gen)).requires_grad_(True)
    grad_modes = []
    original = tiny.encode_image
    monkeypatch.setattr(tiny, "encode_image", lambda img: (grad_modes.append(torch.is_grad_enabled()), original(img))[1])
    result = clip_loss(direction.guides(tiny), train, frozen, LossWeights(angle=1.0))
    assert grad_modes == [False, True]
    monkeypatch.setattr(tiny, "encode_image", original)
    t_emb = tiny.encode_image(train)
    with torch.no_grad():
        f_emb = tiny.encode_image(frozen)
    two = directional_loss(t_emb, f_emb, direction.vector(tiny.name)) + angle_consistency_loss(t_emb, f_emb)
    assert result.total.item() == pytest.approx(two.item(), abs=1e-5)
    assert result.total.requires_grad
    assert not result.report()["directional"].requires_grad  # report terms are detached
    result.total.backward()
    assert train.grad is not None and train.grad.abs().max() > 0


def test_ensemble_loss_is_the_weighted_sum_and_skips_zero_weight_models(tiny, tiny_b):
    class Never:
        name = "never"

        def encode_image(self, img):
            raise AssertionError("zero-weight model was called")

        encode_text = encode_image

    ens = ClipEnsemble([(tiny, 1.0), (tiny_b, 0.25), (Never(), 0.0)])
    direction = text_direction(ens, "photo", "sketch")
    frozen = torch.rand(2, 3, 32, 32) * 2 - 1
    train = frozen.flip(-1)
    w = LossWeights()
    guides = direction.guides(ens)
    both = clip_loss(guides, train, frozen, w)
    alone = lambda name: [dataclasses.replace(g, weight=1.0) for g in guides if g.name == name]  # noqa: E731
    a = clip_loss(alone(tiny.name), train, frozen, w).total.item()
    b = clip_loss(alone(tiny_b.name), train, frozen, w).total.item()
    assert both.total.item() == pytest.approx(a + 0.25 * b, abs=1e-5)
    assert set(both.per_guide) == {tiny.name, tiny_b.name}


def test_ensemble_global_loss_is_differentiable(tiny):
    direction = text_direction(tiny, "photo", "sketch")
    img = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    loss = clip_loss(direction.guides(tiny), img, None, SELECTION_WEIGHTS).total
    expected = global_loss(tiny.encode_image(img.detach()), direction.target(tiny.name))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_mismatched_batches_are_rejected(tiny):
    direction = text_direction(tiny, "photo", "sketch")
    with pytest.raises(InputError, match="differ in shape"):
        clip_loss(direction.guides(tiny), torch.zeros(2, 3, 32, 32), torch.zeros(3, 3, 32, 32), LossWeights())


def test_trainer_step_and_selection_use_the_one_combination(tiny, monkeypatch):
    """The trainer's step and its layer-selection pass both go through losses.combine."""
    import nada_core.guidance.losses as losses_mod
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    calls = []
    real = losses_mod.combine

    def spy(emb, guides, weights):
        calls.append(weights)
        return real(emb, guides, weights)

    monkeypatch.setattr(losses_mod, "combine", spy)
    G = tiny_generator(32, seed=0)
    direction = text_direction(tiny, "photo", "sketch")
    trainer = NadaTrainer(G, tiny, direction, TrainConfig(steps=1, num_layers=2, preview_every=0))
    trainer.step()
    assert SELECTION_WEIGHTS in calls and LossWeights() in calls
