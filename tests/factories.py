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


def tiny_sg3_config(kind: str = "t", img_resolution: int = 16, z_dim: int = 16, w_dim: int = 16, **kw):
    """A small StyleGAN3-T (``kind="t"``) or -R (``"r"``: 1x1 convs, radial filters) config."""
    from nada_core.models.stylegan3 import StyleGAN3Config

    base = dict(channel_base=256, channel_max=16, num_layers=4, num_critical=2, margin_size=2, mapping_layers=2)
    if kind == "r":
        base.update(conv_kernel=1, use_radial_filters=True)
    base.update(kw)
    return StyleGAN3Config(img_resolution=img_resolution, z_dim=z_dim, w_dim=w_dim, **base)


def tiny_sg3_generator(kind: str = "t", img_resolution: int = 16, seed: int = 0, bias_std: float = 0.2,
                       w_avg_std: float = 0.3, **kw):
    """A small random StyleGAN3 in eval mode (random biases and ``w_avg`` as for :func:`tiny_generator`)."""
    return random_generator(tiny_sg3_config(kind, img_resolution, **kw), seed, bias_std=bias_std,
                            w_avg_std=w_avg_std, isolate_rng=False, leave_inference_mode=False)


def random_domain(G, kind: str, seed: int, scale: float = 0.3, torgb: bool = True):
    """A compact domain of ``kind`` ('domain' / 'stylespace') for ``G`` with seeded N(0, scale^2) values
    (instead of the zeros training starts from), so applying it visibly changes the images."""
    from nada_core.domains import new_domain

    d = new_domain(G, kind, include_torgb=torgb)
    g = torch.Generator().manual_seed(seed)
    for layer in d.layers:
        d.values[layer.path] = torch.randn(layer.channels, generator=g) * scale
    return d


def mixed_style_factors(mix, path: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(scale, offset)`` that ``[(domain, strength), ...]`` give the style of layer
    ``path``, written out independently of nada_core: each 'domain' multiplies by ``1 + st * d``,
    each 'stylespace' adds ``st * delta``; ``style -> style * scale + offset``."""
    scale, offset = torch.ones(channels), torch.zeros(channels)
    for dom, st in mix:
        if path in dom.values:
            if dom.kind == "domain":
                scale = scale * (1 + st * dom.values[path])
            else:
                offset = offset + st * dom.values[path]
    return scale, offset
