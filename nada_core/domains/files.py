"""``domain.safetensors``: a compact domain as a file of a few kilobytes.

Layout: one float32 tensor ``[channels]`` per styled layer, named by the layer's path
(``synthesis.convs.3.conv.affine``), and text metadata: ``nada_format = "domain"``,
``format_version``, ``kind``, ``source_sha256`` (the generator lineage it was trained on),
``layers`` (JSON table: path, W+ index, conv/torgb, channels), ``architecture`` (JSON generator
config) and ``provenance`` (JSON: prompts or example images, CLIP models and weights, settings,
metrics). Values read back bit for bit.

Reading treats the file as untrusted: the header is size-checked and parsed with
:func:`~nada_core.json_text.parse_json`; every tensor must be float32 with exactly the shape its
layer declares (bounded by :mod:`nada_core.formats.limits`) before any tensor data is read; NaN/inf
values are refused. Each problem is one :class:`~nada_core.errors.CheckpointError` line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import CheckpointError, InputError
from ..formats.limits import MAX_CHANNELS
from ..json_text import parse_json
from .domain import Domain
from .layers import KINDS, layers_from_json

DOMAIN_FORMAT_TAG = "domain"
DOMAIN_FORMAT_VERSION = "1"
DOMAIN_FILE = "domain.safetensors"
MAX_DOMAIN_LAYERS = 256  # a 1024 px StyleGAN2 has 26 styled layers, StyleGAN3 ~30
MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_DOMAIN_BYTES = 64 * 1024 * 1024
_FIX = "the file is corrupt or not a domain; re-save it or use another file"


def save_domain(domain: Domain, path: str | os.PathLike) -> Path:
    """Write ``domain`` atomically as ``.safetensors``; returns the path."""
    from safetensors.torch import save_file

    from ..atomic import atomic_write

    target = Path(path)
    if target.suffix.lower() != ".safetensors":
        raise InputError(f"{target}: domains are saved as .safetensors files; use a name ending in .safetensors")
    try:
        provenance = json.dumps(domain.metadata, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise InputError(f"domain metadata must be JSON-serialisable ({err})") from None
    tensors = {}
    for layer in domain.layers:
        v = domain.values[layer.path].detach().to("cpu", torch.float32).contiguous().clone()
        if tuple(v.shape) != (layer.channels,):
            raise InputError(f"domain layer {layer.path} holds {list(v.shape)} values, expected [{layer.channels}]")
        tensors[layer.path] = v
    header = {
        "nada_format": DOMAIN_FORMAT_TAG,
        "format_version": DOMAIN_FORMAT_VERSION,
        "kind": domain.kind,
        "source_sha256": domain.source_sha256 or "",
        "layers": json.dumps([layer.to_dict() for layer in domain.layers]),
        "architecture": json.dumps(domain.architecture, sort_keys=True),
        "provenance": provenance,
    }
    return atomic_write(target, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def _read_header(p: Path) -> dict:
    from ..formats.safetensors_header import read_header

    size = p.stat().st_size
    if size > MAX_DOMAIN_BYTES:
        raise CheckpointError(f"{p}: {size} bytes is far more than a domain file holds ({MAX_DOMAIN_BYTES}); "
                              f"{_FIX}")
    return read_header(p, what=str(p), fix=_FIX, max_bytes=MAX_HEADER_BYTES)


def is_domain_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a ``.safetensors`` file whose metadata says it is a domain (header only)."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".safetensors":
        return False
    try:
        meta = _read_header(p).get("__metadata__")
    except (CheckpointError, OSError):
        return False
    return isinstance(meta, dict) and meta.get("nada_format") == DOMAIN_FORMAT_TAG


def read_domain_header(path: str | os.PathLike) -> tuple[dict, dict[str, dict]]:
    """``(metadata, {tensor name: header entry})`` of a domain file, checked; no tensor data read."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"no domain file at {p}; pass a domain .safetensors (from `nada train --adapt ...`)")
    header = _read_header(p)
    meta = header.get("__metadata__")
    if not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{p}: the .safetensors metadata is missing or not a table of text values; {_FIX}")
    if meta.get("nada_format") != DOMAIN_FORMAT_TAG:
        raise CheckpointError(f"{p} is not a ComfyUI-NADA domain file (nada_format {meta.get('nada_format')!r}); "
                              "pass a domain.safetensors written by `nada train --adapt domain|stylespace`")
    if meta.get("format_version") != DOMAIN_FORMAT_VERSION:
        raise CheckpointError(f"{p}: domain format version {meta.get('format_version')!r} is not supported "
                              f"(expected {DOMAIN_FORMAT_VERSION}); update ComfyUI-NADA")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return meta, entries


def load_domain(path: str | os.PathLike) -> Domain:
    """Read a domain file (untrusted; see the module docstring) -> :class:`Domain` on the CPU."""
    from safetensors import safe_open

    p = Path(path).expanduser()
    meta, entries = read_domain_header(p)
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{p}: unknown domain kind {kind!r} (expected {', '.join(KINDS)}); {_FIX}")
    layers_json = parse_json(meta.get("layers", ""), f"{p}: the 'layers' metadata", _FIX, expect=list,
                             error=CheckpointError)
    layers = layers_from_json(layers_json, str(p), MAX_DOMAIN_LAYERS, MAX_CHANNELS)
    arch = parse_json(meta.get("architecture") or "{}", f"{p}: the 'architecture' metadata", _FIX, expect=dict,
                      error=CheckpointError)
    provenance = parse_json(meta.get("provenance") or "{}", f"{p}: the 'provenance' metadata", _FIX, expect=dict,
                            error=CheckpointError)
    declared = {layer.path: layer for layer in layers}
    if set(entries) != set(declared):
        odd = sorted(set(entries) ^ set(declared))[:2]
        raise CheckpointError(f"{p}: its tensors do not match its layer table ({', '.join(odd)}); {_FIX}")
    for name, entry in entries.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        if dtype != "F32":
            raise CheckpointError(f"{p}: tensor {name} is {dtype!r}, domains store float32 (F32); {_FIX}")
        if shape != [declared[name].channels]:
            raise CheckpointError(f"{p}: tensor {name} has shape {str(shape)[:60]}, its layer declares "
                                  f"[{declared[name].channels}]; {_FIX}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            values = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{p}: the file is truncated or corrupt ({' '.join(str(err).split())[:120]})") from None
    for name, v in values.items():
        if not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{p}: tensor {name} holds NaN or infinite values; the domain is broken "
                                  "(retrain it, e.g. with a lower learning rate)")
    sha = meta.get("source_sha256") or None
    return Domain(kind, layers, {layer.path: values[layer.path] for layer in layers}, sha, arch, provenance,
                  name=p.stem if p.stem != "domain" else p.parent.name or p.stem)


__all__ = ["DOMAIN_FILE", "DOMAIN_FORMAT_TAG", "is_domain_file", "load_domain", "read_domain_header",
           "save_domain"]
