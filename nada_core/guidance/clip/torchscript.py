"""OpenAI's TorchScript CLIP archives (e.g. ``ViT-B-32.pt``): their tensors, without running any code.

``data.pkl`` is read with a restricted unpickler that rebuilds tensors from the archive's ``data/``
entries and swaps ``__torch__.*`` module classes for inert stubs; anything else is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ...errors import ClipError, short_reason


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` is a TorchScript zip (``<root>/code/`` or ``<root>/constants.pkl`` entries)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.count("/") >= 1 and (n.split("/", 1)[1].startswith("code/")
                                               or n.split("/", 1)[1] == "constants.pkl")
                       for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class _ScriptObjectStub:
    """Inert stand-in for a pickled ``__torch__.*`` module object: keeps its attribute dict."""

    _qualname = "?"

    def __init__(self, *args, **kwargs) -> None:
        self._state: dict = {}

    def __setstate__(self, state) -> None:
        self._state = state if isinstance(state, dict) else {"__state__": state}


class _StorageType:
    """Marker for ``torch.FloatStorage`` & co. in a pickle: carries only the dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_ignored) -> torch.Tensor:
    size, stride = tuple(size), tuple(stride)
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise ClipError("TorchScript archive holds a tensor with a negative size or stride; the file is corrupt")
    need = offset + (sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0)
    if need > storage.numel():
        raise ClipError("TorchScript archive holds a tensor larger than its storage; the file is corrupt")
    return storage.as_strided(size, stride, offset)


def _rebuild_parameter(data, requires_grad=False, *_ignored):
    return data


def _passthrough(value, *_ignored):
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for TorchScript ``data.pkl``: tensors, containers and inert module stubs only."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch.jit._pickle", "restore_type_tag"): _passthrough,
        ("torch.jit._pickle", "build_intlist"): _passthrough,
        ("torch.jit._pickle", "build_doublelist"): _passthrough,
        ("torch.jit._pickle", "build_boollist"): _passthrough,
        ("torch.jit._pickle", "build_tensorlist"): _passthrough,
        ("torch.jit._pickle", "build_complexlist"): _passthrough,
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, torch.Tensor] = {}
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module.startswith("__torch__"):
            qual = f"{module}.{name}"
            if qual not in self._stubs:
                self._stubs[qual] = type(name, (_ScriptObjectStub,), {"_qualname": qual})
            return self._stubs[qual]
        raise ClipError(f"refused to load {self._path}: its data.pkl asks for {module}.{name}, which a CLIP "
                        f"checkpoint never needs; nothing was executed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise ClipError(f"cannot read {self._path}: unknown storage reference in data.pkl; the file is corrupt")
        stype, key = pid[1], str(pid[2])
        dtype = stype.dtype if isinstance(stype, _StorageType) else None
        if dtype is None:
            raise ClipError(f"cannot read {self._path}: unsupported storage type in data.pkl")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._root}/data/{key}")
            except KeyError:
                raise ClipError(f"cannot read {self._path}: storage {key} is missing from the archive; "
                                f"the file is truncated, download it again") from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) % itemsize:
                raise ClipError(f"cannot read {self._path}: storage {key} has a partial element; the file is corrupt")
            self._storages[key] = (torch.frombuffer(bytearray(raw), dtype=dtype) if raw
                                   else torch.empty(0, dtype=dtype))
        return self._storages[key]


def read_torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Recover the tensors of a TorchScript archive (e.g. OpenAI's ``ViT-B-32.pt``) without running it.

    ``data.pkl`` is read with a restricted unpickler that only rebuilds tensors from the archive's
    ``data/`` entries and replaces ``__torch__.*`` module classes with inert stubs. Every tensor
    attribute of the module tree is returned under its dotted name (parameters, buffers and tensor
    attributes such as ``attn_mask``); the caller keeps the keys its model expects.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ClipError(f"cannot read {path}: not a TorchScript archive ({short_reason(err)})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            raise ClipError(f"cannot read {path}: the archive has no data.pkl; download it again")
        root = pkls[0].split("/", 1)[0]
        try:
            byteorder = zf.read(f"{root}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        if byteorder != "little":
            raise ClipError(f"cannot read {path}: big-endian TorchScript archives are not supported")
        try:
            data = zf.read(pkls[0])
            root_obj = _RestrictedUnpickler(data, zf, root, path).load()
        except ClipError:
            raise
        except Exception as err:
            raise ClipError(f"cannot read {path}: data.pkl is damaged ({short_reason(err)}); "
                            f"download it again") from None
    sd: dict[str, torch.Tensor] = {}
    _collect_tensors(root_obj, "", sd, set())
    return sd


def _collect_tensors(obj: Any, prefix: str, out: dict, seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    state = obj._state if isinstance(obj, _ScriptObjectStub) else obj if isinstance(obj, dict) else None
    if state is None:
        return
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, (_ScriptObjectStub, dict)):
            _collect_tensors(value, f"{prefix}{key}.", out, seen)
