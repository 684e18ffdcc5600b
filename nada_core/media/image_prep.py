"""Bring user images to a generator's square resolution.

Users bring whatever they have: file paths, PIL images, tensors in [0, 1] (``[3, H, W]`` or
``[N, C, H, W]``), ComfyUI ``IMAGE`` batches (``[B, H, W, C]``) or numpy arrays; RGB, RGBA (alpha
composited over white), greyscale, 8 or 16 bit, any size and aspect ratio. :func:`prepare_images`
turns them all into one ``[N, 3, R, R]`` batch in [0, 1] and reports, per image, the box of the
original that was used, so a caller can show or paste back the matching region.

Fit modes:
- ``"crop"`` (default): the largest centred square is cut out and resized to ``R x R``;
- ``"pad"``: the whole image is resized to fit and centred on a white ``R x R`` canvas;
- ``"stretch"``: the whole image is resized to ``R x R`` (aspect ratio not kept).

Resizing is bicubic with antialiasing (so large photos do not alias when shrunk) and clamped to
[0, 1] (bicubic overshoots at hard edges).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

FitMode = Literal["crop", "pad", "stretch"]
Layout = Literal["auto", "nchw", "comfy"]
Box = tuple[int, int, int, int]  # (left, top, right, bottom) in original pixels, right/bottom exclusive


@dataclasses.dataclass
class PreparedImages:
    """Images ready for a generator.

    ``images``: ``[N, 3, R, R]`` float32 in [0, 1] (CPU).
    ``crop_boxes``: per image, ``(left, top, right, bottom)`` of the original pixels used
    (right/bottom exclusive; the whole image for ``pad`` and ``stretch``).
    ``original_sizes``: per image, ``(width, height)`` as given.
    ``names``: per image, the file name or ``"image_<i>"``.
    """

    images: torch.Tensor
    crop_boxes: list[Box]
    original_sizes: list[tuple[int, int]]
    names: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]


def centre_crop_box(width: int, height: int) -> Box:
    """The largest centred square of a ``width x height`` image, as ``(left, top, right, bottom)``."""
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` in [0, 1] to ``[N, C, size, size]`` (bicubic, antialiased, clamped)."""
    if img.shape[-2:] == (size, size):
        return img.clone()
    out = F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0)


def fit_image(img: torch.Tensor, resolution: int, fit: FitMode = "crop") -> tuple[torch.Tensor, Box]:
    """One ``[3, H, W]`` image in [0, 1] -> ``([3, R, R], box)`` following ``fit`` (see module docs)."""
    _, h, w = img.shape
    if fit == "crop":
        box = centre_crop_box(w, h)
        left, top, right, bottom = box
        out = resize_square(img[None, :, top:bottom, left:right], resolution)[0]
        return out, box
    box = (0, 0, w, h)
    if fit == "stretch":
        out = F.interpolate(img[None], size=(resolution, resolution), mode="bicubic", align_corners=False,
                            antialias=True).clamp(0.0, 1.0)[0]
        return out, box
    if fit == "pad":
        scale = resolution / max(w, h)
        new_w = max(1, min(resolution, round(w * scale)))
        new_h = max(1, min(resolution, round(h * scale)))
        small = F.interpolate(img[None], size=(new_h, new_w), mode="bicubic", align_corners=False,
                              antialias=True).clamp(0.0, 1.0)[0]
        canvas = torch.ones(3, resolution, resolution, dtype=img.dtype)
        top, left = (resolution - new_h) // 2, (resolution - new_w) // 2
        canvas[:, top:top + new_h, left:left + new_w] = small
        return canvas, box
    raise InputError(f"unknown fit mode {fit!r}; use 'crop', 'pad' or 'stretch'")


# ----------------------------------------------------------------------------------------------
# Reading every kind of input as [3, H, W] in [0, 1]
# ----------------------------------------------------------------------------------------------


