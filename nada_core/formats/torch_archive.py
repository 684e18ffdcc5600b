"""``torch.save`` files (zip and legacy) read with our restricted unpickler, never ``torch.load``.

torch's own weights-only unpickler lets a pickle BUILD a tensor through ``Tensor.set_`` with any
size (growing the storage with uninitialised memory) and BUILD any allowlisted global, numpy
dtypes included; so ``.pt`` files go through :class:`~nada_core.formats.safe_unpickle.RestrictedUnpickler`
instead, with a persistent-load hook that hands out storages read from the file:

- zip (torch >= 1.6): ``<prefix>/data.pkl`` names storages ``('storage', StorageType, key,
  location, numel)``; the bytes are the member ``<prefix>/data/<key>``. The archive's declared
  sizes pass :func:`~nada_core.formats.limits.check_archive` before anything is inflated.
- legacy: pickles of the magic number, protocol version and sys info, the object (storages
  ``('storage', StorageType, key, location, numel, view)``), the list of storage keys, then each
  storage's raw bytes behind an 8-byte element count. Declared sizes are checked against the
  bytes left in the file before any storage is allocated.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import torch

from .limits import check_archive

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class StorageType:
    """What ``torch.FloatStorage`` etc. resolve to in a ``.pt`` pickle: a dtype, nothing callable."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("a storage type cannot be modified by a checkpoint")


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}


def storage_type_allowlist() -> dict[tuple[str, str], StorageType]:
    return {("torch", name): StorageType(dt) for name, dt in _STORAGE_DTYPES.items()}


def _typed(untyped: torch.UntypedStorage, dtype: torch.dtype) -> torch.storage.TypedStorage:
    return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _storage_fields(pid: Any, n: int) -> tuple[StorageType, str, int, tuple]:
    if not isinstance(pid, tuple) or len(pid) != n or pid[0] not in ("storage", b"storage"):
        raise pickle.UnpicklingError("unexpected persistent id (not a plain tensor storage)")
    stype, key, _location, numel = pid[1:5]
    if not isinstance(stype, StorageType):
        raise pickle.UnpicklingError("storage of an unsupported type")
    if isinstance(key, bytes):
        key = key.decode("ascii", "replace")
    if not isinstance(key, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise pickle.UnpicklingError("storage id is malformed")
    return stype, key, numel, pid[5:]


def _unpickle(data: BinaryIO, source: str, hook: Callable[[Any], Any], allowlist: dict,
              buildable: tuple[type, ...] = ()) -> Any:
    from .safe_unpickle import RestrictedUnpickler

    return RestrictedUnpickler(data, source, allowlist=allowlist, persistent_load=hook, buildable=buildable).load()


def load_zip(path: str | os.PathLike, source: str, allowlist: dict, buildable: tuple[type, ...] = ()) -> Any:
    """The object in a zip-format ``torch.save`` (or TorchScript) archive, storages on the CPU.

    ``allowlist`` / ``buildable``: see :class:`~nada_core.formats.safe_unpickle.RestrictedUnpickler`.
    """
    with zipfile.ZipFile(path) as zf:
        check_archive(zf, source)
        names = zf.namelist()
        pkl = next((n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")), None)
        if pkl is None:
            raise pickle.UnpicklingError("the archive has no data.pkl (not a torch.save file)")
        prefix = pkl[: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and zf.read(byteorder).strip() not in (b"little", b""):
            raise pickle.UnpicklingError("big-endian checkpoints are not supported")
        storages: dict[str, torch.storage.TypedStorage] = {}

        def hook(pid: Any) -> Any:
            stype, key, numel, _ = _storage_fields(pid, 5)
            if key not in storages:
                member = f"{prefix}data/{key}"
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise pickle.UnpicklingError(f"storage '{key}' is missing from the archive") from None
                itemsize = torch.empty((), dtype=stype.dtype).element_size()
                if info.file_size != numel * itemsize:
                    raise pickle.UnpicklingError(f"storage '{key}' holds {info.file_size} bytes, the pickle says "
                                                 f"{numel * itemsize}")
                raw = bytearray(zf.read(member))
                untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else \
                    torch.UntypedStorage(0)
                storages[key] = _typed(untyped, stype.dtype)
            stored = storages[key]
            if stored.dtype != stype.dtype:
                raise pickle.UnpicklingError(f"storage '{key}' is used with two dtypes")
            return stored

        return _unpickle(io.BytesIO(zf.read(pkl)), source, hook, allowlist, buildable)


def load_legacy(fh: BinaryIO, source: str, allowlist: dict, size: int) -> Any:
    """The object in a legacy (pre-1.6) ``torch.save`` stream of ``size`` bytes."""
    from .safe_unpickle import RestrictedUnpickler

    def plain(what: str) -> Any:
        return RestrictedUnpickler(fh, source, allowlist={}).load()

    if plain("magic") != LEGACY_MAGIC:
        raise pickle.UnpicklingError("not a torch.save file (bad magic number)")
    if plain("protocol") != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("unsupported legacy torch protocol version")
    info = plain("sys_info")
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise pickle.UnpicklingError("big-endian checkpoints are not supported")
    pending: dict[str, tuple[torch.storage.TypedStorage, int]] = {}
    declared = [0]

    def hook(pid: Any) -> Any:
        stype, key, numel, (view,) = _storage_fields(pid, 6)
        if view is not None:
            raise pickle.UnpicklingError("storage views (torch < 1.0 files) are not supported")
        if key not in pending:
            itemsize = torch.empty((), dtype=stype.dtype).element_size()
            declared[0] += numel * itemsize
            if declared[0] > size:  # storages follow the pickle in the same file
                raise pickle.UnpicklingError("the pickle declares more storage bytes than the file holds")
            pending[key] = (_typed(torch.UntypedStorage(numel * itemsize), stype.dtype), itemsize)
        stored = pending[key][0]
        if stored.dtype != stype.dtype:
            raise pickle.UnpicklingError(f"storage '{key}' is used with two dtypes")
        return stored

    result = _unpickle(fh, source, hook, allowlist)
    keys = RestrictedUnpickler(fh, source, allowlist={}).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(pending):
        raise pickle.UnpicklingError("the storage list does not match the storages the pickle uses")
    for key in keys:
        typed, itemsize = pending[str(key)]
        head = fh.read(8)
        if len(head) != 8:
            raise EOFError("storage data cut short")
        (count,) = struct.unpack("<q", head)
        nbytes = typed._untyped_storage.nbytes()
        if count * itemsize != nbytes:
            raise pickle.UnpicklingError(f"storage '{key}' holds {count} elements, the pickle says "
                                         f"{nbytes // itemsize}")
        raw = fh.read(nbytes)
        if len(raw) != nbytes:
            raise EOFError("storage data cut short")
        if nbytes:
            dst = torch.empty((0,), dtype=torch.uint8).set_(typed._untyped_storage)
            dst.copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return result
