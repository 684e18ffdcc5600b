"""Alias-free filtering for StyleGAN3 in plain PyTorch: filter design, ``upfirdn2d``, filtered leaky ReLU.

Everything here is ordinary tensor code (no custom CUDA op, no compile step), so it runs on CPU,
CUDA and MPS. The semantics are those of the StyleGAN3 paper (Karras et al. 2021, Sec. 3 and
Appendix C-D), i.e. what NVIDIA's reference implementations (``impl='ref'``) compute:

- :func:`design_lowpass`: Kaiser-windowed sinc (separable, ``scipy.signal.firwin``) or a radially
  symmetric Kaiser-windowed jinc (the -R configuration's downsampling filters).
- :func:`upfirdn2d`: insert ``up - 1`` zeros after each pixel, pad (negative = crop), convolve with
  the FIR filter, keep every ``down``-th pixel.
- :func:`filtered_lrelu`: bias, upsample, leaky ReLU * gain, clamp, downsample -- the non-linearity
  done at a higher sampling rate so that it does not alias.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

Padding = tuple[int, int, int, int]  # (x_before, x_after, y_before, y_after), negative = crop


def design_lowpass(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """Low-pass FIR filter with ``numtaps`` taps, cutoff ``cutoff`` and transition width ``width`` (Hz at ``fs``).

    Returns None for the identity (``numtaps == 1``), a 1-D separable Kaiser-windowed sinc
    ``[numtaps]`` (float32, sums to 1), or with ``radial`` a 2-D ``[numtaps, numtaps]``
    Kaiser-windowed jinc normalised to sum 1 (rotation-equivariant configuration).
    """
    if numtaps < 1:
        raise ValueError(f"a filter needs at least one tap, got {numtaps}")
    if numtaps == 1:
        return None
    import scipy.signal
    import scipy.special

    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    # jinc(r) = J1(2 pi f_c r) / (pi r); its r -> 0 limit is f_c (only reached for odd tap counts).
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(t[None, :], t[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        jinc = np.where(r > 0, scipy.special.j1(2 * np.pi * cutoff * r) / (np.pi * np.where(r > 0, r, 1)), cutoff)
    atten = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    window = np.kaiser(numtaps, scipy.signal.kaiser_beta(atten))
    f = jinc * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def filter_taps(f: torch.Tensor | None) -> tuple[int, int]:
    """``(width, height)`` of a filter; ``(1, 1)`` for None (identity)."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: int = 1, down: int = 1,
              padding: Padding = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample ``x [N, C, H, W]`` (depthwise, every channel alike).

    ``f``: None (identity), separable taps ``[k]`` (applied along x then y) or a 2-D ``[kh, kw]``
    filter; applied as a true convolution (flipped). ``gain`` scales the result (``up**2`` keeps
    the signal level of zero-insertion upsampling). Output size per axis:
    ``(H * up + pad_before + pad_after - k + down) // down``.
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    if up > 1:  # zero insertion: each pixel followed by up - 1 zeros along both axes
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    if f is None:
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    f = f.to(device=x.device, dtype=x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 1:
        # Separable: a 1 x k pass then a k x 1 pass, each carrying sqrt(gain); the stride keeps
        # only the pixels the downsampling would keep.
        k = f * (gain ** 0.5)
        x = F.conv2d(x, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, down), groups=c)
        return F.conv2d(x, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(down, 1), groups=c)
    k = (f * gain)[None, None].expand(c, 1, -1, -1)
    return F.conv2d(x, k, stride=down, groups=c)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                   b: torch.Tensor | None, up: int, down: int, padding: Padding,
                   gain: float, slope: float, clamp: float | None) -> torch.Tensor:
    """Alias-free non-linearity of StyleGAN3 on ``x [N, C, H, W]``.

    ``x + b`` (per channel), upsample by ``up`` with ``fu`` (padding ``padding`` on the upsampled
    grid), leaky ReLU with negative ``slope`` times ``gain`` (``slope = 1, gain = 1`` makes it
    linear, as in toRGB), clamp to ``+-clamp``, then low-pass ``fd`` and keep every ``down``-th pixel.
    """
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=float(up * up))
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn2d(x, fd, down=down)