def _unit_from_integer(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if x.dtype == getattr(torch, "uint16", None):
        return x.to(torch.int32).float() / 65535.0
    raise InputError(f"image tensors of dtype {x.dtype} are not supported; pass float in [0, 1], uint8 or uint16")


def _check_unit_range(x: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.is_floating_point(x):
        x = _unit_from_integer(x)
    x = x.detach().float().cpu()
    if x.numel() == 0:
        raise InputError(f"{what} is empty (shape {list(x.shape)}); pass an image with at least 1x1 pixels")
    if not torch.isfinite(x).all():
        raise InputError(f"{what} contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        hint = " (it looks like generator output in [-1, 1]; convert it with images.to_unit)" if lo >= -1.001 else ""
        raise InputError(f"{what} has values in [{lo:.3g}, {hi:.3g}]; image tensors must be in [0, 1]{hint}")
    return x.clamp(0.0, 1.0)


def _rgb_from_channels(x: torch.Tensor, what: str) -> torch.Tensor:
    """``[N, C, H, W]`` (C in 1..4) -> ``[N, 3, H, W]``, alpha composited over white."""
    from .images import from_comfy

    if x.shape[1] not in (1, 2, 3, 4):
        raise InputError(f"{what} has {x.shape[1]} channels; images need 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)")
    return from_comfy(x.permute(0, 2, 3, 1))


_CHANNELS = (1, 2, 3, 4)


def _guess_layout(shape: tuple[int, ...], what: str) -> Layout:
    """``[N, C, H, W]`` or ComfyUI ``[B, H, W, C]``? Decided by which axis can hold channels (RGB first)."""
    chw, hwc = shape[1] in _CHANNELS, shape[-1] in _CHANNELS
    if chw != hwc:
        return "nchw" if chw else "comfy"
    if chw and (shape[1] == 3) != (shape[-1] == 3):
        return "nchw" if shape[1] == 3 else "comfy"
    raise InputError(f"{what} of shape {list(shape)} is ambiguous; pass layout='nchw' or layout='comfy'")


def _tensor_images(x: torch.Tensor, layout: Layout, what: str) -> list[torch.Tensor]:
    """A tensor in any supported layout -> list of ``[3, H, W]`` in [0, 1]."""
    x = _check_unit_range(x, what)
    if x.ndim == 2:  # [H, W] greyscale
        x, layout = x[None, None], "nchw"
    elif x.ndim == 3:
        if layout == "auto":
            # A 3-D tensor is [C, H, W] unless only its last axis can be a channel axis.
            layout = "comfy" if (x.shape[0] not in _CHANNELS and x.shape[-1] in _CHANNELS) else "nchw"
        x = x[None]
    elif x.ndim != 4:
        raise InputError(f"{what} has shape {list(x.shape)}; expected [3, H, W], [N, C, H, W] or ComfyUI [B, H, W, C]")
    if layout == "auto":
        layout = _guess_layout(tuple(x.shape), what)
    if layout == "comfy":
        x = x.permute(0, 3, 1, 2)
    elif layout != "nchw":
        raise InputError(f"unknown layout {layout!r}; use 'auto', 'nchw' or 'comfy'")
    x = _rgb_from_channels(x, what)
    return list(x.unbind(0))


def _numpy_image(arr: np.ndarray, what: str) -> list[torch.Tensor]:
    """numpy ``[H, W]``, ``[H, W, C]`` or ``[N, H, W, C]`` (uint8, uint16 or float in [0, 1])."""
    if arr.dtype == np.uint8:
        x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif arr.dtype == np.uint16:
        x = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    elif np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    else:
        raise InputError(f"{what}: numpy arrays of dtype {arr.dtype} are not supported; use uint8, uint16 or float")
    if x.ndim == 2:
        return _tensor_images(x, "nchw", what)
    return _tensor_images(x, "comfy", what)


def _as_unit_images(item: Any, index: int, layout: Layout) -> tuple[list[torch.Tensor], list[str]]:
    from .images import load_image, pil_to_unit

    if isinstance(item, (str, os.PathLike)):
        p = Path(item)
        return [load_image(p)], [p.name]
    if isinstance(item, torch.Tensor):
        imgs = _tensor_images(item, layout, f"image {index}")
    elif isinstance(item, np.ndarray):
        imgs = _numpy_image(item, f"image {index}")
    elif hasattr(item, "mode") and hasattr(item, "size") and hasattr(item, "convert"):  # PIL image
        imgs = [pil_to_unit(item)]
    else:
        raise InputError(f"image {index} is a {type(item).__name__}; pass file paths, PIL images or tensors in [0, 1]")
    return imgs, [f"image_{index + k}" for k in range(len(imgs))]


def to_image_list(images: Any, layout: Layout = "auto") -> tuple[list[torch.Tensor], list[str]]:
    """Any supported input (one item or a list of them) -> (``[3, H, W]`` images in [0, 1], names)."""
    if isinstance(images, (str, os.PathLike, torch.Tensor, np.ndarray)) or hasattr(images, "mode"):
        items: Sequence[Any] = [images]
    elif isinstance(images, Iterable):
        items = list(images)
    else:
        raise InputError(f"cannot read images from a {type(images).__name__}")
    out: list[torch.Tensor] = []
    names: list[str] = []
    for item in items:
        imgs, nm = _as_unit_images(item, len(out), layout)
        out.extend(imgs)
        names.extend(nm)
    if not out:
        raise InputError("no images given; pass at least one image")
    for img, name in zip(out, names):
        if img.shape[-1] < 1 or img.shape[-2] < 1:
            raise InputError(f"{name} has no pixels (size {img.shape[-1]}x{img.shape[-2]})")
    return out, names


def prepare_images(images: Any, resolution: int, fit: FitMode = "crop", layout: Layout = "auto") -> PreparedImages:
    """Read, convert and resize images for a ``resolution`` px generator.

    ``images``: a path, PIL image, numpy array, tensor (``[3, H, W]``/``[N, C, H, W]`` in [0, 1] or
    ComfyUI ``[B, H, W, C]``), or a list mixing them. ``layout`` settles 4-D tensors whose shape
    fits both conventions. Returns :class:`PreparedImages` with ``images [N, 3, R, R]`` in [0, 1].
    """
    if fit not in ("crop", "pad", "stretch"):
        raise InputError(f"unknown fit mode {fit!r}; use 'crop', 'pad' or 'stretch'")
    imgs, names = to_image_list(images, layout)
    fitted, boxes, sizes = [], [], []
    for img in imgs:
        out, box = fit_image(img, resolution, fit)
        fitted.append(out)
        boxes.append(box)
        sizes.append((int(img.shape[-1]), int(img.shape[-2])))
    return PreparedImages(torch.stack(fitted).float().contiguous(), boxes, sizes, names)
