"""nada_core.models.random_init: the one random-generator factory (demo and tests)."""

import torch

from factories import tiny_config
from nada_core.models.random_init import random_generator


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_seeded_and_isolated():
    cfg = tiny_config(16)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = random_generator(cfg, 7, noise_strength=0.1)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    assert _same(a, random_generator(cfg, 7, noise_strength=0.1))
    assert not _same(a, random_generator(cfg, 8, noise_strength=0.1))
    assert not a.training


def test_options_fill_what_a_fresh_generator_leaves_zero():
    cfg = tiny_config(16)
    plain = random_generator(cfg, 0)
    noisy = random_generator(cfg, 0, noise_strength=0.25)
    rich = random_generator(cfg, 0, bias_std=0.2, w_avg_std=0.3)
    strengths = [p for n, p in noisy.named_parameters() if n.endswith("noise_strength")]
    assert strengths and all(torch.all(p == 0.25) for p in strengths)
    assert all(torch.all(p == 0) for n, p in plain.named_parameters() if n.endswith("noise_strength"))
    biases = [p for n, p in rich.named_parameters() if n.endswith("bias")]
    assert all(p.abs().sum() > 0 for p in biases)
    assert 0.15 < rich.mapping.w_avg.std().item() < 0.45
    tracked = random_generator(cfg, 0, w_avg_samples=500)
    assert torch.allclose(tracked.mapping.w_avg, plain.estimate_w_avg(num_samples=500, seed=0))


def test_inference_mode_is_left_unless_asked_to_stay():
    cfg = tiny_config(16)
    with torch.inference_mode():
        trainable = random_generator(cfg, 0, w_avg_samples=10)
        inference = random_generator(cfg, 0, leave_inference_mode=False)
    assert not next(trainable.parameters()).is_inference()
    assert next(inference.parameters()).is_inference()
