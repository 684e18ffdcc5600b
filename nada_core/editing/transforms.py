"""The StyleGAN3 input transform: translate / rotate the generated image (``--translate X,Y --rotate DEG``).

StyleGAN3's input layer samples its Fourier features through a ``[3, 3]`` matrix
(``synthesis.input.transform``), the *inverse* of the wanted image transform. NVIDIA's
``gen_images.py`` builds it as ``inv(make_transform(translate, angle))`` with
``make_transform = [[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]]`` (angle in degrees; translation in the
input layer's coordinates, where the image spans about one unit); :func:`input_transform` builds the same matrix, to pass as ``G.synthesis(ws, input_transform=M)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import InputError


def input_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """``[3, 3]`` float32 matrix for a translation ``(x, y)`` and a rotation of ``rotate`` degrees."""
    tx, ty = (float(v) for v in translate)
    a = math.radians(float(rotate))
    s, c = math.sin(a), math.cos(a)
    m = torch.tensor([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return torch.linalg.inv(m).float()


def is_identity(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> bool:
    return all(float(v) == 0.0 for v in translate) and float(rotate) == 0.0


def transform_for(G, translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor | None:
    """The matrix for ``G`` (None when nothing is asked); a clear error for generators without one."""
    if is_identity(translate, rotate):
        return None
    if not hasattr(G.synthesis, "input"):
        raise InputError("translate/rotate move StyleGAN3's input grid; this is a StyleGAN2 generator, which has "
                         "none: set them to 0 or load a StyleGAN3 generator")
    return input_transform(translate, rotate).to(G.w_avg.device)


def parse_translate(text: str) -> tuple[float, float]:
    """``"X,Y"`` -> ``(x, y)`` floats; one-line InputError otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"--translate must be two numbers 'X,Y' (e.g. 0.1,-0.2), got {text!r}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError(f"--translate must be finite numbers, got {text!r}")
    return x, y
