"""Write our generators for the rest of the StyleGAN ecosystem.

``rosinality``: a ``.pt`` file ``{"g_ema": state_dict, "latent_avg": w_avg [w_dim]}`` with the
exact key names, shapes and order of rosinality stylegan2-pytorch's ``Generator`` (the table in
:func:`nada_core.formats.rosinality.tensor_table`, the same one the loader reads with), holding
only tensors, so ``torch.load(path, weights_only=True)`` opens it. This is what e4e, pSp,
StyleCLIP and the official StyleGAN-NADA scripts load. Reading it back with
:func:`~nada_core.formats.checkpoints.load_generator` gives the same weights and ``w_avg`` bit for bit.

Layouts rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)`` cannot build are
refused in one line (:func:`rosinality_blockers`), unless ``custom_layout`` allows sizes outside
its table (channel widths, mapping widths, image channels): the file then loads here and in forks
that read sizes from the weights, not in the original class. An NVIDIA ``.pkl`` is not written: it must embed NVIDIA's source code to load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..models.stylegan2 import Generator, GeneratorConfig, channels_from_multiplier
from .rosinality import _BLUR_TAPS, ROSINALITY_LR_MLP, rosinality_state_dict

EXPORT_FORMATS = ("rosinality", "safetensors", "nvidia")
EXPORT_SUFFIXES = {"rosinality": (".pt", ".pth"), "safetensors": (".safetensors",), "nvidia": (".pkl",)}
NVIDIA_REFUSAL = ("an NVIDIA stylegan2-ada .pkl cannot be written: it must embed NVIDIA's network source code "
                  "(under NVIDIA's licence) to load; export --format rosinality and convert it with NVIDIA's tools, "
                  "or keep the .safetensors")


def channel_multiplier_of(cfg: GeneratorConfig) -> int | None:
    """The ``channel_multiplier`` whose rosinality table gives ``cfg``'s widths, or None."""
    for m in range(1, 17):
        if dict(channels_from_multiplier(cfg.img_resolution, m)) == cfg.channel_dict:
            return m
    return None


def rosinality_blockers(cfg: GeneratorConfig, custom_layout: bool = False) -> list[str]:
    """Why rosinality's generator cannot hold ``cfg`` exactly (empty: it can), one phrase each."""
    out = []
    if cfg.conv_clamp is not None:
        out.append(f"it clamps activations at {cfg.conv_clamp:g} (conv_clamp), which rosinality's generator "
                   f"does not, so images would differ")
    if tuple(cfg.resample_filter) != _BLUR_TAPS:
        out.append(f"its resample filter {list(cfg.resample_filter)} is not rosinality's fixed [1, 3, 3, 1]")
    if abs(cfg.mapping_lr_mul - ROSINALITY_LR_MLP) > 1e-12:
        out.append(f"its mapping learning-rate multiplier is {cfg.mapping_lr_mul:g}, rosinality's files "
                   f"assume {ROSINALITY_LR_MLP}")
    if not custom_layout:
        if cfg.z_dim != cfg.w_dim or (cfg.mapping_hidden or cfg.w_dim) != cfg.w_dim:
            out.append(f"its mapping network is {cfg.z_dim} -> {cfg.mapping_hidden or cfg.w_dim} -> {cfg.w_dim}, "
                       f"rosinality's has one width (style_dim) throughout")
        if cfg.img_channels != 3:
            out.append(f"it makes {cfg.img_channels}-channel images, rosinality's generator makes RGB")
        if channel_multiplier_of(cfg) is None:
            widths = ", ".join(f"{r}:{c}" for r, c in cfg.channels)
            out.append(f"its channel widths ({widths}) are not rosinality's table (512 up to 32 px, then "
                       f"256*m, 128*m, ... for a channel_multiplier m)")
    return out


def export_generator(G: Generator, path: str | os.PathLike, fmt: str = "rosinality", *,
                     custom_layout: bool = False) -> Path:
    """Write ``G`` as ``fmt`` (one of :data:`EXPORT_FORMATS`) to ``path`` atomically; returns the path.

    Raises :class:`InputError` in one line for a format or layout that cannot be written.
    """
    from ..atomic import atomic_write
    from .checkpoints import save_generator

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "nvidia":
        raise InputError(NVIDIA_REFUSAL)
    if not isinstance(G, Generator):
        raise InputError(f"export needs a nada_core Generator, got {type(G).__name__}")
    target = Path(path)
    if target.suffix.lower() not in EXPORT_SUFFIXES[fmt]:
        raise InputError(f"{target}: a {fmt} export is a {' or '.join(EXPORT_SUFFIXES[fmt])} file; "
                         f"name it {target.stem or 'generator'}{EXPORT_SUFFIXES[fmt][0]}")
    if fmt == "safetensors":
        return save_generator(G, target)
    problems = rosinality_blockers(G.config, custom_layout=custom_layout)
    if problems:
        hint = "" if custom_layout or rosinality_blockers(G.config, custom_layout=True) else \
            " (--custom-layout writes it anyway, for code that reads the sizes from the weights)"
        raise InputError(f"cannot export as a rosinality .pt: {'; '.join(problems)}{hint}; keep the .safetensors")
    ckpt = rosinality_checkpoint(G)
    atomic_write(target, lambda tmp: torch.save(ckpt, tmp))
    return target


def rosinality_checkpoint(G: Generator) -> dict[str, Any]:
    """``{"g_ema": rosinality state dict, "latent_avg": w_avg [w_dim]}`` (float32 CPU tensors only)."""
    sd = G.state_dict()
    return {"g_ema": rosinality_state_dict(sd, G.config),
            "latent_avg": sd["mapping.w_avg"].detach().to("cpu", torch.float32).contiguous().clone()}
