"""rosinality stylegan2-pytorch checkpoints (``.pt``) -> our :class:`~nada_core.models.stylegan2.Generator` weights.

A checkpoint is a dict saved with ``torch.save``: ``g_ema`` (EMA generator state dict), often
``g``, ``d``, ``g_optim``, ``d_optim``, ``args`` (an ``argparse.Namespace``) and, for files
converted from NVIDIA's TensorFlow release, ``latent_avg``. StyleGAN-NADA's own training script
writes ``{"g_ema": ..., "g_optim": ...}`` in the same layout. A bare generator state dict is
accepted too, and so is an e4e / pSp / ReStyle encoder checkpoint, whose ``state_dict``'s
``decoder.*`` tensors are such a generator (:mod:`nada_core.formats.encoder_checkpoint`).

The architecture is read from the tensor shapes (resolution from the number of toRGB layers,
widths per resolution, mapping depth and widths), cross-checked against ``args`` when present.
The mapping learning-rate multiplier is not stored in these files; rosinality's code fixes it at
0.01 (``lr_mlp``), which is what we use.

Name mapping (``n`` = number of mapping layers)::

    style.{1..n}.weight/bias            -> mapping.layers.{0..n-1}.weight/bias
    input.input [1,C,4,4]               -> synthesis.const [C,4,4]
    conv1.*  / convs.{i}.*              -> synthesis.convs.0.* / synthesis.convs.{i+1}.*
      conv.weight [1,out,in,3,3]        ->   conv.weight [out,in,3,3]
      conv.modulation.weight/bias       ->   conv.affine.weight/bias
      noise.weight [1]                  ->   noise_strength []
      activate.bias                     ->   bias
    noises.noise_{k} [1,1,r,r]          -> synthesis.convs.{k}.noise_const [r,r]
    to_rgb1.* / to_rgbs.{i}.*           -> synthesis.to_rgbs.0.* / synthesis.to_rgbs.{i+1}.*
      conv.weight [1,3,C,1,1], bias [1,3,1,1] -> conv.weight [3,C,1,1], bias [3]
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from .common import Converted, float_weights, reject_unused_tensors
from .encoder_checkpoint import decoder_part, looks_like_encoder_checkpoint
from ..errors import CheckpointError
from .limits import check_generator_config
from ..models.stylegan2 import GeneratorConfig, channels_from_multiplier, make_fir_kernel

ROSINALITY_LR_MLP = 0.01
_BLUR_TAPS = (1, 3, 3, 1)
_NOISE_SEED = 0


def looks_like_generator_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and "style.1.weight" in obj and "input.input" in obj


def convert_rosinality_checkpoint(ckpt: Any, *, ema: bool, source: str) -> Converted:
    """Select ``g_ema`` (or ``g`` when ``ema=False``) and convert it; see the module docstring."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: a PyTorch file, but not a stylegan2-pytorch checkpoint "
                              f"(it holds a {type(ckpt).__name__}, expected a dict with 'g_ema')")
    latent_avg = ckpt.get("latent_avg")
    args = ckpt.get("args")
    if looks_like_encoder_checkpoint(ckpt):
        # e4e / pSp / ReStyle file: its 'decoder.*' weights are a rosinality generator.
        sd, latent_avg, args = decoder_part(ckpt, source)
        key = "decoder"
    elif looks_like_generator_state_dict(_strip_module_prefix(ckpt)):
        sd, key, latent_avg = ckpt, "(bare state dict)", None
    else:
        key = "g_ema" if ema else "g"
        sd = ckpt.get(key)
        if not isinstance(sd, dict):
            if ema and isinstance(ckpt.get("g"), dict):
                raise CheckpointError(f"{source}: the checkpoint has no 'g_ema' (EMA weights); load its training "
                                      f"weights 'g' with ema=False")
            if not ema and isinstance(ckpt.get("g_ema"), dict):
                raise CheckpointError(f"{source}: the checkpoint has no 'g' (non-EMA weights); load 'g_ema' "
                                      f"with ema=True")
            if isinstance(ckpt.get("d"), dict):
                raise CheckpointError(f"{source}: the checkpoint contains only a discriminator ('d'); a generator "
                                      f"('g_ema') is needed")
            keys = ", ".join(repr(k) for k in list(ckpt)[:8])
            raise CheckpointError(f"{source}: a PyTorch file, but not a stylegan2-pytorch checkpoint: no '{key}' "
                                  f"generator (keys: {keys or 'none'})")
    sd = _strip_module_prefix(sd)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: '{key}' is not a state dict of tensors (e.g. {bad[0]!r})")
    config = _infer_config(sd, source)
    check_generator_config(config, source)  # before any tensor is converted
    _cross_check_args(args, config, source)
    out, notes = _map_tensors(sd, config, source)
    notes["network"] = key
    w_avg = None
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != config.w_dim:
            shape = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
            raise CheckpointError(f"{source}: 'latent_avg' has shape {shape}, expected [{config.w_dim}]")
        w_avg = latent_avg.detach().reshape(config.w_dim).to(torch.float32).clone()
    return Converted(config, out, w_avg, notes)


