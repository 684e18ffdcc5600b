"""MP4 output: H.264/yuv420p through PyAV, decoded back with PyAV and checked frame by frame."""

from __future__ import annotations

import builtins
from fractions import Fraction

import numpy as np
import pytest
import torch

from nada_core.errors import InputError
from nada_core.media.animation import animation_format, read_animation, write_animation
from nada_core.media.video import even_size, write_mp4

av = pytest.importorskip("av")


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth, distinct frames (flat colour fields move little under H.264, unlike noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        r = (xx * 255 // max(1, w - 1))
        g = (yy * 255 // max(1, h - 1))
        b = np.full_like(xx, (i * 255) // max(1, n - 1))
        out.append(np.stack([r, g, b], -1).astype(np.uint8))
    return out


def _decode(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        info = (stream.codec_context.name, stream.codec_context.pix_fmt, stream.average_rate,
                stream.codec_context.width, stream.codec_context.height)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return info, frames


def test_mp4_holds_exactly_the_frames_asked_for_in_h264_yuv420p(tmp_path):
    frames = _frames(17, 48, 64)
    out = write_mp4(frames, tmp_path / "walk.mp4", fps=12, crf=10)
    (codec, pix_fmt, rate, w, h), got = _decode(out)
    assert codec == "h264" and pix_fmt == "yuv420p" and rate == Fraction(12) and (w, h) == (64, 48)
    assert len(got) == 17
    for i, (a, b) in enumerate(zip(frames, got)):
        err = np.abs(a.astype(int) - b.astype(int))
        assert err.mean() < 3 and np.percentile(err, 99) < 16, i  # lossy, but close
    # the blue ramp survives: frame order and count are right
    blues = [f[..., 2].mean() for f in got]
    assert all(b2 > b1 for b1, b2 in zip(blues, blues[1:]))
    assert [p.name for p in tmp_path.iterdir()] == ["walk.mp4"]  # atomic: no temp left


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    assert even_size(33, 20) == (34, 20) and even_size(8, 7) == (8, 8)
    frames = _frames(3, 31, 45)
    frames = [f.copy() for f in frames]
    for f in frames:
        f[:, -1] = (250, 10, 10)  # a red last column: the padding copies it
    (_, _, _, w, h), got = _decode(write_mp4(frames, tmp_path / "odd.mp4", fps=30, crf=0))
    assert (w, h) == (46, 32) and len(got) == 3
    assert np.abs(got[0][:31, :45].astype(int) - frames[0].astype(int)).mean() < 3
    pad_col = got[1][:31, 45].astype(int)
    assert pad_col[:, 0].mean() > 200 and pad_col[:, 1].mean() < 60


def test_write_animation_writes_mp4_from_tensors_at_a_fractional_rate(tmp_path):
    imgs = torch.linspace(-1, 1, 5).view(5, 1, 1, 1).expand(5, 3, 16, 16).contiguous()
    out = write_animation(imgs, tmp_path / "a.mp4", fps=29.97, quality=100)
    assert animation_format(out) == "mp4"
    (_, pix_fmt, rate, w, h), _ = _decode(out)
    assert pix_fmt == "yuv420p" and abs(float(rate) - 29.97) < 1e-3 and (w, h) == (16, 16)
    frames = read_animation(out)
    assert len(frames) == 5
    expected = [round((v + 1) / 2 * 255) for v in np.linspace(-1, 1, 5)]
    for f, e in zip(frames, expected):
        assert abs(float(f.mean()) - e) < 4


def test_mp4_problems_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="fps"):
        write_mp4(_frames(2, 8, 8), tmp_path / "x.mp4", fps=0)
    with pytest.raises(InputError, match="same size"):
        write_mp4([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], tmp_path / "y.mp4")
    assert not (tmp_path / "y.mp4").exists()
    with pytest.raises(InputError, match="use .mp4"):
        animation_format(tmp_path / "clip.mov")
    real_import = builtins.__import__

    def no_av(name, *args, **kwargs):
        if name == "av" or name.startswith("av."):
            raise ImportError("No module named 'av'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_av)
    with pytest.raises(InputError, match="pip install av") as info:
        write_animation(_frames(2, 8, 8), tmp_path / "z.mp4")
    assert "\n" not in str(info.value) and not (tmp_path / "z.mp4").exists()


def test_quality_maps_to_x264_crf():
    from nada_core.media.animation import mp4_crf

    assert [mp4_crf(q) for q in (0, 60, 90, 100)] == [48, 28, 18, 0]
    assert mp4_crf(50, lossless=True) == 0
    assert all(mp4_crf(a) >= mp4_crf(b) for a, b in zip(range(0, 100), range(1, 101)))  # better quality, lower CRF
