"""MP4 video (H.264, yuv420p) through PyAV, which ComfyUI already installs.

H.264 in yuv420p is what every player, browser and phone plays. yuv420p stores colour at half
resolution, so the width and height must be even: an odd-sized frame is *padded* by repeating its
last column/row (nothing is cut off; :func:`even_size` says the size written). The encoder is
PyAV's ``libx264`` when its wheel has it, else another H.264 encoder the wheel lists in
``av.codecs_available`` (OpenH264, hardware ones) that opens. Frames get timestamps ``0, 1, 2...``
in a ``1/fps`` time base, so the file holds exactly the frames asked for at exactly that rate.
Files are written atomically (a failed encode leaves nothing behind).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

H264_ENCODERS = ("libx264", "libopenh264", "h264_videotoolbox", "h264_nvenc", "h264_qsv", "h264_amf",
                 "h264_mf", "h264_v4l2m2m")
MAX_VIDEO_FPS = 240.0


def _av():
    try:
        import av
    except ImportError:
        raise InputError("writing .mp4 needs PyAV, which is not installed; run 'pip install av' "
                         "(or write .gif, .webp, .apng or a frame folder instead)") from None
    return av


def even_size(width: int, height: int) -> tuple[int, int]:
    """The frame size an MP4 of ``width x height`` frames gets: each odd side padded by one pixel."""
    return width + (width % 2), height + (height % 2)


def _pad_even(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return arr
    return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _fps_fraction(fps: float) -> Fraction:
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and 0 < fps <= MAX_VIDEO_FPS):
        raise InputError(f"fps must be a number in (0, {MAX_VIDEO_FPS:g}], got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def h264_encoder() -> str:
    """Name of the first H.264 encoder in :data:`H264_ENCODERS` that PyAV can open here."""
    av = _av()
    available = set(getattr(av, "codecs_available", ()))
    for name in H264_ENCODERS:
        if name not in available:
            continue
        try:
            ctx = av.CodecContext.create(name, "w")
            ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
            ctx.time_base = Fraction(1, 24)
            ctx.open()
            return name
        except Exception:  # noqa: BLE001 - a listed hardware encoder without its hardware
            continue
    raise InputError("this PyAV build has no working H.264 encoder; reinstall it with 'pip install --force-reinstall av' "
                     "(its wheels include libx264) or write .gif/.webp instead")


def write_mp4(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 24.0, crf: int = 18) -> Path:
    """Write ``uint8 [H, W, 3]`` frames (all one size) as an H.264/yuv420p ``.mp4``; returns the path.

    ``crf``: x264 quality, 0 (lossless luma) .. 51 (worst); 18 looks visually lossless.
    Odd sizes are padded (see module docs); the frame count and rate are exactly as given.
    """
    from ..atomic import atomic_write

    if not frames:
        raise InputError("no frames to write")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= int(crf) <= 51:
        raise InputError(f"crf must be between 0 and 51, got {crf}")
    rate = _fps_fraction(fps)
    av = _av()
    codec = h264_encoder()
    h, w = np.shape(frames[0])[:2] if np.ndim(frames[0]) >= 2 else (0, 0)
    if h < 1 or w < 1:
        raise InputError(f"frame 0 has shape {list(np.shape(frames[0]))}; MP4 frames are uint8 [H, W, 3] RGB arrays")
    ew, eh = even_size(w, h)

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
            stream.codec_context.time_base = Fraction(1) / rate
            if codec.startswith("libx264"):
                stream.codec_context.options = {"crf": str(int(crf)), "preset": "medium"}
            for i, arr in enumerate(frames):
                if not (isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3):
                    what = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
                    raise InputError(f"frame {i} is {what}; MP4 frames are uint8 [H, W, 3] RGB arrays")
                if arr.shape[:2] != (h, w):
                    raise InputError(f"frame {i} is {arr.shape[1]}x{arr.shape[0]} but frame 0 is {w}x{h}; "
                                     "all frames must have the same size")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad_even(arr)), format="rgb24")
                frame.pts = i
                frame.time_base = stream.codec_context.time_base
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))

    return atomic_write(path, encode)


def read_video(path: str | os.PathLike, max_frames: int = 100_000) -> list[np.ndarray]:
    """Decode every frame of a video file as ``uint8 [H, W, 3]`` RGB arrays (at most ``max_frames``)."""
    from .images import MAX_IMAGE_PIXELS

    av = _av()
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"cannot read video {Path(path).name}: the file has no video stream")
            ctx = container.streams.video[0].codec_context
            if ctx.width * ctx.height > MAX_IMAGE_PIXELS:  # declared size, before any frame is decoded
                raise InputError(f"cannot read video {Path(path).name}: frames of {ctx.width}x{ctx.height} are over "
                                 f"{MAX_IMAGE_PIXELS:,} pixels")
            for frame in container.decode(video=0):
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) >= max_frames:
                    break
    except av.FFmpegError as err:
        raise InputError(f"cannot read video {Path(path).name}: {' '.join(str(err).split())[:120]}") from None
    return out
