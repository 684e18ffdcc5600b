"""e4e / pSp / ReStyle encoder checkpoints in the real file layout, written from scratch for the tests.

The layout (key names, shapes, what ``opts`` holds) is that of the checkpoints the encoders'
training code saves: ``torch.save({"state_dict": {"encoder.*", "decoder.*"}, "opts": vars(opts),
"latent_avg": [num_ws, w_dim]})``. Weights are seeded random numbers scaled so activations stay
of order one through the whole backbone (BatchNorm statistics and PReLU slopes random too), so
every path of the network shows in the codes. No code from the encoders' repositories is used.
"""

from __future__ import annotations

import argparse
import collections
import math
from pathlib import Path
from typing import Any

import torch

from tests.checkpoint_factories import rosinality_state_dict

IRSE50_UNITS = (3, 4, 14, 3)
IRSE_WIDTHS = (64, 128, 256, 512)
FPN = ("GradualStyleEncoder", "Encoder4Editing")


def head_convs(encoder_type: str, k: int) -> int:
    """Stride-2 convs of head ``k`` as the released models have them (16/32/64 px maps -> 4/5/6)."""
    if encoder_type not in FPN:
        return 4
    return 4 if k < 3 else (5 if k < 7 else 6)


def encoder_state_dict(encoder_type: str = "Encoder4Editing", *, input_nc: int = 3, n_styles: int = 18,
                       units: tuple[int, ...] = IRSE50_UNITS, widths: tuple[int, ...] = IRSE_WIDTHS,
                       stem: int | None = None, w_dim: int | None = None, se: bool = True,
                       seed: int = 0) -> "collections.OrderedDict[str, torch.Tensor]":
    """``encoder.*`` tensors (prefix not included) of an IR(-SE) encoder with the given stages."""
    g = torch.Generator().manual_seed(seed)
    stem = stem or widths[0]
    head_c = widths[-1]
    w_dim = w_dim or head_c
    sd: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def conv(name: str, cout: int, cin: int, k: int, bias: bool = False, gain: float = 1.0) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (gain / math.sqrt(cin * k * k))
        if bias:
            sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1

    def bn(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 1.0 + 0.2 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=g)
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1000, dtype=torch.int64)

    def prelu(name: str, c: int) -> None:
        sd[f"{name}.weight"] = 0.25 + 0.05 * torch.randn(c, generator=g)

    conv("input_layer.0", stem, input_nc, 3)
    bn("input_layer.1", stem)
    prelu("input_layer.2", stem)
    i, cin = 0, stem
    for n, depth in zip(units, widths):
        for j in range(n):
            p = f"body.{i}"
            if cin != depth:
                conv(f"{p}.shortcut_layer.0", depth, cin, 1)
                bn(f"{p}.shortcut_layer.1", depth)
            bn(f"{p}.res_layer.0", cin)
            conv(f"{p}.res_layer.1", depth, cin, 3)
            prelu(f"{p}.res_layer.2", depth)
            conv(f"{p}.res_layer.3", depth, depth, 3, gain=0.5)
            bn(f"{p}.res_layer.4", depth)
            if se:
                conv(f"{p}.res_layer.5.fc1", max(1, depth // 16), depth, 1, gain=2.0)
                conv(f"{p}.res_layer.5.fc2", depth, max(1, depth // 16), 1, gain=2.0)
            cin = depth
            i += 1
    for k in range(n_styles):
        for c in range(head_convs(encoder_type, k)):
            conv(f"styles.{k}.convs.{2 * c}", head_c, head_c, 3, bias=True, gain=1.5)
        sd[f"styles.{k}.linear.weight"] = torch.randn(w_dim, head_c, generator=g)
        sd[f"styles.{k}.linear.bias"] = 0.1 * torch.randn(w_dim, generator=g)
    if encoder_type in FPN:
        conv("latlayer1", head_c, widths[-2], 1, bias=True)
        conv("latlayer2", head_c, widths[-3], 1, bias=True)
    return sd


def encoder_opts(encoder_type: str, *, output_size: int = 1024, input_nc: int = 3,
                 start_from_latent_avg: bool = True, **extra: Any) -> dict:
    """``vars(opts)`` as the training scripts save it (the fields the loaders read, plus typical others)."""
    opts = {"exp_dir": "experiment", "dataset_type": "ffhq_encode", "encoder_type": encoder_type,
            "batch_size": 8, "test_batch_size": 4, "workers": 4, "learning_rate": 0.0001, "optim_name": "ranger",
            "lpips_lambda": 0.8, "id_lambda": 0.1, "l2_lambda": 1.0, "start_from_latent_avg": start_from_latent_avg,
            "checkpoint_path": None, "max_steps": 500000, "device": "cuda:0", "resize_factors": None}
    if encoder_type == "Encoder4Editing":
        opts.update(stylegan_size=output_size, w_discriminator_lambda=0.1, progressive_start=20000,
                    progressive_step_every=2000, delta_norm=2, use_w_pool=True)
    else:
        opts.update(output_size=output_size, input_nc=input_nc, label_nc=0, learn_in_w=False,
                    n_iters_per_batch=5 if input_nc == 6 else 1)
    opts.update(extra)
    return opts


def decoder_state_dict(size: int, seed: int = 5, real: bool = False, style_dim: int = 16) -> dict:
    """A rosinality generator for ``decoder.*``: the real 512-channel, 8-layer layout, or a tiny one."""
    if real:
        return rosinality_state_dict(size, style_dim=512, n_mlp=8, channel_multiplier=2, seed=seed)
    return rosinality_state_dict(size, style_dim=style_dim, n_mlp=2, seed=seed)


def write_encoder_checkpoint(path: str | Path, encoder_sd: dict, opts: dict | None, *,
                             decoder_sd: dict | None = None, latent_avg: torch.Tensor | None = None,
                             opts_as_namespace: bool = False, extra: dict | None = None,
                             legacy: bool = False) -> Path:
    """``torch.save`` an encoder checkpoint in the released layout; returns the path."""
    path = Path(path)
    state = collections.OrderedDict((f"encoder.{k}", v) for k, v in encoder_sd.items())
    for k, v in (decoder_sd or {}).items():
        state[f"decoder.{k}"] = v
    ckpt: dict[str, Any] = {"state_dict": state}
    if opts is not None:
        ckpt["opts"] = argparse.Namespace(**opts) if opts_as_namespace else dict(opts)
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    ckpt.update(extra or {})
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


def random_latent_avg(num_ws: int, w_dim: int, seed: int = 7) -> torch.Tensor:
    """``[num_ws, w_dim]``: one mean W repeated per layer, as the encoders store it."""
    g = torch.Generator().manual_seed(seed)
    return (0.5 * torch.randn(w_dim, generator=g)).repeat(num_ws, 1)


def sample_images(n: int = 1, size: int = 256, seed: int = 3) -> torch.Tensor:
    """``[n, 3, size, size]`` in [-1, 1] on the 8-bit grid (as photo files give): smooth shapes + noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    imgs = []
    for i in range(n):
        phase = torch.rand(3, generator=g) * 6.28
        base = torch.stack([torch.sin(3 * xx + phase[c] + i) * torch.cos(2 * yy - phase[c]) for c in range(3)])
        img = (0.7 * base + 0.3 * torch.rand(3, size, size, generator=g) * 2 - 0.3).clamp(-1, 1)
        imgs.append(img)
    x = torch.stack(imgs)
    return torch.round((x + 1) * 127.5) / 127.5 - 1
