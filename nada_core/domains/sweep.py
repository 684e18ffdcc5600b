"""Strength sweeps: one domain dialled through a list of strengths, frame by frame."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch

from ..errors import InputError


def parse_strengths(text: str | Sequence[float]) -> list[float]:
    """``"0,1"`` / ``"-0.5,0,1.5"`` -> finite floats (at least one)."""
    import math

    items = text if not isinstance(text, str) else [t for t in text.replace(";", ",").split(",") if t.strip()]
    out = []
    for item in items:
        try:
            v = float(item)
        except (TypeError, ValueError):
            raise InputError(f"cannot read strength {item!r}; give numbers separated by commas, e.g. '0,1'") from None
        if not math.isfinite(v):
            raise InputError(f"strength must be a finite number, got {item!r}")
        out.append(v)
    if not out:
        raise InputError("no strengths given; use e.g. '0,1'")
    return out


def strength_schedule(strengths: Sequence[float], frames: int, loop: bool = False,
                      easing: str = "linear") -> list[float]:
    """The strength of each frame along the keyframes ``strengths`` (first frame = first strength,
    last frame = last strength exactly, unless ``loop``)."""
    from ..editing.interpolate import interpolation_schedule

    keys = list(strengths)
    return [keys[a] + (keys[b] - keys[a]) * t if t else keys[a]
            for a, b, t in interpolation_schedule(len(keys), frames, loop, easing)]


def render_strength_sweep(G: Any, domain: Any, strengths: Sequence[float], latents: Any, frames: int,
                          easing: str = "linear", loop: bool = False, layers: Any = None,
                          noise_mode: str = "const", batch_size: int = 8,
                          should_stop: Callable[[], bool] | None = None) -> Iterator[torch.Tensor]:
    """Yield ``frames`` renders ``[N, 3, R, R]`` (CPU, about [-1, 1]) of ``latents`` with ``domain``
    at the scheduled strength (on top of any domains already applied to ``G``)."""
    from ..editing.latents import render
    from .apply import apply_domains

    for s in strength_schedule(strengths, frames, loop, easing):
        if should_stop is not None and should_stop():
            return
        yield render(apply_domains(G, [(domain, s)], layers=layers), latents, noise_mode=noise_mode,
                     batch_size=batch_size)


__all__ = ["parse_strengths", "render_strength_sweep", "strength_schedule"]
