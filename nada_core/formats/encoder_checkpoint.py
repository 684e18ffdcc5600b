"""The ``torch.save`` layout of e4e / pSp / ReStyle checkpoints, as plain data.

Such a file holds ``{"state_dict": {"encoder.*": ..., "decoder.*": ...}, "opts": ..., "latent_avg":
[num_ws, w_dim]}`` (sometimes also discriminator and optimiser states, ignored). ``opts`` is
``vars(argparse.Namespace)`` (a dict) in the released files, in older ones the Namespace itself;
both arrive here as plain data (the restricted unpickler only ever builds a Namespace's
``__dict__`` from string keys). ``decoder.*`` are rosinality ``stylegan2-pytorch`` generator keys.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..errors import CheckpointError

_PLAIN = (str, int, float, bool, type(None))


def looks_like_encoder_checkpoint(obj: Any) -> bool:
    """A dict whose ``state_dict`` has ``encoder.*`` or ``decoder.*`` tensors."""
    sd = obj.get("state_dict") if isinstance(obj, dict) else None
    return isinstance(sd, dict) and any(isinstance(k, str) and k.startswith(("encoder.", "decoder.")) for k in sd)


def plain_opts(obj: Any) -> dict[str, Any]:
    """``opts`` as ``{name: str | int | float | bool | None | list of those}``; anything else is dropped."""
    raw = vars(obj) if isinstance(obj, argparse.Namespace) else obj
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CheckpointError(f"the checkpoint's 'opts' is a {type(raw).__name__}, not a table of options; "
                              f"the file is corrupt")
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if not isinstance(k, str):
            continue
        if isinstance(v, _PLAIN):
            out[k] = v
        elif isinstance(v, (list, tuple)) and len(v) <= 64 and all(isinstance(x, _PLAIN) for x in v):
            out[k] = list(v)
    return out


def part(state_dict: dict, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors of ``state_dict`` under ``prefix.`` with the prefix removed (non-tensors refused)."""
    out = {}
    for k, v in state_dict.items():
        if isinstance(k, str) and k.startswith(prefix + "."):
            if not isinstance(v, torch.Tensor):
                raise CheckpointError(f"'{k}' is a {type(v).__name__}, not a tensor; the file is corrupt")
            out[k[len(prefix) + 1:]] = v
    return out


def output_size(opts: dict) -> int | None:
    """The decoder's resolution the options name (``output_size`` in pSp/ReStyle, ``stylegan_size`` in e4e)."""
    for key in ("output_size", "stylegan_size"):
        v = opts.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def latent_avg_rows(obj: Any, source: str) -> torch.Tensor | None:
    """The file's ``latent_avg`` as ``[rows, w_dim]`` float32 (a ``[w_dim]`` vector gives one row)."""
    t = obj.get("latent_avg") if isinstance(obj, dict) else None
    if t is None:
        return None
    if not isinstance(t, torch.Tensor) or t.dim() not in (1, 2) or t.numel() == 0:
        shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise CheckpointError(f"{source}: 'latent_avg' has shape {shape}, expected [num_ws, w_dim] or [w_dim]; "
                              f"the file is corrupt")
    rows = t.detach().to(torch.float32).reshape(-1, t.shape[-1]).clone()
    if not torch.isfinite(rows).all():
        raise CheckpointError(f"{source}: 'latent_avg' holds NaN or infinite values; the file is corrupt")
    return rows


def decoder_part(obj: dict, source: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, dict]:
    """``(rosinality generator state dict, w_avg [w_dim] or None, args)`` of an encoder checkpoint.

    ``w_avg`` is the stored ``latent_avg`` when all its rows agree (the encoders store the
    generator's mean W repeated per layer), otherwise None; ``args`` carries the resolution the
    options name, for the converter's cross-check.
    """
    sd = part(obj["state_dict"], "decoder")
    if not sd:
        raise CheckpointError(f"{source}: an encoder checkpoint without a decoder ('decoder.*' weights); load a "
                              f"generator from its own file (e.g. stylegan2-ffhq-config-f.pt)")
    rows = latent_avg_rows(obj, source)
    w_avg = None
    if rows is not None and torch.equal(rows, rows[:1].expand_as(rows)):
        w_avg = rows[0]
    opts = plain_opts(obj.get("opts"))
    size = output_size(opts)
    return sd, w_avg, ({"size": size} if size is not None else {})
