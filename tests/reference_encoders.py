"""Test-only reference for the e4e / pSp / ReStyle encoders, written independently of nada_core.encoders.

It works straight from the checkpoint's flat ``encoder.*`` tensors with ``torch.nn.functional``
(no modules, no layout object): stages and strides are re-derived from the key names in its own
way, BatchNorm is written out as ``(x - mean) / sqrt(var + eps) * w + b``, PReLU as
``max(x, 0) + a * min(x, 0)``, the shortcut subsampling as a 1x1 max-pool, the pyramid merge with
``F.upsample`` semantics spelled as ``interpolate(..., align_corners=True)``. The preprocessing is
Pillow's ``resize`` on 8-bit pixels; the ReStyle loop follows the published inference loop.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-5


def _bn(x, sd, p):
    shape = (1, -1, 1, 1)
    inv = torch.rsqrt(sd[p + ".running_var"].reshape(shape) + EPS)
    return (x - sd[p + ".running_mean"].reshape(shape)) * inv * sd[p + ".weight"].reshape(shape) + \
        sd[p + ".bias"].reshape(shape)


def _prelu(x, a):
    return torch.clamp(x, min=0) + a.reshape(1, -1, 1, 1) * torch.clamp(x, max=0)


def _unit(x, sd, p, stride):
    if p + ".shortcut_layer.0.weight" in sd:
        short = _bn(F.conv2d(x, sd[p + ".shortcut_layer.0.weight"], stride=stride), sd, p + ".shortcut_layer.1")
    else:
        short = F.max_pool2d(x, kernel_size=1, stride=stride)
    r = _bn(x, sd, p + ".res_layer.0")
    r = F.conv2d(r, sd[p + ".res_layer.1.weight"], padding=1)
    r = _prelu(r, sd[p + ".res_layer.2.weight"])
    r = F.conv2d(r, sd[p + ".res_layer.3.weight"], stride=stride, padding=1)
    r = _bn(r, sd, p + ".res_layer.4")
    if p + ".res_layer.5.fc1.weight" in sd:
        s = F.adaptive_avg_pool2d(r, 1)
        s = torch.sigmoid(F.conv2d(torch.relu(F.conv2d(s, sd[p + ".res_layer.5.fc1.weight"])),
                                   sd[p + ".res_layer.5.fc2.weight"]))
        r = r * s
    return short + r


def _head(x, sd, k):
    j = 0
    while f"styles.{k}.convs.{j}.weight" in sd:
        x = F.leaky_relu(F.conv2d(x, sd[f"styles.{k}.convs.{j}.weight"], sd[f"styles.{k}.convs.{j}.bias"],
                                  stride=2, padding=1), 0.01)
        j += 2
    x = x.flatten(1)
    w = sd[f"styles.{k}.linear.weight"]
    return x @ (w / math.sqrt(w.shape[1])).t() + sd[f"styles.{k}.linear.bias"]


def raw_codes(sd: dict, x: torch.Tensor, encoder_type: str) -> torch.Tensor:
    """``[N, n_styles, w_dim]`` from the encoder tensors ``sd`` (``encoder.`` prefix removed)."""
    x = _prelu(_bn(F.conv2d(x, sd["input_layer.0.weight"], padding=1), sd, "input_layer.1"),
               sd["input_layer.2.weight"])
    n_units = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    widths = [sd[f"body.{i}.res_layer.1.weight"].shape[0] for i in range(n_units)]
    outputs = []
    for i in range(n_units):
        first_of_stage = i == 0 or widths[i] != widths[i - 1]
        x = _unit(x, sd, f"body.{i}", 2 if first_of_stage else 1)
        outputs.append(x)
    last = [i for i in range(n_units) if i + 1 == n_units or widths[i + 1] != widths[i]]
    c1, c2, c3 = (outputs[i] for i in last[-3:])
    n_styles = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("styles."))
    fpn = encoder_type in ("GradualStyleEncoder", "Encoder4Editing")
    if fpn:
        def lat(name, c):
            return F.conv2d(c, sd[name + ".weight"], sd[name + ".bias"])
        p2 = F.interpolate(c3, size=c2.shape[-2:], mode="bilinear", align_corners=True) + lat("latlayer1", c2)
        p1 = F.interpolate(p2, size=c1.shape[-2:], mode="bilinear", align_corners=True) + lat("latlayer2", c1)
        feats = [c3 if k < 3 else (p2 if k < 7 else p1) for k in range(n_styles)]
    else:
        feats = [c3] * n_styles
    if encoder_type in ("Encoder4Editing", "ProgressiveBackboneEncoder"):
        w0 = _head(feats[0], sd, 0)
        out = w0.unsqueeze(1).repeat(1, n_styles, 1)
        for k in range(1, n_styles):
            out[:, k] = out[:, k] + _head(feats[k], sd, k)
        return out
    return torch.stack([_head(feats[k], sd, k) for k in range(n_styles)], dim=1)


def pil_resize_256(x: torch.Tensor) -> torch.Tensor:
    """What ``Resize((256, 256)) + ToTensor + Normalize(0.5)`` makes of 8-bit images given in [-1, 1]."""
    from PIL import Image

    if x.shape[-2:] == (256, 256):
        return x
    out = []
    for img in x:
        u8 = ((img + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        r = np.array(Image.fromarray(u8).resize((256, 256), resample=Image.BILINEAR)).astype(np.float32)
        out.append(torch.from_numpy(r).permute(2, 0, 1) / 255.0 * 2 - 1)
    return torch.stack(out)


def reference_encode(sd: dict, images: torch.Tensor, encoder_type: str, latent_avg: torch.Tensor | None,
                     decoder=None, n_iters: int = 1) -> list[torch.Tensor]:
    """Codes after each step (one step for e4e / pSp); ``decoder(ws) -> [N, 3, R, R]`` renders ReStyle's feedback."""
    x = pil_resize_256(images)
    with torch.no_grad():
        if sd["input_layer.0.weight"].shape[1] == 3:
            c = raw_codes(sd, x, encoder_type)
            return [c + latent_avg if latent_avg is not None else c]
        avg = F.adaptive_avg_pool2d(decoder(latent_avg.unsqueeze(0)), (256, 256))[0]
        steps, latent, y_hat = [], None, None
        for it in range(n_iters):
            inp = torch.cat([x, avg.unsqueeze(0).repeat(x.shape[0], 1, 1, 1)] if it == 0 else [x, y_hat], dim=1)
            codes = raw_codes(sd, inp, encoder_type)
            codes = codes + (latent if latent is not None else latent_avg.repeat(x.shape[0], 1, 1))
            latent = codes
            y_hat = F.adaptive_avg_pool2d(decoder(codes), (256, 256))
            steps.append(codes)
        return steps
