"""Every global the restricted loaders allow, abused by a hostile pickle the test builds: each file is
refused (or read as harmless data) with one CheckpointError line, fast, never a traceback or a crash.

The numpy entries and tensor rebuilds have their own deeper tests in test_hostile_loaders.py; this
file walks the rest of the allowlist so that widening it without a hostile test shows up here.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

import checkpoint_factories as cf
from nada_core.errors import CheckpointError
from nada_core.formats.checkpoints import load_generator
from nada_core.formats.safe_unpickle import _base_allowlist, torch_allowlist


def _long(v: int) -> bytes:
    b = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(b)]) + b


def _call(module: str, name: str, *args: bytes) -> cf.Op:
    op = cf.Op().glob(module, name).mark()
    for a in args:
        op.raw(a)
    return op.tuple().reduce()


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v)


def _text(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _bytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


EMPTY_DICT, EMPTY_LIST, APPEND, SETITEM, BUILD = b"}", b"]", b"a", b"s", b"b"

# name -> (pickle bytes, the allowlisted global it abuses)
CASES: dict[str, tuple[bytes, tuple[str, str]]] = {
    "set_of_unhashable": (_call("builtins", "set", EMPTY_LIST + EMPTY_LIST + _int(1) + APPEND + APPEND).done(),
                          ("builtins", "set")),
    "frozenset_of_an_int": (_call("builtins", "frozenset", _int(123)).done(), ("builtins", "frozenset")),
    "codecs_other_codec": (_call("_codecs", "encode", _text("eJzLSM3JyQcABiwCFQ=="), _text("base64")).done(),
                           ("_codecs", "encode")),
    "codecs_not_text": (_call("_codecs", "encode", _int(5), _text("latin1")).done(), ("_codecs", "encode")),
    "ordereddict_build_non_text_keys": (_call("collections", "OrderedDict").raw(
        EMPTY_DICT + _int(1) + _int(2) + SETITEM + BUILD).done(), ("collections", "OrderedDict")),
    "ordereddict_called_with_junk": (_call("collections", "OrderedDict", _int(7)).done(),
                                     ("collections", "OrderedDict")),
    "parameter_of_an_int": (_call("torch._utils", "_rebuild_parameter", _int(1), b"\x88", b"N").done(),
                            ("torch._utils", "_rebuild_parameter")),
    "tensor_of_an_int_storage": (_call("torch._utils", "_rebuild_tensor_v2", _int(1), _int(0),
                                       b"(" + _int(2) + b"t", b"(" + _int(1) + b"t", b"\x89", b"N").done(),
                                 ("torch._utils", "_rebuild_tensor_v2")),
    "torch_dtype_called": (_call("torch", "float32", _int(10**9)).done(), ("torch", "float32")),
    "torch_dtype_built": (cf.Op().glob("torch", "float32").raw(EMPTY_DICT + _text("x") + _int(1) + SETITEM + BUILD)
                          .done(), ("torch", "float32")),
}

PKL_ONLY: dict[str, tuple[bytes, tuple[str, str]]] = {  # .pt files may not name these at all
    "storage_from_garbage_bytes": (_call("torch.storage", "_load_from_bytes", _bytes(b"\x80\x02garbage")).done(),
                                   ("torch.storage", "_load_from_bytes")),
    "storage_from_an_int": (_call("torch.storage", "_load_from_bytes", _int(3)).done(),
                            ("torch.storage", "_load_from_bytes")),
    "persistent_obj_not_a_dict": (_call("torch_utils.persistence", "_reconstruct_persistent_obj", _int(1)).done(),
                                  ("torch_utils.persistence", "_reconstruct_persistent_obj")),
    "persistent_obj_list_state": (_call("torch_utils.persistence", "_reconstruct_persistent_obj",
                                        EMPTY_DICT + _text("state") + EMPTY_LIST + SETITEM).done(),
                                  ("torch_utils.persistence", "_reconstruct_persistent_obj")),
    "easydict_called_with_junk": (_call("dnnlib", "EasyDict", _int(9)).done(), ("dnnlib", "EasyDict")),
    "easydict_build_with_a_list": (_call("dnnlib.util", "EasyDict").raw(EMPTY_LIST + BUILD).done(),
                                   ("dnnlib.util", "EasyDict")),
    "tf_network_build_with_an_int": (_call("dnnlib.tflib.network", "Network").raw(_int(4) + BUILD).done(),
                                     ("dnnlib.tflib.network", "Network")),
}

PT_ONLY: dict[str, tuple[bytes, tuple[str, str]]] = {
    "namespace_build_with_a_list": (_call("argparse", "Namespace").raw(EMPTY_LIST + BUILD).done(),
                                    ("argparse", "Namespace")),
    "storage_type_called": (_call("torch", "FloatStorage", _long(10**12)).done(), ("torch", "FloatStorage")),
    "storage_type_built": (cf.Op().glob("torch", "FloatStorage").raw(EMPTY_DICT + BUILD).done(),
                           ("torch", "FloatStorage")),
    "size_of_text": (_call("torch", "Size", b"(" + _text("big") + b"t").done(), ("torch", "Size")),
}


def _write(tmp_path: Path, name: str, data: bytes, layout: str) -> Path:
    if layout == "pt":
        return cf.write_pt_zip(tmp_path / f"{name}.pt", data)
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    return path


def _params():
    for name, (data, _) in CASES.items():
        for layout in ("pkl", "pt"):
            yield pytest.param(name, data, layout, id=f"{name}-{layout}")
    for name, (data, _) in PKL_ONLY.items():
        yield pytest.param(name, data, "pkl", id=f"{name}-pkl")
    for name, (data, _) in PT_ONLY.items():
        yield pytest.param(name, data, "pt", id=f"{name}-pt")


@pytest.mark.parametrize("name, data, layout", list(_params()))
def test_each_allowed_global_abused_ends_in_one_line(tmp_path, name, data, layout):
    path = _write(tmp_path, name, data, layout)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert "\n" not in msg and path.name in msg, msg


def test_every_allowed_global_has_a_hostile_case():
    """A global added to an allowlist without a hostile case here (or in test_hostile_loaders.py) fails."""
    covered = {g for table in (CASES, PKL_ONLY, PT_ONLY) for _, g in table.values()}
    deeper = {("torch._utils", n) for n in ("_rebuild_tensor", "_rebuild_tensor_v3", "_rebuild_parameter_with_state")}
    for name in ("float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
        deeper.add(("torch", name))  # the same inert dtype objects as torch.float32
    for name in ("DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage", "IntStorage", "ShortStorage",
                 "CharStorage", "ByteStorage", "BoolStorage"):
        deeper.add(("torch", name))  # the same StorageType stand-in as torch.FloatStorage
    deeper |= {("__builtin__", "set"), ("__builtin__", "frozenset")}  # same callables as builtins'
    allowed = set(_base_allowlist()) | set(torch_allowlist())
    numpy_entries = {g for g in allowed if g[0].startswith("numpy")}  # test_hostile_loaders.py: NUMPY_CASES
    missing = sorted(allowed - covered - deeper - numpy_entries)
    assert missing == [], f"allowed globals without a hostile test: {missing}"
