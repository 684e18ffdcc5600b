"""CPU stand-ins for the compiled ops that the official StyleGAN-NADA code imports (benchmarks only).

The official code's rosinality generator does ``from op import FusedLeakyReLU, fused_leaky_relu,
upfirdn2d, conv2d_gradfix``, and its ``op`` package compiles CUDA extensions when imported, which
fails on a machine without CUDA. :func:`install` puts a module named ``op`` into ``sys.modules``
first, built from nada_core's own functions, so their code runs unchanged on a CPU:

- ``fused_leaky_relu(x, bias, negative_slope, scale)`` = ``leaky_relu(x + bias, slope) * scale``
  (:func:`nada_core.models.stylegan2.lrelu_act` for the StyleGAN values 0.2 / sqrt(2));
- ``FusedLeakyReLU(channels)``: that function with a learned bias (parameter name ``bias``, as in
  rosinality's checkpoints);
- ``upfirdn2d(x, kernel, up, down, pad)``: zero-insertion upsampling, padding (a pair applies to
  both axes), true 2-D convolution with ``kernel``, downsampling
  (:func:`nada_core.models.sg3_filters.upfirdn2d`);
- ``conv2d_gradfix.conv2d`` / ``conv_transpose2d`` / ``no_weight_gradients``: plain
  ``torch.nn.functional`` convolutions (what rosinality's module itself falls back to off CUDA).

Nothing here is copied from the official repository; ``tests/test_bench_official.py`` checks each
op against an independent computation.
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nada_core.models.sg3_filters import upfirdn2d as _upfirdn2d
from nada_core.models.stylegan2 import _LRELU_GAIN, _LRELU_SLOPE, lrelu_act


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = 2 ** 0.5) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``; ``bias [C]`` broadcast over dim 1 of ``x [N, C, ...]``."""
    if math.isclose(negative_slope, _LRELU_SLOPE) and math.isclose(scale, _LRELU_GAIN):
        return lrelu_act(x, bias)
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU * scale with a learned per-channel bias (rosinality's parameter layout)."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2 ** 0.5) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope, self.scale = negative_slope, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, Iterable):
        a, b = v
        return int(a), int(b)
    return int(v), int(v)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up=1, down=1, pad=(0, 0)) -> torch.Tensor:
    """rosinality's ``upfirdn2d`` signature: ``x [N, C, H, W]``, 2-D ``kernel [kh, kw]``; ``pad`` is
    ``(p0, p1)`` for both axes or ``(px0, px1, py0, py1)``; negative padding crops."""
    ux, uy = _pair(up)
    dx, dy = _pair(down)
    if ux != uy or dx != dy:
        raise ValueError("only equal up/down factors on both axes are supported")
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        pad = (pad[0], pad[1], pad[0], pad[1])
    return _upfirdn2d(x, kernel, up=ux, down=dx, padding=pad)


@contextlib.contextmanager
def _no_weight_gradients():
    yield  # on CPU rosinality's op uses plain F convolutions, which take no such switch


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)


def make_module() -> types.ModuleType:
    """A fresh ``op`` module with the four names the rosinality generator imports."""
    op = types.ModuleType("op")
    gradfix = types.ModuleType("op.conv2d_gradfix")
    gradfix.conv2d = _conv2d
    gradfix.conv_transpose2d = _conv_transpose2d
    gradfix.no_weight_gradients = _no_weight_gradients
    gradfix.enabled = False
    op.FusedLeakyReLU, op.fused_leaky_relu, op.upfirdn2d, op.conv2d_gradfix = (
        FusedLeakyReLU, fused_leaky_relu, upfirdn2d, gradfix)
    op.__path__ = []  # a package, so ``from op import conv2d_gradfix`` resolves like the original
    return op


class _NoCudaBuild:
    """Stands in for an extension ``torch.utils.cpp_extension.load`` would have compiled; any use is an error."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str):
        raise RuntimeError(f"the CUDA extension {self.name!r} was not built (CPU benchmark); {attr} is unavailable")


def install_native() -> types.ModuleType:
    """Import the official code's own ``op`` package (``ZSSGAN/op`` on ``sys.path``) with its CUDA
    build skipped: ``torch.utils.cpp_extension.load`` returns a placeholder during the import, so
    their functions take their own ``input.device.type == "cpu"`` branches (``upfirdn2d_native``,
    plain leaky ReLU, plain convolutions). Returns their module."""
    import importlib

    import torch.utils.cpp_extension as cpp

    saved = cpp.load
    cpp.load = lambda name, *a, **k: _NoCudaBuild(name)
    try:
        for key in [k for k in sys.modules if k == "op" or k.startswith("op.")]:
            del sys.modules[key]
        op = importlib.import_module("op")
        importlib.import_module("op.conv2d_gradfix")
    finally:
        cpp.load = saved
    return op


def install() -> types.ModuleType:
    """Register the CPU ``op`` module (and ``op.conv2d_gradfix``) in ``sys.modules``; returns it."""
    op = make_module()
    sys.modules["op"] = op
    sys.modules["op.conv2d_gradfix"] = op.conv2d_gradfix
    return op
