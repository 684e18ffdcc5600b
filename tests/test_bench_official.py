"""The CPU stand-ins for the official code's compiled ops (benchmarks/official_ops.py), each against an
independent computation (numpy loops over the filter taps, numpy leaky ReLU)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import official_ops  # noqa: E402


def _upfirdn_numpy(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Zero insertion, zero padding (negative = crop), true 2-D convolution, keep every down-th pixel."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up), dtype=np.float64)
    u[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    u = u[:, :, max(-py0, 0):u.shape[2] - max(-py1, 0), max(-px0, 0):u.shape[3] - max(-px1, 0)]
    kh, kw = k.shape
    oh, ow = u.shape[2] - kh + 1, u.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(kh):  # convolution: out[y, x] = sum_ab u[y + a, x + b] * k[kh - 1 - a, kw - 1 - b]
        for b in range(kw):
            out += u[:, :, a:a + oh, b:b + ow] * k[kh - 1 - a, kw - 1 - b]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 2, (1, 1)), (1, 1, (2, 1, -1, 0)),
                                         (2, 1, (1, 1, 2, 1))])
def test_upfirdn2d_matches_a_direct_evaluation(up, down, pad):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 6, generator=gen, dtype=torch.float64)
    k = torch.rand(4, 3, generator=gen, dtype=torch.float64)  # asymmetric: the flip matters
    out = official_ops.upfirdn2d(x, k, up=up, down=down, pad=pad)
    full = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    np.testing.assert_allclose(out.numpy(), _upfirdn_numpy(x.numpy(), k.numpy(), up, down, full), rtol=1e-12, atol=1e-12)


def test_upfirdn2d_refuses_unequal_factors():
    with pytest.raises(ValueError, match="equal up/down"):
        official_ops.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(2, 2), up=(2, 1))


@pytest.mark.parametrize("slope,scale", [(0.2, 2 ** 0.5), (0.1, 1.5)])
def test_fused_leaky_relu_matches_numpy(slope, scale):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 3, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(5, generator=gen, dtype=torch.float64)
    v = x.numpy() + b.numpy()[None, :, None, None]
    want = np.where(v > 0, v, slope * v) * scale
    np.testing.assert_allclose(official_ops.fused_leaky_relu(x, b, slope, scale).numpy(), want, rtol=1e-12)
    # 2-D inputs (the mapping network's EqualLinear) broadcast the bias over dim 1 as well
    x2 = x[:, :, 0, 0]
    v2 = x2.numpy() + b.numpy()[None]
    np.testing.assert_allclose(official_ops.fused_leaky_relu(x2, b, slope, scale).numpy(),
                               np.where(v2 > 0, v2, slope * v2) * scale, rtol=1e-12)


def test_fused_leaky_relu_module_has_rosinalitys_parameter_and_gradient():
    act = official_ops.FusedLeakyReLU(4)
    assert [n for n, _ in act.named_parameters()] == ["bias"]
    x = torch.randn(2, 4, 3, 3, requires_grad=True)
    act(x).sum().backward()
    pos = (x.detach() > 0).double()
    torch.testing.assert_close(x.grad.double(), (pos + 0.2 * (1 - pos)) * math.sqrt(2))
    assert act.bias.grad is not None and act.bias.grad.shape == (4,)


def test_install_provides_the_names_the_rosinality_generator_imports(monkeypatch):
    for name in ("op", "op.conv2d_gradfix"):  # undone after the test (setitem records the old state)
        monkeypatch.setitem(sys.modules, name, None)
    official_ops.install()
    from op import FusedLeakyReLU, conv2d_gradfix, fused_leaky_relu, upfirdn2d  # noqa: F401

    assert upfirdn2d is official_ops.upfirdn2d and FusedLeakyReLU is official_ops.FusedLeakyReLU

    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    torch.testing.assert_close(conv2d_gradfix.conv2d(x, w, padding=1), torch.nn.functional.conv2d(x, w, padding=1))
    wt = torch.randn(2, 3, 3, 3)
    torch.testing.assert_close(conv2d_gradfix.conv_transpose2d(x, wt, stride=2),
                               torch.nn.functional.conv_transpose2d(x, wt, stride=2))
    with conv2d_gradfix.no_weight_gradients():
        pass


@pytest.mark.parametrize("up", [False, True])
def test_step_flop_count_is_the_same_for_grouped_and_shared_weight_convolutions(up):
    """bench_train's FLOP counter: torch's formula counts a grouped convolution's weight gradient
    once per group; the per-sample (grouped) and the shared-weight formulation of a modulated conv
    do the same convolution arithmetic and must count alike (up to the small demodulation matmul)."""
    import bench_train
    from nada_core.models.stylegan2 import ModulatedConv2d

    conv = ModulatedConv2d(8, 6, 3, 4, up=up)
    x, w = torch.randn(3, 8, 8, 8, requires_grad=True), torch.randn(3, 4)
    counts = {}
    for grouped in (True, False):
        conv.grouped = grouped
        counts[grouped] = bench_train.count_step_flops(lambda: conv(x, w).sum().backward(), torch.nn.Identity())
    if not up:  # by hand: the conv, 2 * N * out * in * 9 per pixel, plus the style affine 2 * N * w_dim * in
        conv_flops = 2 * 3 * 6 * 8 * 9 * 8 * 8
        assert counts[True]["generator"] == conv_flops + 2 * 3 * 4 * 8
        assert counts[True]["backward"] == 2 * conv_flops + 2 * 3 * 4 * 8  # input + weight grads; affine's weight
    assert counts[False]["total"] == pytest.approx(counts[True]["total"], rel=0.01)


def test_native_mode_imports_their_op_package_with_the_cuda_build_skipped(tmp_path, monkeypatch):
    """``install_native`` imports an ``op`` package whose modules call ``cpp_extension.load`` at import
    (as rosinality's do): the build is not attempted, using the extension fails loudly, their CPU code
    runs, and ``load`` is restored afterwards."""
    import torch.utils.cpp_extension as cpp

    pkg = tmp_path / "op"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .act import double, ext\n")
    (pkg / "act.py").write_text("from torch.utils.cpp_extension import load\n"
                                "ext = load('fused', sources=['missing.cu'])\n"
                                "def double(x):\n    return x * 2 if x.device.type == 'cpu' else ext.apply(x)\n")
    (pkg / "conv2d_gradfix.py").write_text("enabled = False\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved_modules = {k: v for k, v in sys.modules.items() if k == "op" or k.startswith("op.")}
    original_load = cpp.load
    try:
        op = official_ops.install_native()
        assert op.double(torch.tensor([1.5])).item() == 3.0
        with pytest.raises(RuntimeError, match="was not built"):
            op.ext.apply
        assert cpp.load is original_load
        assert sys.modules["op.conv2d_gradfix"].enabled is False
    finally:
        for key in [k for k in sys.modules if k == "op" or k.startswith("op.")]:
            del sys.modules[key]
        sys.modules.update(saved_modules)
