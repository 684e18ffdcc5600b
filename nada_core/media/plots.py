"""Loss curves drawn with PIL only (matplotlib is not a dependency).

``draw_loss_plot(history)`` returns a PIL image; ``save_loss_plot(history, path)`` writes it as
PNG atomically. ``history`` maps a series name ("total", "directional", ...) to its values per
step (step ``i + 1`` for value ``i``); non-finite values are skipped. Each series is drawn faint
as recorded and bold as an exponential moving average, so the trend of a noisy CLIP loss shows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

from ..atomic import atomic_write

# Colour-blind-friendly palette (Okabe-Ito).
_PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
            (86, 180, 233), (240, 228, 66), (0, 0, 0)]


def ema(values: Sequence[float], alpha: float) -> list[float]:
    """Exponential moving average with bias correction (so the first points are not pulled to 0)."""
    out, acc, weight = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(float("nan"))
            continue
        acc = (1 - alpha) * acc + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(acc / weight)
    return out


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.1e}"
    return f"{v:.3g}"


def draw_loss_plot(history: Mapping[str, Sequence[float]], width: int = 800, height: int = 450,
                   title: str = "training loss", smoothing: float | None = None):
    """Render loss curves; returns an RGB ``PIL.Image`` of ``width x height``.

    ``smoothing``: EMA weight of the newest value (default: chosen from the run length).
    """
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    series = {name: [float(v) for v in vals] for name, vals in history.items() if len(vals) > 0}
    finite = [v for vals in series.values() for v in vals if math.isfinite(v)]
    left, right, top, bottom = 64, width - 16, 32, height - 40
    draw.text((left, 10), title, fill=(0, 0, 0), font=font)
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    if not finite:
        draw.text((left + 10, top + 10), "no data yet", fill=(90, 90, 90), font=font)
        return img

    n_steps = max(len(vals) for vals in series.values())
    y_lo, y_hi = min(finite), max(finite)
    pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 1e-3)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def sx(step: float) -> float:  # step 1..n_steps -> x pixel
        return left + (right - left) * ((step - 1) / max(1, n_steps - 1))

    def sy(v: float) -> float:
        return bottom - (bottom - top) * ((v - y_lo) / (y_hi - y_lo))

    # Grid and tick labels.
    for t in _nice_ticks(y_lo, y_hi):
        y = sy(t)
        if top <= y <= bottom:
            draw.line([(left, y), (right, y)], fill=(225, 225, 225))
            label = _fmt(t)
            tw = draw.textlength(label, font=font)
            draw.text((left - 6 - tw, y - 5), label, fill=(60, 60, 60), font=font)
    for t in _nice_ticks(1, n_steps):
        if t < 1 or t != int(t):
            continue
        x = sx(t)
        draw.line([(x, bottom), (x, bottom + 4)], fill=(0, 0, 0))
        label = str(int(t))
        tw = draw.textlength(label, font=font)
        draw.text((x - tw / 2, bottom + 6), label, fill=(60, 60, 60), font=font)
    draw.text(((left + right) / 2 - 12, height - 16), "step", fill=(0, 0, 0), font=font)

    alpha = smoothing if smoothing is not None else min(1.0, max(0.02, 10.0 / max(1, n_steps)))
    legend_y = top + 6
    for idx, (name, vals) in enumerate(series.items()):
        color = _PALETTE[idx % len(_PALETTE)]
        faint = tuple(int(c + (255 - c) * 0.7) for c in color)
        for values, fill, lw in ((vals, faint, 1), (ema(vals, alpha), color, 2)):
            pts = [(sx(i + 1), sy(v)) for i, v in enumerate(values) if math.isfinite(v)]
            if len(pts) == 1:
                x, y = pts[0]
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=fill)
            elif pts:
                draw.line(pts, fill=fill, width=lw)
        last = next((v for v in reversed(vals) if math.isfinite(v)), float("nan"))
        label = f"{name}  {_fmt(last)}"
        tw = draw.textlength(label, font=font)
        draw.line([(right - tw - 34, legend_y + 5), (right - tw - 14, legend_y + 5)], fill=color, width=2)
        draw.text((right - tw - 8, legend_y), label, fill=(0, 0, 0), font=font)
        legend_y += 14
    return img


def save_loss_plot(history: Mapping[str, Sequence[float]], path: str | os.PathLike, **kwargs) -> Path:
    """Draw :func:`draw_loss_plot` and save it as PNG at ``path`` (atomic)."""
    img = draw_loss_plot(history, **kwargs)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))
