"""Image tensor conventions and conversions.

Conventions used throughout ``nada_core``:
- generator space: ``[N, C, H, W]`` float, about [-1, 1] (unclamped generator output);
- unit space: ``[N, C, H, W]`` float in [0, 1];
- ComfyUI ``IMAGE``: ``[B, H, W, C]`` float32 in [0, 1] on the CPU.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..atomic import atomic_write


def to_unit(img: torch.Tensor) -> torch.Tensor:
    """Generator space [-1, 1] -> [0, 1], clamped. Shape kept."""
    return ((img.float() + 1.0) * 0.5).clamp(0.0, 1.0)


def from_unit(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> generator space [-1, 1]. Shape kept."""
    return img.float() * 2.0 - 1.0


def to_comfy(img: torch.Tensor) -> torch.Tensor:
    """Generator space ``[N, C, H, W]`` -> ComfyUI ``IMAGE`` ``[N, H, W, 3]`` in [0, 1] on CPU."""
    unit = to_unit(img.detach()).cpu()
    if unit.shape[1] == 1:
        unit = unit.expand(-1, 3, -1, -1)
    return unit.permute(0, 2, 3, 1).contiguous()


def from_comfy(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI ``IMAGE`` ``[B, H, W, C]`` (C = 1, 3 or 4; alpha composited on white) -> ``[B, 3, H, W]`` in [0, 1]."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    x = image.float().permute(0, 3, 1, 2)
    return _to_rgb_unit(x)


def _to_rgb_unit(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` in [0, 1] with C in {1, 2, 3, 4} -> RGB; alpha composited over white."""
    c = x.shape[1]
    if c in (2, 4):  # grey+alpha or RGBA
        color, alpha = x[:, :-1], x[:, -1:]
        x = color * alpha + (1.0 - alpha)
        c -= 1
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    elif c != 3:
        raise ValueError(f"expected 1-4 image channels, got {c}")
    return x.clamp(0.0, 1.0)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Generator space ``[N, C, H, W]`` -> ``uint8`` array ``[N, H, W, C]``."""
    unit = to_unit(img.detach()).cpu()
    return (unit * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(img: torch.Tensor, ncols: int | None = None, pad: int = 0, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` into one ``[1, C, rows*H, cols*W]`` image (any value space).

    ``ncols`` defaults to a near-square layout; empty cells are filled with ``pad_value``.
    """
    n, c, h, w = img.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncols)
    out = img.new_full((c, nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value)
    for i in range(n):
        r, col = divmod(i, ncols)
        out[:, r * (h + pad): r * (h + pad) + h, col * (w + pad): col * (w + pad) + w] = img[i]
    return out.unsqueeze(0)


def save_png(img: torch.Tensor, path: str | os.PathLike) -> Path:
    """Save one generator-space image ``[1, C, H, W]`` (or ``[C, H, W]``) as PNG, atomically."""
    from PIL import Image

    if img.ndim == 3:
        img = img.unsqueeze(0)
    arr = to_uint8(img)[0]
    mode = "L" if arr.shape[-1] == 1 else "RGB"
    pil = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    return atomic_write(path, lambda p: pil.save(p, format="PNG"))


def pil_to_unit(pil) -> torch.Tensor:
    """PIL image of any mode (RGB, RGBA, L, LA, P, I;16, I, F, CMYK) -> ``[3, H, W]`` float in [0, 1].

    16-bit and 32-bit images keep their precision; alpha is composited over white.
    """

    mode = pil.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(pil, dtype=np.float64)
        scale = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        x = torch.from_numpy(arr / scale).float()[None]
    elif mode == "F":
        x = torch.from_numpy(np.asarray(pil, dtype=np.float32)).clamp(0, 1)[None]
    else:
        if mode == "P":
            pil = pil.convert("RGBA")
        elif mode not in ("RGB", "RGBA", "L", "LA"):
            pil = pil.convert("RGB")
        arr = np.asarray(pil)
        if arr.dtype == np.uint16:
            x = torch.from_numpy(arr.astype(np.float32) / 65535.0)
        else:
            x = torch.from_numpy(arr.astype(np.float32) / 255.0)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    return _to_rgb_unit(x.unsqueeze(0).float())[0]


MAX_IMAGE_PIXELS = 8192 * 8192  # the one limit: refused from the declared size, before decoding


def open_image_checked(path: str | os.PathLike):
    """Open an image file lazily and refuse it from its *declared* size when over
    :data:`MAX_IMAGE_PIXELS` (a decompression bomb is small on disk). Returns an open PIL image
    (caller closes it). One :class:`InputError` line for missing, unreadable or too-large files."""
    import warnings

    from PIL import Image

    from ..errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"image file not found: {p}")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and 2x it; here every bomb is an error, at our limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(p, None, err) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as err:
        raise InputError(f"cannot read image {p.name}: {_short(err)}; use a PNG, JPEG, WebP, TIFF or BMP file") from None
    w, h = pil.size
    if w * h > MAX_IMAGE_PIXELS:
        pil.close()
        raise _too_large(p, (w, h))
    return pil


def _too_large(p: Path, size: tuple[int, int] | None, pillow_err: BaseException | None = None):
    import re

    from ..errors import InputError

    if size:
        declared = f"declares {size[0]}x{size[1]} pixels"
    else:  # Pillow refused it inside open() (over twice its own limit); its message has the count
        m = re.search(r"\((\d+) pixels\)", str(pillow_err or ""))
        declared = f"declares {int(m.group(1)):,} pixels" if m else "declares too many pixels"
    return InputError(f"image {p.name} {declared}, over the limit of {MAX_IMAGE_PIXELS:,} "
                      "(8192x8192); resize it or use a smaller image")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text[:120]


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image file as ``[3, H, W]`` float in [0, 1] (see :func:`pil_to_unit`).

    Refused with one :class:`InputError` line: missing, not an image, truncated/corrupt, or
    declaring more than :data:`MAX_IMAGE_PIXELS` pixels (checked before decoding).
    """
    import warnings

    from PIL import Image, ImageOps

    from ..errors import InputError

    p = Path(path)
    pil = open_image_checked(p)
    try:
        with pil, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil.load()  # decode first: exif_transpose on a lazy image would decode without our checks
            pil = ImageOps.exif_transpose(pil)
            return pil_to_unit(pil)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(p, None, err) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as err:
        raise InputError(f"cannot read image {p.name}: {_short(err)} (truncated or corrupt?); "
                         "re-export it as PNG or JPEG") from None


def load_images(paths: Sequence[str | os.PathLike]) -> list[torch.Tensor]:
    """Read several image files (see :func:`load_image`); sizes may differ."""
    return [load_image(p) for p in paths]