def _strip_module_prefix(sd: dict) -> dict:
    """Undo ``nn.DataParallel``'s ``module.`` prefix when every key carries it."""
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _indices(sd: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted(int(m.group(1)) for k in sd if (m := rx.fullmatch(k)))


def _infer_config(sd: dict, source: str) -> GeneratorConfig:
    def need(name: str) -> torch.Tensor:
        if name not in sd:
            raise CheckpointError(f"{source}: tensor '{name}' is missing; not a complete stylegan2-pytorch generator")
        return sd[name]

    style = _indices(sd, r"style\.(\d+)\.weight")
    if not style or style != list(range(1, len(style) + 1)):
        raise CheckpointError(f"{source}: mapping layers 'style.1..n' are missing or not numbered 1..n "
                              f"(found {style})")
    n_mlp = len(style)
    first, last = need("style.1.weight"), need(f"style.{n_mlp}.weight")
    z_dim, hidden, w_dim = int(first.shape[1]), int(first.shape[0]), int(last.shape[0])
    rgbs = _indices(sd, r"to_rgbs\.(\d+)\.conv\.weight")
    if rgbs != list(range(len(rgbs))):
        raise CheckpointError(f"{source}: toRGB layers 'to_rgbs.0..k' are not numbered contiguously (found {rgbs})")
    if not rgbs:
        raise CheckpointError(f"{source}: the generator has no 'to_rgbs' layers (4 px generators are not supported)")
    resolution = 4 * 2 ** len(rgbs)
    const = need("input.input")
    channels = {4: int(const.shape[1])}
    for j in range(len(rgbs)):
        channels[8 * 2**j] = int(need(f"convs.{2 * j}.conv.weight").shape[1])
    img_channels = int(need("to_rgb1.conv.weight").shape[1])
    try:
        return GeneratorConfig(img_resolution=resolution, channels=tuple(channels.items()), z_dim=z_dim, w_dim=w_dim,
                               img_channels=img_channels, mapping_layers=n_mlp,
                               mapping_hidden=None if hidden == w_dim else hidden,
                               mapping_lr_mul=ROSINALITY_LR_MLP, conv_clamp=None, num_fp16_res=0,
                               resample_filter=_BLUR_TAPS)
    except ValueError as err:
        raise CheckpointError(f"{source}: unsupported generator ({err})") from None


def _cross_check_args(args: Any, cfg: GeneratorConfig, source: str) -> None:
    """``args`` (argparse.Namespace or dict) must agree with the weights when it says something."""
    if args is None:
        return
    get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    checks = [("size", cfg.img_resolution), ("latent", cfg.w_dim), ("n_mlp", cfg.mapping_layers)]
    for name, actual in checks:
        said = get(name, None)
        if isinstance(said, (int, float)) and not isinstance(said, bool) and int(said) != actual:
            raise CheckpointError(f"{source}: the stored args say {name}={said} but the weights have {actual}")
    mult = get("channel_multiplier", None)
    # Only files whose widths follow rosinality's table (512 up to 32 px) can be held to it;
    # forks with custom widths keep a meaningless default multiplier in their args.
    table_like = all(c == 512 for r, c in cfg.channels if r <= 32)
    if isinstance(mult, int) and not isinstance(mult, bool) and table_like:
        if dict(channels_from_multiplier(cfg.img_resolution, mult)) != cfg.channel_dict:
            raise CheckpointError(f"{source}: the stored args say channel_multiplier={mult} but the weights have "
                                  f"channels {cfg.channel_dict}")


@dataclasses.dataclass(frozen=True)
class TensorPair:
    """One tensor in both layouts: rosinality's name and shape, ours (``ours=None``: a constant blur
    kernel buffer rosinality stores and we do not). ``optional``: absent from old files (noise maps)."""

    theirs: str
    their_shape: tuple[int, ...]
    ours: str | None
    our_shape: tuple[int, ...]
    optional: bool = False


def tensor_table(cfg: GeneratorConfig) -> list[TensorPair]:
    """Every tensor of rosinality's ``Generator.state_dict()`` for ``cfg``, in its order, paired with ours.

    THE mapping, used to read (:func:`convert_rosinality_checkpoint`) and to write
    (:func:`rosinality_state_dict`) rosinality files.
    """
    ch, w, c = cfg.channel_dict, cfg.w_dim, cfg.img_channels
    hidden = cfg.mapping_hidden or cfg.w_dim
    dims = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    kernel = tuple(make_fir_kernel(_BLUR_TAPS, gain=4.0).shape)
    rows: list[TensorPair] = []
    for i in range(cfg.mapping_layers):
        rows.append(TensorPair(f"style.{i + 1}.weight", (dims[i + 1], dims[i]), f"mapping.layers.{i}.weight",
                               (dims[i + 1], dims[i])))
        rows.append(TensorPair(f"style.{i + 1}.bias", (dims[i + 1],), f"mapping.layers.{i}.bias", (dims[i + 1],)))
    rows.append(TensorPair("input.input", (1, ch[4], 4, 4), "synthesis.const", (ch[4], 4, 4)))

    def styled(src: str, k: int, cin: int, cout: int, up: bool) -> None:
        dst = f"synthesis.convs.{k}"
        rows.append(TensorPair(f"{src}.conv.weight", (1, cout, cin, 3, 3), f"{dst}.conv.weight", (cout, cin, 3, 3)))
        if up:
            rows.append(TensorPair(f"{src}.conv.blur.kernel", kernel, None, kernel))
        rows.append(TensorPair(f"{src}.conv.modulation.weight", (cin, w), f"{dst}.conv.affine.weight", (cin, w)))
        rows.append(TensorPair(f"{src}.conv.modulation.bias", (cin,), f"{dst}.conv.affine.bias", (cin,)))
        rows.append(TensorPair(f"{src}.noise.weight", (1,), f"{dst}.noise_strength", ()))
        rows.append(TensorPair(f"{src}.activate.bias", (cout,), f"{dst}.bias", (cout,)))

    def to_rgb(src: str, j: int, cin: int, up: bool) -> None:
        dst = f"synthesis.to_rgbs.{j}"
        rows.append(TensorPair(f"{src}.bias", (1, c, 1, 1), f"{dst}.bias", (c,)))
        if up:
            rows.append(TensorPair(f"{src}.upsample.kernel", kernel, None, kernel))
        rows.append(TensorPair(f"{src}.conv.weight", (1, c, cin, 1, 1), f"{dst}.conv.weight", (c, cin, 1, 1)))
        rows.append(TensorPair(f"{src}.conv.modulation.weight", (cin, w), f"{dst}.conv.affine.weight", (cin, w)))
        rows.append(TensorPair(f"{src}.conv.modulation.bias", (cin,), f"{dst}.conv.affine.bias", (cin,)))

    styled("conv1", 0, ch[4], ch[4], False)
    to_rgb("to_rgb1", 0, ch[4], False)
    for j, r in enumerate(cfg.resolutions[1:]):
        styled(f"convs.{2 * j}", 2 * j + 1, ch[r // 2], ch[r], True)
        styled(f"convs.{2 * j + 1}", 2 * j + 2, ch[r], ch[r], False)
    for j, r in enumerate(cfg.resolutions[1:]):
        to_rgb(f"to_rgbs.{j}", j + 1, ch[r], True)
    for k in range(cfg.num_convs):
        r = 4 * 2 ** ((k + 1) // 2)
        rows.append(TensorPair(f"noises.noise_{k}", (1, 1, r, r), f"synthesis.convs.{k}.noise_const", (r, r),
                               optional=True))
    return rows


def _map_tensors(sd: dict, cfg: GeneratorConfig, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    notes: dict[str, Any] = {}
    blur = make_fir_kernel(_BLUR_TAPS, gain=4.0)
    missing_noise = []
    for row in tensor_table(cfg):
        if row.theirs not in sd:
            if row.ours is None:  # kernels are constants; files may omit them
                continue
            if row.optional:
                missing_noise.append(row.ours)
                continue
            raise CheckpointError(f"{source}: tensor '{row.theirs}' is missing; not a complete stylegan2-pytorch "
                                  f"generator")
        x = sd[row.theirs]
        used.add(row.theirs)
        if row.ours is None:
            k = x.to(torch.float32)
            if k.shape != blur.shape or not torch.allclose(k, blur, atol=1e-6):
                raise CheckpointError(f"{source}: '{row.theirs}' is not the standard [1, 3, 3, 1] blur kernel; "
                                      f"custom blur kernels are not supported")
            continue
        if tuple(x.shape) != row.their_shape:
            raise CheckpointError(f"{source}: tensor '{row.theirs}' has shape {list(x.shape)}, expected "
                                  f"{list(row.their_shape)} for this architecture")
        out[row.ours] = float_weights(x, row.theirs, source).reshape(row.our_shape)

    if missing_noise:
        # Old files without stored noise: fixed, seeded maps so 'const' noise stays reproducible.
        gen = torch.Generator().manual_seed(_NOISE_SEED)
        for k in range(cfg.num_convs):
            r = 4 * 2 ** ((k + 1) // 2)
            noise = torch.randn(r, r, generator=gen)
            name = f"synthesis.convs.{k}.noise_const"
            if name in missing_noise:
                out[name] = noise
        notes["noise_const"] = f"not stored in the file; generated with seed {_NOISE_SEED}"

    reject_unused_tensors(source, sd, used, "a StyleGAN2 generator")
    return out, notes


def rosinality_state_dict(state_dict: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Our generator's ``state_dict()`` -> rosinality's ``g_ema`` (names, shapes and order of
    :func:`tensor_table`), float32 CPU tensors with storages of their own. The inverse of reading."""
    blur = make_fir_kernel(_BLUR_TAPS, gain=4.0)
    out: dict[str, torch.Tensor] = {}
    for row in tensor_table(cfg):
        x = blur if row.ours is None else state_dict[row.ours].detach()
        out[row.theirs] = x.to("cpu", torch.float32).reshape(row.their_shape).contiguous().clone()
    return out
