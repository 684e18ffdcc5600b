"""numpy values a checkpoint pickle may contain, rebuilt without numpy's C pickle hooks.

Real checkpoints hold numeric numpy scalars (``weight_gain`` of NVIDIA layers, ``w_avg``
statistics), plain numeric dtypes and small numeric arrays (StyleGAN3 layer sizes, dataset
label shapes). numpy's own reconstruction functions trust the pickle: an object, void or
structured dtype, or a dtype whose state is rebuilt after an array uses it, turns the pickled
bytes into object pointers, which segfaults on access. So a pickle gets only these stand-ins:

- ``numpy.dtype`` / ``numpy.dtypes.*DType`` -> :func:`safe_dtype` (numeric kinds only, no fields,
  no sub-arrays). BUILD on a dtype is refused by the unpickler unless it restates the dtype's
  own state (see :func:`check_dtype_state`).
- ``multiarray.scalar`` -> :func:`safe_scalar` (``np.frombuffer`` of exactly one item).
- ``multiarray._reconstruct`` -> :func:`safe_reconstruct`, an empty :class:`LoadedArray` whose
  one BUILD goes through :func:`build_array` (numeric dtype, exact byte count).
- ``numeric._frombuffer`` -> :func:`safe_frombuffer`.
``numpy.ndarray`` itself maps to an inert token: it can be named, never called.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Callable

import numpy as np

_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex
_MAX_ARRAY_DIMS = 32


class _NdarrayToken:
    """What ``numpy.ndarray`` resolves to: only :func:`safe_reconstruct` accepts it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("numpy.ndarray cannot be modified by a checkpoint")


NDARRAY = _NdarrayToken()


def numeric_dtype(value: Any) -> np.dtype:
    """``value`` as a plain numeric :class:`numpy.dtype`, or UnpicklingError."""
    if not isinstance(value, np.dtype):
        raise pickle.UnpicklingError("numpy value without a numpy dtype")
    if value.kind not in _NUMERIC_KINDS or value.fields is not None or value.subdtype is not None \
            or value.hasobject or value.itemsize > 32:
        raise pickle.UnpicklingError(f"numpy dtype {value.str!r} is not a plain numeric type")
    return value


def safe_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype(obj)`` for a numeric type code such as ``'f8'``, ``'<i4'``, ``'b1'``."""
    if not isinstance(obj, str) or len(obj) > 8:
        raise pickle.UnpicklingError("numpy dtype given by something other than a short type code")
    try:
        dt = np.dtype(obj)
    except (TypeError, ValueError):
        raise pickle.UnpicklingError(f"unknown numpy dtype {obj!r}") from None
    return numeric_dtype(dt)


def check_dtype_state(dt: np.dtype, state: Any) -> None:
    """BUILD on a dtype: allowed only as a no-op (the state the dtype already has)."""
    try:
        own = dt.__reduce__()[2]
    except Exception:  # noqa: BLE001 - a dtype without state cannot be rebuilt either
        own = None
    if state != own:
        raise pickle.UnpicklingError("the pickle changes a numpy dtype after creating it")


def safe_scalar(dtype: Any, data: Any = None) -> Any:
    """``multiarray.scalar(dtype, bytes)`` for numeric dtypes: exactly one item's bytes."""
    dt = numeric_dtype(dtype)
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError("numpy scalar payload does not match its dtype")
    return np.frombuffer(bytes(data), dtype=dt)[0]


class LoadedArray(np.ndarray):
    """An array being unpickled; its single BUILD is validated by :func:`build_array`."""


def safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> LoadedArray:
    """``multiarray._reconstruct(ndarray, (0,), b'b')``: an empty placeholder to BUILD into."""
    if subtype is not NDARRAY:
        raise pickle.UnpicklingError("only plain numpy arrays can be rebuilt")
    arr = np.empty((0,), dtype=np.uint8).view(LoadedArray)
    arr.__dict__["_nada_built"] = False
    return arr


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > _MAX_ARRAY_DIMS or \
            not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise pickle.UnpicklingError("numpy array shape is not a tuple of non-negative integers")
    return shape


def build_array(arr: LoadedArray, state: Any) -> None:
    """BUILD ``(version, shape, dtype, is_fortran, rawdata)`` into ``arr`` once, numerically checked."""
    if arr.__dict__.get("_nada_built", True):
        raise pickle.UnpicklingError("numpy array rebuilt twice")
    if not isinstance(state, tuple) or len(state) != 5:
        raise pickle.UnpicklingError("numpy array state has an unexpected layout")
    version, shape, dtype, fortran, raw = state
    shape, dt = _shape(shape), numeric_dtype(dtype)
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape) * dt.itemsize:
        raise pickle.UnpicklingError("numpy array data does not match its shape and dtype")
    if version != 1 or not isinstance(fortran, bool):
        raise pickle.UnpicklingError("numpy array state has an unexpected layout")
    np.ndarray.__setstate__(arr, (1, shape, dt, fortran, bytes(raw)))
    arr.__dict__["_nada_built"] = True


def safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numeric._frombuffer`` (protocol-5 numpy arrays) for numeric dtypes."""
    dt, shape = numeric_dtype(dtype), _shape(shape)
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    if not isinstance(buf, (bytes, bytearray)) or len(buf) != math.prod(shape) * dt.itemsize:
        raise pickle.UnpicklingError("numpy buffer does not match its shape and dtype")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy buffer order is not 'C' or 'F'")
    return np.frombuffer(bytes(buf), dtype=dt).reshape(shape, order=order).copy()


def _dtype_class_factory(cls: type) -> Callable[[], np.dtype]:
    def make(*args: Any) -> np.dtype:
        if args:
            raise pickle.UnpicklingError("numpy dtype class called with arguments")
        return numeric_dtype(cls())

    return make


def numpy_allowlist() -> dict[tuple[str, str], Any]:
    """``(module, name) -> safe stand-in`` under both numpy-1 and numpy-2 module names."""
    allow: dict[tuple[str, str], Any] = {("numpy", "dtype"): safe_dtype, ("numpy", "ndarray"): NDARRAY}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allow[(mod, "_reconstruct")] = safe_reconstruct
        allow[(mod, "scalar")] = safe_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allow[(mod, "_frombuffer")] = safe_frombuffer
    # numpy >= 1.25 may name dtype classes (numpy.dtypes.Float32DType) in pickles: numeric ones only.
    dtypes_mod = getattr(np, "dtypes", None)
    for name in dir(dtypes_mod) if dtypes_mod is not None else ():
        cls = getattr(dtypes_mod, name)
        if not (name.endswith("DType") and isinstance(cls, type) and issubclass(cls, np.dtype)):
            continue
        try:
            numeric_dtype(cls())
        except Exception:  # noqa: BLE001 - non-numeric or parametric dtype classes stay off the list
            continue
        allow[("numpy.dtypes", name)] = _dtype_class_factory(cls)
    return allow
