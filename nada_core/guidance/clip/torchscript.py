"""OpenAI's TorchScript CLIP archives (e.g. ``ViT-B-32.pt``): their tensors, without running any code.

``data.pkl`` is read with a restricted unpickler that rebuilds tensors from the archive's ``data/``
entries and swaps ``__torch__.*`` module classes for inert stubs; anything else is refused.
"""

from __future__ import annotations

import os
import re
import zipfile
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


def _passthrough(value, *_ignored):
    return value


class _TorchScriptAllowlist(dict):
    """The ``.pt`` allowlist plus TorchScript's list builders; ``__torch__.*`` classes become
    inert :class:`_ScriptObjectStub` subclasses made on demand (one per qualified name)."""

    def __missing__(self, key: tuple[str, str]) -> Any:
        module, name = key
        if not (isinstance(module, str) and module.startswith("__torch__")):
            raise KeyError(key)
        stub = type(str(name), (_ScriptObjectStub,), {"_qualname": f"{module}.{name}"})
        self[key] = stub
        return stub


def _allowlist() -> _TorchScriptAllowlist:
    from ...formats.safe_unpickle import torch_allowlist

    allow = _TorchScriptAllowlist(torch_allowlist())
    for name in ("restore_type_tag", "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist",
                 "build_complexlist"):
        allow[("torch.jit._pickle", name)] = _passthrough
    return allow


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
    # One restricted unpickler for every format (formats/safe_unpickle): tensor extents checked,
    # numpy values rebuilt safely, BUILD only on inert stubs, archive sizes checked before inflating.
    from ...errors import CheckpointError, UnsafeCheckpointError
    from ...formats.torch_archive import load_zip

    try:
        root_obj = load_zip(path, str(path), _allowlist(), buildable=(_ScriptObjectStub,))
    except UnsafeCheckpointError as err:
        found = re.search(r"asks for '([^']+)'", str(err))
        raise ClipError(f"refused to load {path}: its data.pkl asks for {found.group(1) if found else '?'}, which "
                        f"a CLIP checkpoint never needs; nothing was executed") from None
    except CheckpointError as err:
        raise ClipError(f"cannot read {path}: {short_reason(str(err).replace(str(path) + ': ', ''))}") from None
    except Exception as err:  # noqa: BLE001 - any failure inside a hostile archive is a bad file
        raise ClipError(f"cannot read {path}: data.pkl is damaged ({short_reason(err)}); "
                        f"download it again") from None
    sd: dict[str, torch.Tensor] = {}
    _collect_tensors(root_obj, "", sd, set())
    return sd


def _collect_tensors(obj: Any, prefix: str, out: dict, seen: set) -> None:
    """Every tensor in the module tree under its dotted name; iterative, each object once
    (a hostile archive may nest modules arbitrarily deep or make them contain themselves)."""
    stack = [(obj, prefix)]
    while stack:
        node, pre = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        state = node._state if isinstance(node, _ScriptObjectStub) else node if isinstance(node, dict) else None
        if state is None:
            continue
        children = []
        for key, value in state.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, torch.Tensor):
                out.setdefault(pre + key, value)
            elif isinstance(value, (_ScriptObjectStub, dict)):
                children.append((value, f"{pre}{key}."))
        stack.extend(reversed(children))
