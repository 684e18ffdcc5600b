"""Foreign ``.npy`` / ``.npz`` arrays (latent codes, editing directions), read by one guarded reader.

numpy's own ``np.load`` trusts more of the file than we want: an ``.npz`` member is inflated
before its size is known (a member named without ``.npy`` even skips any header check), a
damaged stream raises half a dozen exception types (``zlib.error``, ``tokenize.TokenError``,
``NotImplementedError`` for other compressions, ``RuntimeError`` for encrypted members), and
integer, bool, complex or datetime arrays are silently cast to floats. Here instead:

- the header is parsed first (numpy's header reader, bounded to numpy's 10,000 bytes): only real
  floating dtypes (float16/32/64) and at most ``max_values`` elements are accepted, so nothing
  big is allocated and nothing is ever unpickled (object dtypes are not floats);
- an ``.npz`` passes :func:`~nada_core.formats.limits.check_archive` (declared sizes and deflate
  ratio, from the central directory), its member is found by exact name (``key`` or ``key.npy``),
  and only stored or deflated, unencrypted members are read, exactly the declared byte count;
- every problem is one :class:`~nada_core.errors.CheckpointError` line naming the file and the fix.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

from ..errors import CheckpointError, short_reason
from .limits import check_archive

_FLOAT_SIZES = (2, 4, 8)  # float16, float32, float64
_MAX_DIMS = 8
_NPY_MAGIC = b"\x93NUMPY"


def read_numpy_array(path: str | os.PathLike, *, kind: str, max_values: int, fix: str,
                     keys: Sequence[str] = (), names_hint: str = "") -> np.ndarray:
    """The float array in an ``.npy`` file, or one member of an ``.npz`` archive, as float32.

    ``keys``: ``.npz`` member names to look for, in order (an archive with a single member needs
    none); ``names_hint``: what to say when none is found (e.g. ``"one named 'w'"``). ``kind``
    names the file type in messages (``"latents file"``), ``fix`` ends them. Values are cast
    to float32 (float64 values beyond its range become inf: callers refuse non-finite values).
    """
    p = Path(path)
    what = f"{kind} {p.name}"
    try:
        with open(p, "rb") as fh:
            magic = fh.read(len(_NPY_MAGIC))
        # By content, not by name: an .npz is a zip archive (its first member's local header).
        if magic.startswith(b"PK\x03\x04") or (magic.startswith(b"PK") and p.suffix.lower() == ".npz"):
            arr = _read_npz(p, keys, max_values, kind, names_hint, fix)
        else:
            with open(p, "rb") as fh:
                arr = _read_npy_stream(fh, max_values, kind, what, fix)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(f"{what}: not enough memory to read the array; {fix}") from None
    except Exception as err:  # noqa: BLE001 - zlib, zipfile, tokenize, OS errors on a damaged file
        raise CheckpointError(f"{what}: cannot be read ({type(err).__name__}: {short_reason(err, 120)}); "
                              f"{fix}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(np.float32)


def _read_npz(p: Path, keys: Sequence[str], max_values: int, kind: str, names_hint: str, fix: str) -> np.ndarray:
    what = f"{kind} {p.name}"
    with zipfile.ZipFile(p) as zf:
        # float64 data plus headers: an archive declaring more cannot hold an array we accept
        check_archive(zf, what, max_total=max_values * 8 + 2**20)
        members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            members.setdefault(name, info)
        names = list(members)
        key = next((k for k in keys if k in members), None)
        if key is None and len(names) == 1:
            key = names[0]
        if key is None:
            listed = ", ".join(repr(n[:40]) for n in names[:8]) + (", ..." if len(names) > 8 else "")
            raise CheckpointError(f"{what} has arrays [{listed}]; expected one array{' or ' + names_hint if names_hint else ''}")
        info = members[key]
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{what}: array '{key[:40]}' is encrypted; {fix}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{what}: array '{key[:40]}' uses an unusual compression (method "
                                  f"{info.compress_type}); numpy writes stored or deflated members; {fix}")
        with zf.open(info) as fh:
            return _read_npy_stream(fh, max_values, kind, f"{what} (array '{key[:40]}')", fix)


def _read_npy_stream(fh: BinaryIO, max_values: int, kind: str, what: str, fix: str) -> np.ndarray:
    """One ``.npy`` stream: header checked, then exactly its data bytes read."""
    if fh.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
        raise CheckpointError(f"{what}: not a numpy array (no .npy header); {fix}")
    version = tuple(fh.read(2))
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise CheckpointError(f"{what}: unknown .npy format version {version}; {fix}")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)  # numpy's parser: literals only, header <= 10,000 bytes
    dtype = np.dtype(dtype)
    if dtype.kind != "f" or dtype.itemsize not in _FLOAT_SIZES or dtype.fields is not None:
        raise CheckpointError(f"{what} holds {_dtype_name(dtype)} values, not floats; {fix}")
    if not (isinstance(shape, tuple) and len(shape) <= _MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise CheckpointError(f"{what}: the array header declares shape {str(shape)[:60]}; {fix}")
    count = math.prod(shape)
    if count > max_values:
        raise CheckpointError(f"{what}: the array declares shape {list(shape)}, over {max_values:,} values; this "
                              f"is not a {kind}")
    nbytes = count * dtype.itemsize
    data = fh.read(nbytes)
    if len(data) != nbytes:
        raise CheckpointError(f"{what}: the array is truncated ({len(data)} of {nbytes} data bytes); {fix}")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def _dtype_name(dtype: Any) -> str:
    kinds = {"i": "integer", "u": "unsigned integer", "b": "bool", "c": "complex", "O": "Python object",
             "U": "text", "S": "bytes", "V": "structured", "M": "datetime", "m": "timedelta"}
    return f"{kinds.get(dtype.kind, dtype.kind)} ({dtype.str})" if dtype.kind != "f" else f"float{dtype.itemsize * 8}"
