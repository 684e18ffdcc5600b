"""Differentiable tensor copy of open_clip's PIL preprocessing (resize, centre crop, normalise)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import InputError


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocess:
    """CLIP input settings. ``size``: square side in pixels; mean/std per RGB channel."""

    size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: float = 0.0

    @classmethod
    def from_cfg(cls, cfg: dict, size: int) -> "Preprocess":
        mode = cfg.get("resize_mode", "shortest")
        return cls(size=int(size), mean=tuple(float(v) for v in cfg.get("mean", OPENAI_MEAN)),
                   std=tuple(float(v) for v in cfg.get("std", OPENAI_STD)),
                   interpolation=str(cfg.get("interpolation", "bicubic")),
                   resize_mode=mode if mode in ("shortest", "squash", "longest") else "shortest",
                   fill_color=float(cfg.get("fill_color", 0)) / 255.0)


def _resize(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = "bilinear" if interpolation == "bilinear" else "bicubic"
    # antialias=True makes torch use PIL's filters (bicubic a=-0.5, support scaled on downsampling),
    # so the result matches open_clip's PIL preprocessing of the same picture.
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)


def preprocess_unit_images(x: torch.Tensor, pre: Preprocess, clamp: bool = False) -> torch.Tensor:
    """``[N, 3, H, W]`` in [0, 1] (any H, W) -> CLIP input ``[N, 3, S, S]`` (normalised), differentiable.

    ``shortest``: resize the shortest side to S (long side ``int(S * long / short)``, as
    torchvision), centre crop (offsets ``round((h - S) / 2)``); ``squash``: resize to S x S;
    ``longest``: resize the longest side to S and pad centrally with ``fill_color``.
    ``clamp`` clips to [0, 1] after resizing, as PIL does for 8-bit images (kills gradients at
    clipped pixels, so generator images are not clamped).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"expected images [N, 3, H, W], got shape {list(x.shape)}")
    s = pre.size
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if pre.resize_mode == "squash":
        x = _resize(x, (s, s), pre.interpolation)
    elif pre.resize_mode == "longest":
        scale = max(h, w) / s
        nh, nw = max(1, round(h / scale)), max(1, round(w / scale))
        x = _resize(x, (nh, nw), pre.interpolation)
        pad = (max(0, (s - nw) // 2), max(0, (s - nw + 1) // 2), max(0, (s - nh) // 2), max(0, (s - nh + 1) // 2))
        if any(pad):
            x = F.pad(x, pad, value=pre.fill_color)
    else:
        if h <= w:
            nh, nw = s, int(s * w / h)
        else:
            nh, nw = int(s * h / w), s
        x = _resize(x, (nh, nw), pre.interpolation)
    if clamp:
        x = x.clamp(0.0, 1.0)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    x = x[..., top: top + s, left: left + s]
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _as_rgb(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise InputError(f"{what}: expected images [N, C, H, W], got shape {list(x.shape)}")
    c = x.shape[1]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    elif c == 4:
        x = x[:, :3]
    elif c != 3:
        raise InputError(f"{what}: expected 1, 3 or 4 channels, got {c} (shape {list(x.shape)})")
    if x.shape[0] == 0:
        raise InputError(f"{what}: the image batch is empty")
    return x
