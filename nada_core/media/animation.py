"""Write frame sequences as MP4 video, animated GIF, WebP, APNG or a folder of PNGs.

The format follows the output path: ``.mp4`` (H.264/yuv420p through PyAV, see :mod:`.video`),
``.gif``, ``.webp``, ``.apng``/``.png`` (animated PNG, Pillow), or a folder of
``frame_00000.png``... when the path has no extension or is an existing directory.
Files are written atomically (a failed write leaves no half file); a frame folder gets each frame
written atomically and stale frames from an earlier, longer run removed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Literal, Sequence

import numpy as np
import torch

from ..errors import InputError

Format = Literal["mp4", "gif", "webp", "apng", "frames"]
_EXTENSIONS = {".mp4": "mp4", ".gif": "gif", ".webp": "webp", ".apng": "apng", ".png": "apng"}
SUFFIXES = {"mp4": (".mp4",), "gif": (".gif",), "webp": (".webp",), "apng": (".apng", ".png")}
_FRAME_NAME = re.compile(r"^frame_(\d{5,})\.png$")


def animation_format(path: str | os.PathLike) -> Format:
    """The format :func:`write_animation` picks for ``path`` (see module docs)."""
    p = Path(path)
    if p.is_dir():
        return "frames"
    suffix = p.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]  # type: ignore[return-value]
    if not suffix:
        return "frames"
    if suffix in (".mov", ".avi", ".mkv", ".webm", ".m4v"):
        raise InputError(f"{p.name}: {suffix} video is not written here; use .mp4 (H.264), .gif, .webp, "
                         ".apng or a folder of PNG frames")
    raise InputError(f"{p.name}: unknown animation type {suffix!r}; use .mp4, .gif, .webp, .apng, or a folder name")


def frame_to_pil(frame):
    """One frame -> RGB PIL image. Accepts ``[3, H, W]``/``[1, 3, H, W]`` tensors in generator space
    [-1, 1], ``uint8`` arrays ``[H, W, 3]`` and PIL images."""
    from PIL import Image

    from .images import to_uint8

    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    if isinstance(frame, torch.Tensor):
        t = frame if frame.ndim == 4 else frame.unsqueeze(0)
        if t.ndim != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
            raise InputError(f"animation frames must be [3, H, W] tensors, got {list(frame.shape)}")
        arr = to_uint8(t)[0]
    elif isinstance(frame, np.ndarray):
        arr = frame
    else:
        raise InputError(f"cannot use a {type(frame).__name__} as an animation frame")
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise InputError(f"animation frame arrays must be uint8 [H, W, 3], got {arr.dtype} {list(arr.shape)}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")


def _durations(n: int, fps: float) -> list[int]:
    """Per-frame durations in whole milliseconds whose running total tracks ``n / fps`` seconds."""
    out, acc = [], 0
    for i in range(1, n + 1):
        t = round(i * 1000.0 / fps)
        out.append(max(1, t - acc))
        acc = t
    return out


def write_animation(frames: Iterable, path: str | os.PathLike, fps: float = 24.0, loop: bool = True,
                    lossless: bool = False, quality: int = 90, fmt: Format | None = None) -> Path:
    """Write ``frames`` (tensors ``[3, H, W]`` in [-1, 1], a ``[N, 3, H, W]`` batch, uint8 arrays or PIL
    images, all the same size) to ``path``; returns the path written (file or folder).

    ``fps``: playback speed. ``loop``: repeat forever (GIF/WebP/APNG; an MP4 player decides).
    ``lossless``/``quality`` (0-100): WebP, and MP4 (see :func:`mp4_crf`); GIF is always
    256-colour, PNG always lossless. ``fmt``: force a format. MP4 frames of
    odd size are padded to even (:func:`nada_core.media.video.even_size`).
    """
    if not (fps > 0 and np.isfinite(fps)):
        raise InputError(f"fps must be a positive number, got {fps}")
    if not 0 <= int(quality) <= 100:
        raise InputError(f"quality must be between 0 and 100, got {quality}")
    fmt = fmt or animation_format(path)
    if isinstance(frames, torch.Tensor) and frames.ndim == 4:
        frames = list(frames.unbind(0))
    images = [frame_to_pil(f) for f in frames]
    if not images:
        raise InputError("no frames to write")
    size = images[0].size
    for i, im in enumerate(images):
        if im.size != size:
            raise InputError(f"frame {i} is {im.size[0]}x{im.size[1]} but frame 0 is {size[0]}x{size[1]}; "
                             "all frames must have the same size")
    if fmt == "frames":
        return write_frame_folder(images, path)
    if fmt == "mp4":
        from .video import write_mp4

        crf = mp4_crf(int(quality), lossless)
        return write_mp4([np.asarray(im) for im in images], path, fps=fps, crf=crf)
    return _write_animated_file(images, Path(path), fmt, fps, loop, lossless, int(quality))


def _write_animated_file(images: Sequence, path: Path, fmt: Format, fps: float, loop: bool,
                         lossless: bool, quality: int) -> Path:
    from PIL import features

    from ..atomic import atomic_write

    durations = _durations(len(images), fps)
    first, rest = images[0], list(images[1:])
    if fmt == "gif":
        # One adaptive palette per frame keeps colours faithful; no disposal tricks needed since
        # every frame covers the whole canvas.
        from PIL import Image

        pal = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
               for im in images]
        kwargs = dict(format="GIF", save_all=True, append_images=pal[1:], duration=durations,
                      optimize=False, disposal=1)
        if loop:
            kwargs["loop"] = 0
        return atomic_write(path, lambda p: pal[0].save(p, **kwargs))
    if fmt == "webp":
        if not features.check_module("webp"):
            raise InputError("this Pillow build cannot write animated WebP; write a .gif or a frame folder instead")
        kwargs = dict(format="WEBP", save_all=True, append_images=rest, duration=durations,
                      loop=0 if loop else 1, lossless=bool(lossless), quality=quality, method=4)
        return atomic_write(path, lambda p: first.save(p, **kwargs))
    if fmt == "apng":
        kwargs = dict(format="PNG", save_all=True, append_images=rest, duration=durations,
                      loop=0 if loop else 1, default_image=False)
        return atomic_write(path, lambda p: first.save(p, **kwargs))
    raise InputError(f"unknown animation format {fmt!r}; use gif, webp, apng or frames")


def mp4_crf(quality: int, lossless: bool = False) -> int:
    """x264 CRF for a 0-100 quality: 90 (the default) -> 18 (visually lossless), 60 -> 28, 0 -> 48;
    100 or ``lossless`` -> 0 (lossless luma; colour is still halved by yuv420p)."""
    if lossless or quality >= 100:
        return 0
    return max(0, min(51, round(18 + (90 - quality) / 3)))


def write_frame_folder(images: Sequence, folder: str | os.PathLike) -> Path:
    """Write PIL images as ``folder/frame_00000.png``...; remove ``frame_*.png`` left from a longer earlier run."""
    from ..atomic import atomic_write

    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; give a folder name (no extension) for PNG frames")
    out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        atomic_write(out / f"frame_{i:05d}.png", lambda p, im=im: im.save(p, format="PNG"))
    for stale in out.iterdir():
        m = _FRAME_NAME.match(stale.name)
        if m and int(m.group(1)) >= len(images):
            stale.unlink()
    return out


def read_animation(path: str | os.PathLike) -> list[np.ndarray]:
    """Read every frame of an MP4/GIF/WebP/APNG (or a frame folder) as ``uint8 [H, W, 3]`` arrays."""
    from PIL import ImageSequence

    from .images import open_image_checked

    p = Path(path)
    if p.suffix.lower() == ".mp4":
        from .video import read_video

        return read_video(p)
    if p.is_dir():
        names = sorted(f for f in p.iterdir() if _FRAME_NAME.match(f.name))
        out = []
        for f in names:
            with open_image_checked(f) as im:
                out.append(np.asarray(im.convert("RGB")))
        return out
    with open_image_checked(p) as im:  # declared size checked before any frame is decoded
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]
