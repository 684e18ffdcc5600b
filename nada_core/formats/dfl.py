"""The ``.safetensors`` cache of NVIDIA pickles written by dfl/ComfyUI-StyleGan.

That pack converts each ``.pkl`` once with ``safetensors.torch.save_model(G_ema, path,
metadata={"arch": ..., "init_kwargs": json})``: the tensors are NVIDIA's own ``G.state_dict()``
(``mapping.fc0.weight``, ``synthesis.b4.const``, ...), ``arch`` is ``"stylegan2"`` or
``"stylegan3"`` and ``init_kwargs`` the JSON of the generator's constructor arguments (``z_dim,
c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs``). Recognised by
that metadata (:func:`is_dfl_metadata`), never by the file name. StyleGAN2 entries are read with the
NVIDIA name mapping of :mod:`nada_core.formats.nvidia`; the architecture comes from ``init_kwargs``
and is bounds-checked before any tensor is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import CheckpointError, short_reason
from ..json_text import parse_json
from .common import Converted
from .detect import is_dfl_metadata  # noqa: F401 - re-exported
from .nvidia import config_from_init_kwargs, map_nvidia_tensors

#: ``arch`` values -> a converter ``(path, init_kwargs, source) -> Converted``; None = known but refused.
#: TODO(coordinator): wire "stylegan3" to the StyleGAN3 loader once it is merged (its tensors are
#: NVIDIA's stylegan3 ``G.state_dict()`` names, its config the same ``init_kwargs``).
ARCH_LOADERS: dict[str, Callable[[Path, dict, str], Converted] | None] = {}


def convert_dfl_safetensors(path: Path, meta: dict, source: str) -> Converted:
    """Convert one dfl/ComfyUI-StyleGan cache file (``meta``: its header metadata)."""
    arch = meta["arch"].strip().lower()
    kwargs = parse_json(meta["init_kwargs"], f"{source}: the 'init_kwargs' metadata",
                        "the file is corrupt; convert the .pkl again", expect=dict, error=CheckpointError)
    if arch in ARCH_LOADERS and ARCH_LOADERS[arch] is not None:
        return ARCH_LOADERS[arch](path, kwargs, source)
    if arch == "stylegan3":
        raise CheckpointError(f"{source}: a dfl/ComfyUI-StyleGan cache of a StyleGAN3 generator; this version reads "
                              f"StyleGAN2 caches only, so load the original stylegan3 .pkl instead")
    if arch != "stylegan2":
        raise CheckpointError(f"{source}: a dfl/ComfyUI-StyleGan cache of architecture {arch[:40]!r}, which is not "
                              f"supported (stylegan2 is)")
    return _convert_stylegan2(path, kwargs, source)


def _convert_stylegan2(path: Path, kwargs: dict, source: str) -> Converted:
    config, sk, taps = config_from_init_kwargs(kwargs, source, "G_ema")  # checked before reading tensors
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            tensors: dict[str, torch.Tensor] = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{source}: the .safetensors file is truncated or corrupt "
                              f"({short_reason(err, 160)})") from None
    sd, w_avg = map_nvidia_tensors(tensors, config, bool(sk["use_noise"]), taps, source)
    notes = {"network": "G_ema (dfl/ComfyUI-StyleGan cache)", "use_noise": bool(sk["use_noise"]),
             "channel_base": int(sk["channel_base"]), "channel_max": int(sk["channel_max"])}
    return Converted(config, sd, w_avg, notes)
