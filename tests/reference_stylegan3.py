"""An independent, test-only StyleGAN3 forward pass, written differently from nada_core on purpose.

- float64 throughout; one sample at a time;
- per-sample modulated/demodulated weights (not styles on the activations);
- non-separable filtering: a separable filter becomes its 2-D outer product, zero insertion is
  done by strided assignment, cropping by slicing, downsampling by slicing after a full conv;
- every layer fact (sizes, factors, paddings, channels) is read from the layer records (NVIDIA's
  pickled attributes), never derived here, and the filters are the stored tensors.

Input: NVIDIA-named tensors (``mapping.fc0.weight``, ``synthesis.L0_36_512.up_filter``, ...),
the constructor kwargs and the layer records; see tests/checkpoint_factories_sg3.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _fc(t: dict, prefix: str, x: torch.Tensor, lr: float = 1.0) -> torch.Tensor:
    w, b = t[prefix + ".weight"].double(), t[prefix + ".bias"].double()
    return x @ (w * (lr / math.sqrt(w.shape[1]))).T + b * lr


def ref_mapping(t: dict, kwargs: dict, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
                num_ws: int | None = None) -> torch.Tensor:
    mk = kwargs.get("mapping_kwargs") or {}
    lr = mk.get("lr_multiplier", 0.01)
    x = z.double()
    x = x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(mk.get("num_layers", 2)):
        x = _fc(t, f"mapping.fc{i}", x, lr)
        x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    ws = x[:, None, :].repeat(1, num_ws, 1)
    if psi != 1:
        avg = t["mapping.w_avg"].double()
        c = num_ws if cutoff is None else cutoff
        ws[:, :c] = avg + psi * (ws[:, :c] - avg)
    return ws


def _filter2d(x: torch.Tensor, f: torch.Tensor | None, up: int, down: int, pad: list[int], gain: float) -> torch.Tensor:
    """x [C, H, W] (one sample)."""
    c, h, w = x.shape
    if up > 1:
        big = torch.zeros(c, h * up, w * up, dtype=x.dtype)
        big[:, ::up, ::up] = x
        x = big
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, max(-y0, 0):x.shape[1] - max(-y1, 0), max(-x0, 0):x.shape[2] - max(-x1, 0)]
    if f is None:
        k = torch.ones(1, 1, dtype=x.dtype)
    else:
        f = f.double()
        k = torch.outer(f, f) if f.ndim == 1 else f
    k = torch.flip(k, [0, 1]) * gain
    y = F.conv2d(x[:, None], k[None, None])[:, 0]
    return y[:, ::down, ::down]


def _input(t: dict, w: torch.Tensor, rec0: dict, transform: torch.Tensor) -> torch.Tensor:
    """Fourier features for one ``w [w_dim]`` -> [C, S, S]."""
    aff = _fc(t, "synthesis.input.affine", w[None])[0]
    aff = aff / torch.sqrt(aff[0] ** 2 + aff[1] ** 2)
    rot = torch.eye(3, dtype=torch.float64)
    rot[0, 0], rot[0, 1], rot[1, 0], rot[1, 1] = aff[0], -aff[1], aff[1], aff[0]
    tra = torch.eye(3, dtype=torch.float64)
    tra[0, 2], tra[1, 2] = -aff[2], -aff[3]
    m = rot @ tra @ transform.double()
    freqs0 = t["synthesis.input.freqs"].double()
    phases = t["synthesis.input.phases"].double() + freqs0 @ m[:2, 2]
    freqs = freqs0 @ m[:2, :2]
    sr, bw, size = float(rec0["in_sampling_rate"]), float(rec0["in_cutoff"]), int(rec0["in_size"])
    amp = torch.clamp(1 - (freqs.norm(dim=1) - bw) / (sr / 2 - bw), 0, 1)
    coords = [(i + 0.5 - size / 2) / sr for i in range(size)]
    gx = torch.tensor(coords, dtype=torch.float64)[None, :].expand(size, size)  # [y, x]
    gy = torch.tensor(coords, dtype=torch.float64)[:, None].expand(size, size)
    feat = torch.sin(2 * math.pi * (gx[None] * freqs[:, 0, None, None] + gy[None] * freqs[:, 1, None, None]
                                    + phases[:, None, None])) * amp[:, None, None]
    weight = t["synthesis.input.weight"].double() / math.sqrt(freqs.shape[0])
    return torch.einsum("oc,chw->ohw", weight, feat)


def _layer(t: dict, rec: dict, x: torch.Tensor, w: torch.Tensor, clamp: float | None) -> torch.Tensor:
    name = rec["name"]
    p = f"synthesis.{name}"
    weight = t[p + ".weight"].double()
    s = _fc(t, p + ".affine", w[None])[0]
    gain_in = 1 / math.sqrt(float(t[p + ".magnitude_ema"]))
    if rec["is_torgb"]:
        s = s / math.sqrt(rec["in_channels"] * rec["conv_kernel"] ** 2)
        mw = weight * s[None, :, None, None]
    else:
        wn = weight / torch.sqrt((weight ** 2).mean(dim=[1, 2, 3], keepdim=True))
        mw = wn * s[None, :, None, None]
        mw = mw / torch.sqrt((mw ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    mw = mw * gain_in
    k = rec["conv_kernel"]
    y = F.conv2d(x[None], mw, padding=k - 1)[0]
    y = y + t[p + ".bias"].double()[:, None, None]
    up, down = rec["up_factor"], rec["down_factor"]
    y = _filter2d(y, t.get(p + ".up_filter"), up, 1, list(rec["padding"]), float(up * up))
    if not rec["is_torgb"]:
        y = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    if clamp is not None:
        y = torch.clamp(y, -clamp, clamp)
    return _filter2d(y, t.get(p + ".down_filter"), 1, down, [0, 0, 0, 0], 1.0)


def ref_synthesis(t: dict, kwargs: dict, layers: list[dict], ws: torch.Tensor,
                  transform: torch.Tensor | None = None) -> torch.Tensor:
    """ws ``[N, len(layers) + 1, w_dim]`` -> images ``[N, C, R, R]`` (float64)."""
    transform = t["synthesis.input.transform"] if transform is None else transform
    clamp = kwargs.get("conv_clamp", 256)
    scale = kwargs.get("output_scale", 0.25)
    out = []
    for n in range(ws.shape[0]):
        w = ws[n].double()
        x = _input(t, w[0], layers[0], transform)
        for i, rec in enumerate(layers):
            x = _layer(t, rec, x, w[i + 1], clamp)
        out.append(x * scale)
    return torch.stack(out)


def ref_generator(t: dict, kwargs: dict, layers: list[dict], z: torch.Tensor, psi: float = 1.0,
                  cutoff: int | None = None, transform: torch.Tensor | None = None) -> torch.Tensor:
    ws = ref_mapping(t, kwargs, z, psi, cutoff, num_ws=len(layers) + 1)
    return ref_synthesis(t, kwargs, layers, ws, transform)
