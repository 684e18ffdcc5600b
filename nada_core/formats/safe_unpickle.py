"""Reading pickled checkpoints without running anything from the file.

A pickle is a small program: every ``GLOBAL`` it names is imported and may be called. Files
from the internet (``.pkl`` snapshots of NVIDIA's stylegan2-ada-pytorch, ``.pt`` files of
rosinality's stylegan2-pytorch) are therefore read in two guarded ways:

- :func:`load_restricted_pickle` (NVIDIA ``.pkl``): a :class:`pickle.Unpickler` whose
  ``find_class`` resolves only an explicit allowlist of *our own* safe callables (tensor rebuild
  functions, a weights-only storage loader, ``OrderedDict``, numpy array/scalar/dtype
  reconstruction under both the numpy-1 ``numpy.core`` and numpy-2 ``numpy._core`` names) and
  inert stand-ins for NVIDIA's classes: ``torch_utils.persistence._reconstruct_persistent_obj``
  becomes a :class:`PersistentStub` holding the pickled ``class_name``, ``init_kwargs`` and
  state; the embedded ``module_src`` is kept as text and never executed. Anything else raises
  :class:`~nada_core.errors.UnsafeCheckpointError` before it can be imported or called.
- :func:`torch_load_weights_only` (``.pt``): ``torch.load(weights_only=True)`` plus a narrow set
  of extra safe globals (``argparse.Namespace``, numpy scalars and dtypes), with torch's errors
  translated into one-line :class:`~nada_core.errors.CheckpointError` messages.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

from ..errors import CheckpointError, UnsafeCheckpointError, short_reason

#: Characters of a library's error quoted in our messages (checkpoint messages are long already).
_REASON_LIMIT = 160

# ----------------------------------------------------------------------------------------------
# Inert stand-ins for NVIDIA's pickled classes
# ----------------------------------------------------------------------------------------------


class AttrDict(dict):
    """Stand-in for ``dnnlib.EasyDict``: a plain dict (attribute access for convenience)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:
        # EasyDict pickles carry no instance state; accept (and drop) whatever a file says.
        pass


class PersistentStub:
    """What ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` returns here.

    NVIDIA pickles each network class together with the source code of its module and re-runs
    that code on load. We keep only data: ``class_name`` (e.g. ``"Generator"``), ``state`` (the
    pickled ``__dict__`` of the torch module: ``_parameters``, ``_buffers``, ``_modules``,
    ``_init_kwargs``, ...) and ``module_src`` as an opaque string for format detection.
    """

    __slots__ = ("class_name", "module_src", "version", "state")

    def __init__(self, class_name: str, module_src: str, version: Any, state: dict) -> None:
        self.class_name = class_name
        self.module_src = module_src
        self.version = version
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.class_name}>"

    # Module-tree helpers --------------------------------------------------------------------
    @property
    def init_kwargs(self) -> dict:
        kw = self.state.get("_init_kwargs") or {}
        return dict(kw) if isinstance(kw, dict) else {}

    @property
    def init_args(self) -> tuple:
        args = self.state.get("_init_args") or ()
        return tuple(args) if isinstance(args, (tuple, list)) else ()

    def children(self) -> dict[str, "PersistentStub"]:
        mods = self.state.get("_modules") or {}
        return {k: v for k, v in mods.items() if isinstance(v, PersistentStub)} if isinstance(mods, dict) else {}

    def child(self, name: str) -> "PersistentStub | None":
        return self.children().get(name)

    def tensors(self, prefix: str = "") -> dict[str, Any]:
        """Flat ``{dotted name: tensor}`` of parameters and persistent buffers, like ``state_dict()``."""
        import torch

        out: dict[str, Any] = {}
        params = self.state.get("_parameters") or {}
        buffers = self.state.get("_buffers") or {}
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for src, names_to_skip in ((params, ()), (buffers, skip)):
            if not isinstance(src, dict):
                continue
            for name, t in src.items():
                if isinstance(t, torch.Tensor) and name not in names_to_skip:
                    out[prefix + name] = t
        for name, child in self.children().items():
            out.update(child.tensors(f"{prefix}{name}."))
        return out

    def walk(self, prefix: str = ""):
        """Yield ``(dotted name, stub)`` for this stub and every sub-module stub."""
        yield prefix.rstrip("."), self
        for name, child in self.children().items():
            yield from child.walk(f"{prefix}{name}.")


class TFNetworkStub(AttrDict):
    """Stand-in for ``dnnlib.tflib.network.Network`` (TensorFlow-era StyleGAN2 pickles)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


# ----------------------------------------------------------------------------------------------
# Safe replacements for the callables a pickle may name
# ----------------------------------------------------------------------------------------------


def _reconstruct_persistent_obj(meta: Any) -> PersistentStub:
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("persistent object metadata is not a dict")
    state = meta.get("state")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError(f"persistent object {meta.get('class_name')!r} has a non-dict state")
    src = meta.get("module_src")
    return PersistentStub(str(meta.get("class_name", "?")), src if isinstance(src, str) else "",
                          meta.get("version"), state)


def _safe_load_storage_from_bytes(b: Any):
    """``torch.storage._load_from_bytes`` done safely: the bytes are a tiny ``torch.save`` of one
    storage, read with torch's weights-only unpickler and mapped to CPU."""
    import torch

    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    try:
        return torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _GLOBAL_RE.search(str(err)) or _REDUCE_RE.search(str(err))
        if found is not None:
            raise _InnerRefusal(found.group(1)) from None
        raise


