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
- :func:`torch_load_weights_only` (``.pt``): the same unpickler with a ``.pt`` allowlist
  (``argparse.Namespace``, ``torch.Size``, storage types) and a persistent-load hook serving the
  file's storages (:mod:`nada_core.formats.torch_archive`); ``torch.load`` is never called.

The unpickler is the pure-Python one so that BUILD (``__setstate__``) can be restricted: only
our stand-ins, numpy placeholders (:mod:`nada_core.formats.safe_numpy`), ``OrderedDict`` and
``argparse.Namespace`` instances may be built; a BUILD on a tensor (``Tensor.set_``), a function
or a dtype is refused. Every rebuilt tensor must fit inside its storage
(:func:`~nada_core.formats.limits.check_tensor_extent`).
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
from typing import Any, Callable

from ..errors import CheckpointError, UnsafeCheckpointError, short_reason
from . import safe_numpy
from .limits import check_tensor_extent

MAX_MODULE_DEPTH = 64
MAX_MODULES = 100_000
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
        for name, stub in self.walk():
            params = stub.state.get("_parameters") or {}
            buffers = stub.state.get("_buffers") or {}
            skip = stub.state.get("_non_persistent_buffers_set") or set()
            skip = skip if isinstance(skip, (set, frozenset)) else set()
            for src, names_to_skip in ((params, ()), (buffers, skip)):
                if not isinstance(src, dict):
                    continue
                for key, t in src.items():
                    if isinstance(t, torch.Tensor) and isinstance(key, str) and key not in names_to_skip:
                        out[f"{prefix}{name}.{key}" if name else prefix + key] = t
        return out

    def walk(self, prefix: str = ""):
        """Yield ``(dotted name, stub)`` for this stub and every sub-module stub.

        Iterative, each stub once: a hostile pickle can make a module contain itself.
        """
        seen: set[int] = set()
        stack = [(prefix.rstrip("."), self, 0)]
        while stack:
            name, stub, depth = stack.pop()
            if id(stub) in seen:  # a cycle or a shared sub-module: visit once
                continue
            if depth > MAX_MODULE_DEPTH or len(seen) >= MAX_MODULES:
                raise ValueError("the pickled module tree is deeper or larger than any generator")
            seen.add(id(stub))
            yield name, stub
            kids = list(stub.children().items())
            for key, child in reversed(kids):
                stack.append((f"{name}.{key}" if name else str(key), child, depth + 1))


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
    """``torch.storage._load_from_bytes`` done safely: the bytes are a tiny legacy ``torch.save``
    of one storage, read with our own restricted reader (never ``torch.load``)."""
    import torch

    from .torch_archive import load_legacy

    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage payload is not bytes")
    try:
        result = load_legacy(io.BytesIO(bytes(b)), "(nested storage)", torch_allowlist(), len(b))
    except UnsafeCheckpointError as err:
        found = re.search(r"asks for '([^']+)'", str(err))
        raise _InnerRefusal(found.group(1) if found else "?") from None
    if not isinstance(result, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("storage payload does not hold a storage")
    return result


class _InnerRefusal(Exception):
    """A tensor payload nested inside a pickle named a forbidden global."""


def _untyped_of(storage: Any):
    import torch

    if isinstance(storage, torch.UntypedStorage):
        return storage
    if isinstance(storage, torch.storage.TypedStorage):
        with warnings.catch_warnings():  # TypedStorage access warns on every call in torch 2.x
            warnings.simplefilter("ignore", UserWarning)
            return storage._untyped_storage
    raise pickle.UnpicklingError(f"tensor rebuilt from a {type(storage).__name__}, not a torch storage")


def _tensor_on(untyped, dtype, storage_offset, size, stride):
    """A tensor viewing ``untyped`` as ``dtype``, refused when the view reaches past the storage
    (``Tensor.set_`` would grow it with uninitialised memory) or has non-positive strides."""
    import torch

    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("tensor dtype is not a torch dtype")
    itemsize = torch.empty((), dtype=dtype).element_size()
    offset, size_t, stride_t = check_tensor_extent(untyped.nbytes() // itemsize, storage_offset, size, stride)
    t = torch.empty((0,), dtype=dtype, device=untyped.device)
    return t.set_(untyped, offset, size_t, stride_t)


def _safe_rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor_v2`` without hooks: ``(storage, offset, size, stride, ...)``."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("tensor rebuilt from something other than a typed torch storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dtype = storage.dtype
    return _tensor_on(_untyped_of(storage), dtype, storage_offset, size, stride)


def _safe_rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                            metadata=None):
    return _tensor_on(_untyped_of(storage), dtype, storage_offset, size, stride)


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
    allow.update(safe_numpy.numpy_allowlist())
    import torch

    for dt in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
        allow[("torch", dt)] = getattr(torch, dt)
    return allow


def torch_allowlist() -> dict[tuple[str, str], Any]:
    """Globals a ``torch.save`` checkpoint may name: tensor rebuilds, storage types, containers,
    ``argparse.Namespace`` (rosinality's args), ``torch.Size`` and safe numpy values."""
    import torch

    from .torch_archive import storage_type_allowlist

    allow: dict[tuple[str, str], Any] = {k: v for k, v in _base_allowlist().items()
                                         if k[0] in ("torch._utils", "collections", "builtins", "_codecs", "torch")
                                         or k[0].startswith("numpy")}
    allow.update(storage_type_allowlist())
    allow[("argparse", "Namespace")] = argparse.Namespace
    allow[("torch", "Size")] = torch.Size
    return allow


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python ``pickle`` unpickler that resolves only allowlisted globals to safe local callables.

    Every other ``module.name`` raises :class:`UnsafeCheckpointError` (naming the file and the
    global) before anything is imported. BUILD is limited to the types in :meth:`_build` (the C
    unpickler cannot restrict it). Persistent ids go to ``persistent_load`` (a ``.pt`` storage
    hook) and are refused without one.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str, allowlist: dict[tuple[str, str], Any] | None = None,
                 persistent_load: Callable[[Any], Any] | None = None, buildable: tuple[type, ...] = ()) -> None:
        """``allowlist`` may be a dict subclass whose ``__missing__`` makes stand-ins on demand
        (TorchScript's ``__torch__.*`` classes); ``buildable``: further inert types whose own
        ``__setstate__`` may take a BUILD."""
        super().__init__(file)
        self._source = source
        self._allow = _base_allowlist() if allowlist is None else allowlist
        self._persistent = persistent_load
        self._buildable = (AttrDict, TFNetworkStub) + tuple(buildable)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allow[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(
                f"{self._source}: refused to load: the pickle asks for '{module}.{name}', which is not on "
                f"the allowlist of plain weight data; nothing from the file was run"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id in a plain pickle")
        return self._persistent(pid)

    def _build(self) -> None:
        import numpy as np

        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, safe_numpy.LoadedArray):
            safe_numpy.build_array(inst, state)
        elif isinstance(inst, np.dtype):
            safe_numpy.check_dtype_state(inst, state)  # never numpy's C __setstate__
        elif isinstance(inst, self._buildable) and not isinstance(inst, type):
            inst.__setstate__(state)
        elif type(inst) in (collections.OrderedDict, argparse.Namespace):
            if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
                state = state[0]
            if state is None:
                return
            if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
                raise pickle.UnpicklingError(f"unexpected state for a {type(inst).__name__}")
            inst.__dict__.update(state)
        else:
            raise pickle.UnpicklingError(f"the pickle modifies a {type(inst).__name__} after creating it "
                                         f"(only plain data may be rebuilt)")

    dispatch[pickle.BUILD[0]] = _build


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
            raise CheckpointError(f"{src}: the pickle is truncated, corrupt or crafted "
                                  f"({short_reason(err, _REASON_LIMIT)}); it was not loaded, get the file again "
                                  f"from its original source") from None
        except MemoryError:
            raise CheckpointError(f"{src}: the pickle is corrupt (asks for an impossible amount of memory)") from None
        except Exception as err:  # noqa: BLE001 - any failure inside a hostile stream is a bad file
            raise CheckpointError(f"{src}: the pickle could not be read "
                                  f"({type(err).__name__}: {short_reason(err, _REASON_LIMIT)})") from None


# ----------------------------------------------------------------------------------------------
# torch.save files, read by the same restricted unpickler
# ----------------------------------------------------------------------------------------------


def torch_load_weights_only(path: str | os.PathLike, source: str | None = None) -> Any:
    """What ``torch.load(path, map_location="cpu", weights_only=True)`` returns, read by our own
    restricted unpickler (:mod:`nada_core.formats.torch_archive`); ``torch.load`` is never called.

    Forbidden globals become :class:`UnsafeCheckpointError` naming the file and the global;
    truncated/corrupt archives become :class:`CheckpointError`.
    """
    from .torch_archive import load_legacy, load_zip

    src = source or str(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
        try:
            if zipfile.is_zipfile(path):
                return load_zip(path, src, torch_allowlist())
            with open(path, "rb") as fh:
                return load_legacy(fh, src, torch_allowlist(), os.path.getsize(path))
        except CheckpointError:
            raise
        except _InnerRefusal as err:  # pragma: no cover - .pt storages are not nested pickles
            raise UnsafeCheckpointError(f"{src}: refused to load: the checkpoint asks for '{err}'; "
                                        f"nothing from the file was run") from None
        except MemoryError:
            raise CheckpointError(f"{src}: the PyTorch checkpoint is corrupt (asks for an impossible amount of "
                                  f"memory); it was not loaded") from None
        except Exception as err:  # noqa: BLE001 - any failure inside a hostile archive is a bad file
            raise CheckpointError(f"{src}: the PyTorch checkpoint is truncated or corrupt, or holds Python objects "
                                  f"other than plain weights; it was not loaded "
                                  f"({type(err).__name__}: {short_reason(err, _REASON_LIMIT)})") from None


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
