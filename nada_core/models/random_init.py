"""The one factory of randomly initialised generators (the demo, tests, benchmarks): no downloads."""

from __future__ import annotations

import contextlib

import torch

from .registry import AnyConfig, AnyGenerator, build_generator


def random_generator(config: AnyConfig, seed: int = 0, *, bias_std: float | None = None,
                     noise_strength: float | None = None, w_avg_std: float | None = None,
                     w_avg_samples: int = 0, isolate_rng: bool = True,
                     leave_inference_mode: bool = True) -> AnyGenerator:
    """A :class:`Generator` for ``config`` with seeded random weights, in eval mode.

    A fresh StyleGAN2 has zero biases and noise strengths, so some paths contribute nothing:
    ``bias_std`` fills every bias and noise strength with ``N(0, bias_std^2)``; otherwise
    ``noise_strength`` (if given) sets all noise strengths to one value. ``w_avg``: random with
    ``w_avg_std``, or estimated from ``w_avg_samples`` mapped codes (as a trained model's tracks it),
    else zero. ``isolate_rng``: leave the caller's global torch RNG untouched (the demo); tests pass
    False to keep seeding the global RNG as before. ``leave_inference_mode``: build normal (trainable)
    tensors even when called under ``torch.inference_mode()`` (as ComfyUI runs nodes); tests of that
    situation pass False to get inference tensors.
    """
    rng = torch.random.fork_rng(devices=[]) if isolate_rng else contextlib.nullcontext()
    mode = torch.inference_mode(False) if leave_inference_mode else contextlib.nullcontext()
    with rng, mode:
        torch.manual_seed(seed)
        G = build_generator(config)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if bias_std is not None and (name.endswith("bias") or name.endswith("noise_strength")):
                    p.copy_(torch.randn_like(p) * bias_std)
                elif noise_strength is not None and name.endswith("noise_strength"):
                    p.fill_(noise_strength)
            if w_avg_std is not None:
                G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg) * w_avg_std)
        G = G.eval()
        if w_avg_samples:
            G.mapping.w_avg.copy_(G.estimate_w_avg(num_samples=w_avg_samples, seed=seed))
    return G