class _InnerRefusal(Exception):
    """A tensor payload nested inside a pickle named a forbidden global."""


def _check_storage(storage: Any) -> None:
    import torch

    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"tensor rebuilt from a {type(storage).__name__}, not a torch storage")


def _safe_rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2`` without hooks: ``(storage, offset, size, stride, ...)``."""
    import torch

    _check_storage(storage)
    if isinstance(storage, torch.UntypedStorage):  # pragma: no cover - not produced by plain pickles
        raise pickle.UnpicklingError("untyped storage without dtype")
    with warnings.catch_warnings():  # TypedStorage access warns on every call in torch 2.x
        warnings.simplefilter("ignore", UserWarning)
        dtype, untyped = storage.dtype, storage._untyped_storage
    t = torch.empty((0,), dtype=dtype, device=untyped.device)
    return t.set_(untyped, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _safe_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                            metadata=None):
    import torch

    _check_storage(storage)
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("tensor dtype is not a torch dtype")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        untyped = storage if isinstance(storage, torch.UntypedStorage) else storage._untyped_storage
    t = torch.empty((0,), dtype=dtype, device=untyped.device)
    return t.set_(untyped, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _safe_rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """``torch._utils._rebuild_parameter[_with_state]``: we only need the values."""
    import torch

    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return data.detach()


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``latin1`` text -> bytes)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return obj.encode(encoding, errors)


def _numpy_allowlist() -> dict[tuple[str, str], Callable]:
    """numpy reconstruction functions under both numpy-1 and numpy-2 module names."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray as ma

    def _reconstruct(subtype, shape, dtype):
        if subtype is not np.ndarray:
            raise pickle.UnpicklingError("only plain numpy arrays can be rebuilt")
        return ma._reconstruct(np.ndarray, shape, dtype)

    def _frombuffer(buf, dtype, shape, order):
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("numpy buffer with a non-numeric dtype")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)

    allow: dict[tuple[str, str], Callable] = {
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allow[(mod, "_reconstruct")] = _reconstruct
        allow[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allow[(mod, "_frombuffer")] = _frombuffer
    # numpy >= 1.25 may name dtype classes (numpy.dtypes.Float32DType) in pickles.
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        for name in dir(dtypes_mod):
            obj = getattr(dtypes_mod, name)
            if name.endswith("DType") and isinstance(obj, type) and issubclass(obj, np.dtype):
                allow[("numpy.dtypes", name)] = obj
    return allow


def _base_allowlist() -> dict[tuple[str, str], Callable]:
    allow: dict[tuple[str, str], Callable] = {
        ("torch._utils", "_rebuild_tensor_v2"): _safe_rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _safe_rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v3"): _safe_rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _safe_rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _safe_rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _safe_load_storage_from_bytes,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("_codecs", "encode"): _safe_codecs_encode,
        ("dnnlib.util", "EasyDict"): AttrDict,
        ("dnnlib", "EasyDict"): AttrDict,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.tflib.network", "Network"): TFNetworkStub,
    }
    allow.update(_numpy_allowlist())
    import torch

    for dt in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
        allow[("torch", dt)] = getattr(torch, dt)
    return allow


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allowlisted globals to safe local callables.

    Every other ``module.name`` raises :class:`UnsafeCheckpointError` (naming the file and the
    global) before anything is imported. Persistent ids (used only by ``torch.save``) are refused.
    """

    def __init__(self, file, source: str, allowlist: dict[tuple[str, str], Callable] | None = None) -> None:
        super().__init__(file)
        self._source = source
        self._allow = _base_allowlist() if allowlist is None else allowlist

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allow[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(
                f"{self._source}: refused to load: the pickle asks for '{module}.{name}', which is not on "
                f"the allowlist of plain weight data; nothing from the file was run"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")


def load_restricted_pickle(path: str | os.PathLike, source: str | None = None) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`.

    Raises :class:`UnsafeCheckpointError` for a forbidden global and :class:`CheckpointError`
    for a truncated or corrupt stream (one line, naming the file).
    """
    src = source or str(path)
    with open(path, "rb") as fh, warnings.catch_warnings():
        # Storages inside NVIDIA pickles are TypedStorage objects; torch warns on each access.
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
        try:
            return RestrictedUnpickler(fh, src).load()
        except CheckpointError:
            raise
        except _InnerRefusal as err:
            raise UnsafeCheckpointError(
                f"{src}: refused to load: a tensor payload in the pickle asks for '{err}', which is not on "
                f"the allowlist of plain weight data; nothing from the file was run"
            ) from None
        except (EOFError, pickle.UnpicklingError) as err:
            raise CheckpointError(f"{src}: the pickle is truncated or corrupt "
                                  f"({short_reason(err, _REASON_LIMIT)})") from None
        except MemoryError:
            raise CheckpointError(f"{src}: the pickle is corrupt (asks for an impossible amount of memory)") from None
        except Exception as err:  # noqa: BLE001 - any failure inside a hostile stream is a bad file
            raise CheckpointError(f"{src}: the pickle could not be read "
                                  f"({type(err).__name__}: {short_reason(err, _REASON_LIMIT)})") from None


# ----------------------------------------------------------------------------------------------
# torch.load(weights_only=True) with a narrow set of extra safe globals
# ----------------------------------------------------------------------------------------------


def _torch_safe_globals() -> list:
    """``argparse.Namespace`` (rosinality stores its CLI args) and numpy scalars/dtypes/arrays."""
    import numpy as np

    try:
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core import multiarray as ma
    items: list = [argparse.Namespace, np.dtype, np.ndarray]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        items.append((ma.scalar, f"{mod}.scalar"))
        items.append((ma._reconstruct, f"{mod}._reconstruct"))
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        for name in dir(dtypes_mod):
            obj = getattr(dtypes_mod, name)
            if name.endswith("DType") and isinstance(obj, type) and issubclass(obj, np.dtype):
                items.append(obj)
    return items


_GLOBAL_RE = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")
_REDUCE_RE = re.compile(r"(?:call reduce for unrecognized function|Unsupported class) (.+?)(?: which belongs|$)", re.M)


def torch_load_weights_only(path: str | os.PathLike, source: str | None = None) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with our extra safe globals.

    Forbidden globals become :class:`UnsafeCheckpointError` naming the file and the global;
    truncated/corrupt archives become :class:`CheckpointError`.
    """
    import torch

    src = source or str(path)
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:  # pragma: no cover - torch < 2.5
        raise CheckpointError(f"{src}: reading .pt checkpoints safely needs PyTorch 2.5 or newer "
                              f"(found {torch.__version__}); please upgrade torch")
    try:
        with safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        found = _GLOBAL_RE.search(msg) or _REDUCE_RE.search(msg)
        name = found.group(1) if found else None
        if name is None and ("new object" in msg or "Can only build" in msg):
            name = _first_unknown_global(path)
        if name is None:
            raise CheckpointError(f"{src}: the PyTorch checkpoint is corrupt, or holds Python objects other than "
                                  f"plain weights; it was not loaded "
                                  f"({short_reason(_torch_reason(msg), _REASON_LIMIT)})") from None
        raise UnsafeCheckpointError(
            f"{src}: refused to load: the checkpoint asks for '{name}', which is not on the allowlist of "
            f"plain weight data; nothing from the file was run"
        ) from None
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - torch's pure-Python unpickler fails in many ways on bad bytes
        raise CheckpointError(f"{src}: the PyTorch checkpoint is truncated or corrupt "
                              f"({type(err).__name__}: {short_reason(err, _REASON_LIMIT)})") from None


def _torch_reason(msg: str) -> str:
    """The part of torch's long weights-only error message that says what went wrong."""
    _, sep, rest = msg.partition("WeightsUnpickler error:")
    if sep:
        for line in rest.splitlines():
            if line.strip():
                return line.strip()
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip() and "weights_only" not in ln]
    return lines[0] if lines else msg


def _first_unknown_global(path: str | os.PathLike) -> str | None:
    """Best-effort scan of a torch checkpoint's pickle for the first global torch would refuse."""
    try:
        data = _main_pickle_bytes(Path(path))
        for module, name in scan_globals(data):
            full = f"{module}.{name}"
            if not (full.startswith("torch.") or full.startswith("collections.OrderedDict")
                    or full == "argparse.Namespace" or full.startswith("numpy")):
                return full
    except Exception:  # noqa: BLE001 - only used to improve an error message
        return None
    return None


def _main_pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            return zf.read(name)
    return path.read_bytes()


def scan_globals(data: bytes, max_pickles: int = 4) -> list[tuple[str, str]]:
    """``(module, name)`` of every global a pickle stream names, without unpickling it.

    Handles ``GLOBAL`` and ``STACK_GLOBAL`` (tracking memoised strings); scans up to
    ``max_pickles`` concatenated pickles (torch's legacy format stores several).
    """
    import pickletools

    found: list[tuple[str, str]] = []
    stream = io.BytesIO(data)
    for _ in range(max_pickles):
        if stream.tell() >= len(data):
            break
        memo: dict[int, Any] = {}
        recent: list[Any] = []
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    found.append((module, name))
                    recent.append(None)
                elif op.name == "STACK_GLOBAL" and len(recent) >= 2:
                    found.append((str(recent[-2]), str(recent[-1])))
                    recent.append(None)
                elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    recent.append(arg)
                elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = recent[-1] if recent else None
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif op.name in ("BINGET", "LONG_BINGET", "GET"):
                    recent.append(memo.get(int(arg)))
                elif op.name == "STOP":
                    break
                else:
                    recent.append(None)
                del recent[:-4]
        except Exception:  # noqa: BLE001 - the rest of a legacy file is raw tensor data
            break
    return found
