"""Tiny models for tests: built in memory, seeded, no downloads."""

from __future__ import annotations

import torch

from nada_core.models.random_init import random_generator
from nada_core.models.stylegan2 import Generator, GeneratorConfig

TINY_CHANNELS = ((4, 32), (8, 32), (16, 16), (32, 16))


def tiny_config(img_resolution: int = 32, z_dim: int = 32, w_dim: int = 32, mapping_layers: int = 2,
                channels=None, **kw) -> GeneratorConfig:
    if channels is None:
        res = [2**i for i in range(2, img_resolution.bit_length())]
        channels = tuple((r, max(8, 64 // max(1, r // 8))) for r in res)
    return GeneratorConfig(img_resolution=img_resolution, channels=tuple(channels), z_dim=z_dim, w_dim=w_dim,
                           mapping_layers=mapping_layers, **kw)


def tiny_generator(img_resolution: int = 32, seed: int = 0, randomize_all: bool = True, bias_std: float = 0.2,
                   w_avg_std: float = 0.3, **kw) -> Generator:
    """A small random generator in eval mode; ``kw`` are :func:`tiny_config`'s options.

    The tests' sizes for the engine's one factory, :func:`nada_core.models.random_init.random_generator`.
    With ``randomize_all`` the parameters a fresh StyleGAN2 initialises to zero (biases, noise
    strengths; std ``bias_std``) and ``w_avg`` (std ``w_avg_std``) are filled with random values, so
    every code path of the architecture contributes to the output (a test of the maths would
    otherwise miss them).
    """
    if not randomize_all:
        return random_generator(tiny_config(img_resolution, **kw), seed, isolate_rng=False,
                                leave_inference_mode=False)
    return random_generator(tiny_config(img_resolution, **kw), seed, bias_std=bias_std, w_avg_std=w_avg_std,
                            isolate_rng=False, leave_inference_mode=False)
