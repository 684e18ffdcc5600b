"""Latent editing direction files: read the ones users have, write our own.

:func:`load_direction` reads

- InterFaceGAN boundaries: ``.npy`` arrays ``[1, 512]`` (the InterFaceGAN release) and the
  ``.pt`` tensors ``[1, 512]`` shipped with the official StyleGAN-NADA (``editing/interfacegan_boundaries``);
- plain vectors: ``.npy``/``.npz``/``.pt``/``.pth`` holding ``[w_dim]``, ``[1, w_dim]`` or ``[K, w_dim]``
  (K directions), or a dict with one such tensor (``direction``, ``boundary``, ``directions``...);
- our ``.safetensors`` direction files (:func:`save_direction`: vectors, values, method, layers,
  lineage, names).

Nothing in a file is ever executed: ``.npy``/``.npz`` are read with ``allow_pickle=False``,
``.pt`` with our restricted unpickler (:func:`~nada_core.formats.safe_unpickle.torch_load_weights_only`,
never ``torch.load``), and sizes are checked before anything large is allocated. Foreign vectors
are used as they are (not renormalised): ``strength`` is in units of the file's vector, which for
InterFaceGAN boundaries is a unit normal, as in the official code (``w + distance * boundary``).
"""

from __future__ import annotations

import json  # dumps only; files are read with json_text.parse_json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from .semantic import Directions

DIRECTIONS_FORMAT = "nada-directions"
DIRECTIONS_FORMAT_VERSION = 1
DIRECTION_SUFFIXES = (".safetensors", ".npy", ".npz", ".pt", ".pth")
MAX_DIRECTION_VALUES = 4 * 2**20  # 4096 directions of 1024 dims; real files hold 512 values
MAX_DIRECTION_FILE_BYTES = 64 * 2**20
_DICT_KEYS = ("directions", "direction", "boundary", "vectors", "vector", "latent_direction", "w")


