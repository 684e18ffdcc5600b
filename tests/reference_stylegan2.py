"""An independent, deliberately naive StyleGAN2 forward pass for checking the loaders.

It reads the *raw foreign* tensors (rosinality key names, or NVIDIA key names) directly and
shares no code with :mod:`nada_core.models.stylegan2`. Where the production code uses grouped
convolutions, transposed convolutions and ``F.conv2d`` filtering, this file works one sample at
a time with im2col matrix products, builds the upsampling convolution from explicit zero
insertion, and applies the FIR low-pass as an explicit sum over its taps. It is slow, so tests
use it on 8-64 px models only. Everything runs in float64 to make the reference itself exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x) * SQRT2


def _fir_kernel(taps=(1, 3, 3, 1), gain: float = 1.0) -> torch.Tensor:
    f = torch.tensor(taps, dtype=torch.float64)
    k = f[:, None] * f[None, :]
    return k / k.sum() * gain


def _fir(x: torch.Tensor, k: torch.Tensor, pad0: int, pad1: int) -> torch.Tensor:
    """True 2-D convolution of ``[C, H, W]`` with ``k`` after zero padding, as a sum over taps."""
    c, h, w = x.shape
    xp = torch.zeros(c, h + pad0 + pad1, w + pad0 + pad1, dtype=x.dtype)
    xp[:, pad0:pad0 + h, pad0:pad0 + w] = x
    kh = k.shape[0]
    oh, ow = xp.shape[1] - kh + 1, xp.shape[2] - kh + 1
    out = torch.zeros(c, oh, ow, dtype=x.dtype)
    kf = k.flip(0).flip(1)  # convolution = correlation with the flipped kernel
    for a in range(kh):
        for b in range(kh):
            out += kf[a, b] * xp[:, a:a + oh, b:b + ow]
    return out


def _correlate(x: torch.Tensor, weight: torch.Tensor, pad: int) -> torch.Tensor:
    """``[Cin, H, W]`` correlated with ``[Cout, Cin, k, k]`` via im2col (one sample, no groups)."""
    cout, cin, k, _ = weight.shape
    cols = F.unfold(x[None], k, padding=pad)[0]  # [Cin*k*k, L]
    out = weight.reshape(cout, cin * k * k) @ cols
    side = x.shape[1] + 2 * pad - k + 1
    return out.reshape(cout, side, side)


def _zero_insert(x: torch.Tensor, trailing: bool) -> torch.Tensor:
    """Put ``x`` on the even pixels of a twice-as-large zero grid (``2H`` or ``2H - 1`` wide)."""
    c, h, w = x.shape
    n = 2 * h if trailing else 2 * h - 1
    z = torch.zeros(c, n, n, dtype=x.dtype)
    z[:, ::2, ::2] = x
    return z


def _modconv(x, weight, style, demodulate: bool, up: bool, kernel4: torch.Tensor) -> torch.Tensor:
    """Modulated conv for one sample: ``x [Cin, H, W]``, ``weight [Cout, Cin, k, k]`` (already gained)."""
    w = weight * style[None, :, None, None]
    if demodulate:
        w = w / torch.sqrt((w * w).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
    k = w.shape[-1]
    if not up:
        return _correlate(x, w, k // 2)
    # Stride-2 transposed conv == zero insertion, full padding, correlation with the flipped kernel.
    z = _zero_insert(x, trailing=False)
    y = _correlate(z, w.flip(2).flip(3), k - 1)  # [Cout, 2H+1, 2H+1]
    return _fir(y, kernel4, 1, 1)  # low-pass with gain 4 -> [Cout, 2H, 2H]


def _upsample_img(img: torch.Tensor, kernel4: torch.Tensor) -> torch.Tensor:
    return _fir(_zero_insert(img, trailing=True), kernel4, 2, 1)


def _unit_rms(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt((v * v).mean(dim=1, keepdim=True) + 1e-8)


def _mapping(z: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]], lr_mul: float,
             class_part: torch.Tensor | None = None) -> torch.Tensor:
    """``class_part``: the already-normalised class embedding NVIDIA appends after ``norm(z)``."""
    x = _unit_rms(z)
    if class_part is not None:
        x = torch.cat([x, class_part], dim=1)
    for wt, b in layers:
        x = _lrelu(x @ (wt * (lr_mul / math.sqrt(wt.shape[1]))).T + b * lr_mul)
    return x


def _d(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


# ----------------------------------------------------------------------------------------------
# rosinality key layout
# ----------------------------------------------------------------------------------------------


def rosinality_reference(sd: dict, z: torch.Tensor, truncation: float = 1.0, latent_avg=None,
                         noise: str = "const") -> torch.Tensor:
    """Image ``[N, 3, R, R]`` from a rosinality ``g_ema`` state dict, as ``g_ema([z], truncation=...,
    truncation_latent=latent_avg, randomize_noise=False)`` defines it (``noise="none"``: no noise)."""
    sd = {k: _d(v) for k, v in sd.items()}
    n_mlp = len([k for k in sd if k.startswith("style.") and k.endswith(".weight")])
    w = _mapping(_d(z), [(sd[f"style.{i}.weight"], sd[f"style.{i}.bias"]) for i in range(1, n_mlp + 1)], 0.01)
    if truncation < 1:
        w = _d(latent_avg).reshape(1, -1) + truncation * (w - _d(latent_avg).reshape(1, -1))
    num_ws = 2 + 2 * len([k for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight")])
    return _rosinality_synthesis(sd, w.unsqueeze(1).expand(-1, num_ws, -1), noise)


def rosinality_reference_ws(sd: dict, ws: torch.Tensor, noise: str = "const") -> torch.Tensor:
    """Image ``[N, 3, R, R]`` from W+ codes ``[N, num_ws, w_dim]``, as rosinality's
    ``g_ema([ws], input_is_latent=True, randomize_noise=False)`` renders them (entry ``i`` feeds
    conv1 / to_rgb1 for 0 / 1, then each resolution's two convs and its toRGB)."""
    sd = {k: _d(v) for k, v in sd.items()}
    return _rosinality_synthesis(sd, _d(ws), noise)


def _rosinality_synthesis(sd: dict, w: torch.Tensor, noise: str) -> torch.Tensor:
    n_rgb = len([k for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight")])
    k4 = _fir_kernel(gain=4.0)

    def style_of(prefix, wv):
        mw = sd[f"{prefix}.conv.modulation.weight"]
        return wv @ (mw / math.sqrt(mw.shape[1])).T + sd[f"{prefix}.conv.modulation.bias"]

    def styled(prefix, x, wv, k, up):
        wt = sd[f"{prefix}.conv.weight"][0]
        y = _modconv(x, wt / math.sqrt(wt[0].numel()), style_of(prefix, wv), True, up, k4)
        if noise == "const":
            y = y + sd[f"{prefix}.noise.weight"][0] * sd[f"noises.noise_{k}"][0]
        return _lrelu(y + sd[f"{prefix}.activate.bias"][:, None, None])

    def rgb(prefix, x, wv):
        wt = sd[f"{prefix}.conv.weight"][0]
        y = _modconv(x, wt / math.sqrt(wt.shape[1]), style_of(prefix, wv), False, False, k4)
        return y + sd[f"{prefix}.bias"][0]

    images = []
    for s in range(w.shape[0]):
        ws = w[s]
        x = styled("conv1", sd["input.input"][0], ws[0], 0, False)
        img = rgb("to_rgb1", x, ws[1])
        for j in range(n_rgb):
            x = styled(f"convs.{2 * j}", x, ws[2 * j + 1], 2 * j + 1, True)
            x = styled(f"convs.{2 * j + 1}", x, ws[2 * j + 2], 2 * j + 2, False)
            img = _upsample_img(img, k4) + rgb(f"to_rgbs.{j}", x, ws[2 * j + 3])
        images.append(img)
    return torch.stack(images).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# NVIDIA key layout
# ----------------------------------------------------------------------------------------------


def nvidia_reference(t: dict, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                     conv_clamp: float | None = None, lr_multiplier: float = 0.01, noise: str = "const",
                     ws: torch.Tensor | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
    """Image ``[N, C, R, R]`` from NVIDIA-named generator tensors, as ``G(z, c, truncation_psi,
    truncation_cutoff, noise_mode=noise, force_fp32=True)`` defines it. ``ws`` skips the mapping;
    ``c [N, c_dim]`` feeds ``mapping.embed`` (linear, weight gain ``1/sqrt(c_dim)``) of conditional models."""
    t = {k: _d(v) for k, v in t.items()}
    res_list = sorted(int(k.split(".")[1][1:]) for k in t if k.startswith("synthesis.b") and k.endswith(".torgb.bias"))
    num_ws = 2 * len(res_list)
    if ws is None:
        n_map = len([k for k in t if k.startswith("mapping.fc") and k.endswith(".weight")])
        class_part = None
        if "mapping.embed.weight" in t:
            ew = t["mapping.embed.weight"]  # [embed, c_dim]
            cd = _d(c)
            emb = torch.stack([sum(cd[s, j] * ew[:, j] for j in range(ew.shape[1])) / math.sqrt(ew.shape[1])
                               for s in range(cd.shape[0])]) + t["mapping.embed.bias"]
            class_part = _unit_rms(emb)
        w = _mapping(_d(z), [(t[f"mapping.fc{i}.weight"], t[f"mapping.fc{i}.bias"]) for i in range(n_map)],
                     lr_multiplier, class_part)
        wsd = w[:, None, :].repeat(1, num_ws, 1)
        if truncation_psi != 1:
            cut = num_ws if truncation_cutoff is None else truncation_cutoff
            avg = t["mapping.w_avg"]
            wsd[:, :cut] = avg + truncation_psi * (wsd[:, :cut] - avg)
    else:
        wsd = _d(ws)
    k4 = _fir_kernel(gain=4.0)

    def clamp(x):
        return x.clamp(-conv_clamp, conv_clamp) if conv_clamp is not None else x

    def affine(prefix, wv):
        aw = t[f"{prefix}.affine.weight"]
        return wv @ (aw / math.sqrt(aw.shape[1])).T + t[f"{prefix}.affine.bias"]

    def layer(prefix, x, wv, up):
        wt = t[f"{prefix}.weight"]
        y = _modconv(x, wt / math.sqrt(wt[0].numel()), affine(prefix, wv), True, up, k4)
        if noise == "const" and f"{prefix}.noise_const" in t:
            y = y + t[f"{prefix}.noise_const"] * t[f"{prefix}.noise_strength"]
        return clamp(_lrelu(y + t[f"{prefix}.bias"][:, None, None]))

    def torgb(prefix, x, wv):
        wt = t[f"{prefix}.weight"]
        y = _modconv(x, wt, affine(prefix, wv) / math.sqrt(wt.shape[1]), False, False, k4)
        return clamp(y + t[f"{prefix}.bias"][:, None, None])

    images = []
    for s in range(wsd.shape[0]):
        wv = wsd[s]
        x = layer("synthesis.b4.conv1", t["synthesis.b4.const"], wv[0], False)
        img = torgb("synthesis.b4.torgb", x, wv[1])
        for j, r in enumerate(res_list[1:], start=1):
            x = layer(f"synthesis.b{r}.conv0", x, wv[2 * j - 1], True)
            x = layer(f"synthesis.b{r}.conv1", x, wv[2 * j], False)
            img = _upsample_img(img, k4) + torgb(f"synthesis.b{r}.torgb", x, wv[2 * j + 1])
        images.append(img)
    return torch.stack(images).to(torch.float32)