def save_direction(directions: Directions, path: str | os.PathLike) -> Path:
    """Write ``directions`` to a ``.safetensors`` file (atomic): tensors ``vectors [K, w_dim]`` and
    ``values [K]``, metadata ``format``, ``method``, ``layers``, ``lineage_sha256``, ``names``, ``provenance``."""
    from safetensors.torch import save_file

    from ..atomic import atomic_write

    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise InputError(f"{p.name}: direction files are saved as .safetensors; give a name ending in .safetensors")
    try:
        provenance = json.dumps(directions.provenance)
    except (TypeError, ValueError) as err:
        raise InputError(f"direction provenance is not JSON-serialisable: {err}") from None
    meta = {
        "format": DIRECTIONS_FORMAT,
        "format_version": str(DIRECTIONS_FORMAT_VERSION),
        "method": directions.method,
        "layers": "" if directions.layers is None else json.dumps(directions.layers),
        "lineage_sha256": directions.lineage_sha256 or "",
        "names": "" if directions.names is None else json.dumps(directions.names),
        "count": str(len(directions)),
        "w_dim": str(directions.w_dim),
        "provenance": provenance,
    }
    tensors = {"vectors": directions.vectors.contiguous(), "values": directions.values.contiguous()}
    return atomic_write(p, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_direction(path: str | os.PathLike) -> Directions:
    """Read a direction file (see module docs) as :class:`Directions`; one clear line when it cannot."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"direction file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in DIRECTION_SUFFIXES:
        raise InputError(f"{p.name}: unknown direction file type {suffix!r}; use {', '.join(DIRECTION_SUFFIXES)}")
    size = p.stat().st_size
    if size > MAX_DIRECTION_FILE_BYTES:
        raise CheckpointError(f"{p.name} is {size / 2**20:.0f} MiB, far too large for a direction file "
                              f"(limit {MAX_DIRECTION_FILE_BYTES // 2**20} MiB); is it a generator checkpoint?")
    if suffix == ".safetensors":
        return _load_safetensors(p)
    if suffix in (".npy", ".npz"):
        arr = _read_numpy(p)
    else:
        arr = _read_torch(p)
    return _from_array(p, arr)


# ----------------------------------------------------------------------------------------------


def _from_array(p: Path, arr: Any) -> Directions:
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind != "f":  # ints, bools, complex: not a direction (casting would hide it)
            raise CheckpointError(f"{p.name} holds {arr.dtype} values; a direction is a float vector")
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, refused below
            arr = arr.astype(np.float32)
    t = torch.as_tensor(arr)
    if not t.is_floating_point():
        raise CheckpointError(f"{p.name} holds {t.dtype} values; a direction is a float vector")
    t = t.detach().float().cpu()
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2 or t.shape[1] < 1 or t.shape[0] < 1:
        raise CheckpointError(f"{p.name} holds an array of shape {list(arr.shape)}; a direction file holds "
                              "[w_dim], [1, w_dim] or [K, w_dim] vectors (per-layer W+ directions are not supported)")
    if not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{p.name}: the direction holds NaN/inf values; get or save the file again")
    norms = t.norm(dim=1)
    if bool((norms == 0).any()):
        raise CheckpointError(f"{p.name}: a direction in this file is all zeros, so it would edit nothing")
    names = [p.stem] if t.shape[0] == 1 else [f"{p.stem}:{i}" for i in range(t.shape[0])]
    return Directions(t, norms, "file", None, None, names, {"source": "file", "file": p.name})


def _check_count(p: Path, shape: Any) -> None:
    count = 1
    for d in shape:
        count *= int(d)
    if count > MAX_DIRECTION_VALUES:
        raise CheckpointError(f"{p.name}: array of shape {list(shape)} is over {MAX_DIRECTION_VALUES:,} values; "
                              "this is not a direction file")


def _read_numpy(p: Path) -> np.ndarray:
    from ..formats.numpy_files import read_numpy_array

    return read_numpy_array(p, kind="direction file", max_values=MAX_DIRECTION_VALUES,
                            fix="save the vector again as a .npy array of floats", keys=_DICT_KEYS,
                            names_hint="one named 'direction' or 'boundary'")


def _read_torch(p: Path) -> Any:
    from ..formats.safe_unpickle import torch_load_weights_only

    obj = torch_load_weights_only(p, p.name)
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, (torch.Tensor, np.ndarray))}
        key = next((k for k in _DICT_KEYS if k in tensors), None)
        if key is None and len(tensors) == 1:
            key = next(iter(tensors))
        if key is None:
            keys = ", ".join(sorted(map(str, obj))[:8])
            hint = " (it looks like a checkpoint)" if any(str(k) in ("g_ema", "state_dict", "G_ema") for k in obj) else ""
            raise CheckpointError(f"{p.name} holds a dict ({keys}) with no direction tensor{hint}; expected a "
                                  "tensor [1, w_dim] or a dict with 'direction' or 'boundary'")
        obj = tensors[key]
    if not isinstance(obj, (torch.Tensor, np.ndarray)):
        raise CheckpointError(f"{p.name} holds a {type(obj).__name__}, not a direction tensor; expected a tensor "
                              "[1, w_dim] such as an InterFaceGAN boundary")
    _check_count(p, obj.shape)
    return obj


def _load_safetensors(p: Path) -> Directions:
    from safetensors import safe_open

    from ..formats.safetensors_header import read_header
    from ..json_text import parse_json

    read_header(p, what=f"cannot read direction file {p.name}", fix="is it a .safetensors direction file (truncated "
                "or corrupt files must be saved again)?")  # size-checked before safetensors parses it
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
            # Only the tensors a direction file can hold are read (a file may list thousands).
            wanted = [k for k in ("vectors", "values") if k in keys] if "vectors" in keys else keys[:1]
            for k in wanted:
                _check_count(p, fh.get_slice(k).get_shape())
            tensors = {k: fh.get_tensor(k) for k in wanted}
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise CheckpointError(f"cannot read direction file {p.name}: {reason}; is it a .safetensors direction "
                              "file (truncated or corrupt files must be saved again)?") from None
    if meta.get("format") != DIRECTIONS_FORMAT:
        if "vectors" not in tensors and len(keys) == 1:
            return _from_array(p, next(iter(tensors.values())))
        hint = " (it looks like a generator checkpoint)" if any(k.startswith(("mapping.", "synthesis.")) for k in keys) else ""
        if "ws" in keys:
            hint = " (it is a latents file: load it as latents)"
        raise CheckpointError(f"{p.name} is not a direction file{hint}; pick one written by 'nada edit --save-directions' "
                              "or NADA Find Directions, or a .npy/.pt vector")
    what = f"direction file {p.name}"

    def field(name: str, expect: type) -> Any:
        text = meta.get(name) or ""
        return None if not text else parse_json(text, f"{what}: {name} metadata", "save the directions again",
                                               expect=expect, error=CheckpointError)

    if "vectors" not in tensors or "values" not in tensors:
        raise CheckpointError(f"{what} lacks its 'vectors'/'values' tensors; save the directions again")
    layers = field("layers", list)
    names = field("names", list)
    provenance = field("provenance", dict) or {}
    method = meta.get("method") or "file"
    if method not in ("sefa", "ganspace", "file"):
        method = "file"
    if layers is not None and not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 64 for i in layers):
        raise CheckpointError(f"{what}: layers metadata must be W+ entries 0-63; save the directions again")
    if names is not None and not all(isinstance(n, str) for n in names):
        names = None
    try:
        return Directions(tensors["vectors"], tensors["values"], method, layers,
                          meta.get("lineage_sha256") or None, names, provenance)
    except InputError as err:
        raise CheckpointError(f"{what}: {err}") from None
