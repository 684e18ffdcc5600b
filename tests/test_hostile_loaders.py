"""Hostile checkpoint files: each is refused with one CheckpointError line, fast and small.

Every hostile input is assembled here (or by :mod:`checkpoint_factories`). Cases that could
crash the interpreter (numpy object pointers) or allocate gigabytes run in a subprocess that
reports the outcome, the wall time and the peak-RSS growth of the load alone.
"""

from __future__ import annotations

import collections
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint_factories as cf
from nada_core.errors import CheckpointError, UnsafeCheckpointError
from nada_core.formats.checkpoints import load_generator, read_metadata, save_generator
from nada_core.formats.limits import check_tensor_extent
from nada_core.formats.safe_unpickle import (PersistentStub, load_restricted_pickle, scan_globals,
                                             torch_load_weights_only)

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Loads each (mode, path) after a warm-up; prints one JSON line per file: outcome, seconds,
# growth of the peak RSS during that load (peaks only rise, so each case is measured on its own).
_RUNNER = r"""
import json, resource, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import torch
from nada_core.formats import checkpoints, safe_unpickle
from nada_core.errors import NadaError
checkpoints._expected_shapes(checkpoints.GeneratorConfig(img_resolution=8))  # warm-up (lazy imports)
fns = {"pkl": safe_unpickle.load_restricted_pickle, "pt": safe_unpickle.torch_load_weights_only,
       "generator": checkpoints.load_generator}
for line in sys.stdin:
    name, mode, path = line.rstrip("\n").split("\t")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        fns[mode](path)
        out = {"outcome": "loaded"}
    except NadaError as err:
        out = {"outcome": type(err).__name__, "message": str(err)}
    out["seconds"] = time.perf_counter() - t0
    out["extra_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    out["name"] = name
    print(json.dumps(out), flush=True)
"""

ISOLATED: dict = {}  # name -> (mode, builder(tmp_dir) -> path); filled below, run once per module


def isolated(name: str, mode: str):
    def register(builder):
        ISOLATED[name] = (mode, builder)
        return builder

    return register


@pytest.fixture(scope="module")
def isolated_results(tmp_path_factory):
    """Build every registered hostile file, load them all in ONE subprocess (a crash fails all)."""
    d = tmp_path_factory.mktemp("hostile")
    jobs = {name: (mode, Path(builder(d))) for name, (mode, builder) in ISOLATED.items()}
    stdin = "".join(f"{name}\t{mode}\t{path}\n" for name, (mode, path) in jobs.items())
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(REPO), str(TESTS)], input=stdin,
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    results = {r["name"]: r for r in map(json.loads, proc.stdout.split("\n")[:-1])}
    assert proc.returncode == 0, f"loader process died (rc={proc.returncode}) after {sorted(results)}: " \
                                 f"{proc.stderr[-2000:]}"
    return {name: (results[name], jobs[name][1]) for name in jobs}


def assert_refused(result: dict, path: Path, unsafe: bool = False) -> None:
    assert result["outcome"] in (("UnsafeCheckpointError",) if unsafe else ("CheckpointError",
                                                                              "UnsafeCheckpointError")), result
    assert "\n" not in result["message"] and str(path) in result["message"], result
    assert result["seconds"] < 1.0, result
    assert result["extra_mb"] < 200, result


def assert_one_line(err: BaseException, path: Path) -> None:
    assert "\n" not in str(err) and str(path) in str(err), str(err)


# ----------------------------------------------------------------------------------------------
# 1. numpy values that would turn bytes into object pointers
# ----------------------------------------------------------------------------------------------


def _object_array() -> bytes:
    """``_reconstruct(ndarray, (0,), b'b')`` + BUILD with an object dtype and raw 'pointer' bytes."""
    op = cf.Op().glob("numpy.core.multiarray", "_reconstruct").mark().glob("numpy", "ndarray")
    op.mark().int(0).tuple().bytes(b"b").tuple().reduce()
    op.mark().int(1).mark().int(2).tuple().dtype("O8").raw(b"\x89").bytes(b"\x41" * 16).tuple().build()
    return op.done()


def _object_scalar() -> bytes:
    op = cf.Op().glob("numpy._core.multiarray", "scalar").mark().dtype("O8").bytes(b"\x41" * 8).tuple().reduce()
    return op.done()


def _structured_frombuffer() -> bytes:
    op = cf.Op().glob("numpy._core.numeric", "_frombuffer").mark().bytes(b"\x41" * 16).dtype("V16")
    op.mark().int(1).tuple().str("C").tuple().reduce()
    return op.done()


def _dtype_mutated_after_use() -> bytes:
    """A float64 dtype is used by an array, then BUILD rewrites the dtype's state (byteorder, fields)."""
    op = cf.Op().mark().dtype("f8", memo=1)
    op.glob("numpy.core.multiarray", "_reconstruct").mark().glob("numpy", "ndarray")
    op.mark().int(0).tuple().bytes(b"b").tuple().reduce()
    op.mark().int(1).mark().int(1).tuple().get(1).raw(b"\x89").bytes(b"\0" * 8).tuple().build()
    # (3, '|', None, ('a',), {'a': (float64, 0)}, 8, 1, 0x3f): float64 turned into a structured type
    op.get(1).mark().int(3).str("|").raw(b"N").mark().str("a").tuple()
    op.raw(b"}").str("a").mark().get(1).int(0).tuple().raw(b"s")
    op.int(8).int(1).int(0x3F).tuple().build()
    op.raw(b"l")  # list of (dtype, array)
    return op.done()


def _object_dtype_class() -> bytes:
    return cf.Op().glob("numpy.dtypes", "ObjectDType").mark().tuple().reduce().done()


NUMPY_CASES = {"object_array": _object_array, "object_scalar": _object_scalar,
               "structured_frombuffer": _structured_frombuffer, "dtype_setstate": _dtype_mutated_after_use,
               "object_dtype_class": _object_dtype_class}


def _numpy_file(case: str, layout: str):
    def build(d: Path) -> Path:
        data = NUMPY_CASES[case]()
        if layout == "pt":
            return cf.write_pt_zip(d / f"np_{case}.pt", data)
        (d / f"np_{case}.pkl").write_bytes(data)
        return d / f"np_{case}.pkl"

    return build


for _case in NUMPY_CASES:
    for _layout in ("pkl", "pt"):
        isolated(f"numpy_{_case}_{_layout}", _layout)(_numpy_file(_case, _layout))


@pytest.mark.parametrize("case", sorted(NUMPY_CASES))
@pytest.mark.parametrize("layout", ["pkl", "pt"])
def test_numpy_pointer_tricks_are_refused_without_crashing(isolated_results, case, layout):
    result, path = isolated_results[f"numpy_{case}_{layout}"]
    assert_refused(result, path)
    if case == "dtype_setstate":
        assert "changes a numpy dtype" in result["message"]


def test_plain_numeric_numpy_values_still_load(tmp_path):
    """numpy-2 and numpy-1 scalars, dtypes and arrays (StyleGAN3 layer sizes) come back exactly."""
    obj = {"gain": np.float64(0.125), "i": np.int64(-3), "f32": np.float32(1.5),
           "sizes": np.array([1024, 512, 256], dtype=np.int64), "dt": np.dtype("f4"),
           "legacy_gain": cf.Numpy1Scalar(2.5), "legacy_sizes": cf.Numpy1Array(np.arange(6, dtype=np.float32).reshape(2, 3))}
    for protocol in (2, 4, 5):
        path = cf.write_pickle(tmp_path / f"np{protocol}.pkl", obj, protocol=protocol)
        got = load_restricted_pickle(path)
        assert got["gain"] == 0.125 and type(got["gain"]) is np.float64
        assert got["i"] == -3 and got["f32"] == np.float32(1.5) and got["dt"] == np.dtype("f4")
        assert np.array_equal(got["sizes"], [1024, 512, 256]) and got["sizes"].dtype == np.int64
        assert got["legacy_gain"] == 2.5
        assert np.array_equal(got["legacy_sizes"], np.arange(6, dtype=np.float32).reshape(2, 3))


# ----------------------------------------------------------------------------------------------
# 2. tensors larger than their storage
# ----------------------------------------------------------------------------------------------


class _Tensor:
    """Pickles as ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` with chosen numbers."""

    def __init__(self, storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (cf._Global("torch._utils", "_rebuild_tensor_v2"), self.args)


EXTENT_CASES = {"too_long": (0, (1000,), (1,)), "offset_past_end": (3, (2,), (1,)),
                "negative_offset": (-2, (2,), (1,)), "zero_stride": (0, (16384, 16384), (0, 0)),
                "negative_stride": (3, (4,), (-1,)), "huge": (0, (2**31, 2**31), (2**31, 1))}


def _extent_pkl(case: str):
    def build(d: Path) -> Path:
        offset, size, stride = EXTENT_CASES[case]
        storage = torch.storage.TypedStorage(wrap_storage=torch.arange(4.0).untyped_storage(), dtype=torch.float32,
                                             _internal=True)
        return cf.write_pickle(d / f"extent_{case}.pkl", {"t": _Tensor(storage, offset, size, stride)})

    return build


for _case in EXTENT_CASES:
    isolated(f"extent_{_case}_pkl", "pkl")(_extent_pkl(_case))


@pytest.mark.parametrize("case", sorted(EXTENT_CASES))
def test_tensor_views_past_their_storage_are_refused_in_pkl(isolated_results, case):
    assert_refused(*isolated_results[f"extent_{case}_pkl"])


class _PtStorage:
    """A marker the .pt writer turns into a persistent storage id."""


def _pt_with_tensor(path: Path, offset, size, stride, numel: int = 4) -> Path:
    marker = _PtStorage()

    class W(cf._Writer):
        def persistent_id(self, obj):
            if obj is marker:
                return ("storage", cf._Global("torch", "FloatStorage"), "0", "cpu", numel)
            return None

    buf = __import__("io").BytesIO()
    W(buf, protocol=2).dump({"t": _Tensor(marker, offset, size, stride)})
    return cf.write_pt_zip(path, buf.getvalue(), {"0": struct.pack("<4f", 1, 2, 3, 4)})


for _case in EXTENT_CASES:
    isolated(f"extent_{_case}_pt", "pt")(lambda d, c=_case: _pt_with_tensor(d / f"extent_{c}.pt", *EXTENT_CASES[c]))


@pytest.mark.parametrize("case", sorted(EXTENT_CASES))
def test_tensor_views_past_their_storage_are_refused_in_pt(isolated_results, case):
    assert_refused(*isolated_results[f"extent_{case}_pt"])


def test_pt_tensor_build_through_set_is_refused(isolated_results):
    assert_refused(*isolated_results["pt_build_set"])


@isolated("pt_build_set", "pt")
def _pt_build_set(tmp_path: Path) -> Path:
    """torch's own unpickler would run ``Tensor.set_(*state)`` for a BUILD on a tensor."""
    op = cf.Op().glob("torch._utils", "_rebuild_tensor_v2").mark()
    op.raw(b"(").str("storage").glob("torch", "FloatStorage").str("0").str("cpu").int(4).tuple().raw(b"Q")
    op.int(0).mark().int(1).tuple().mark().int(1).tuple().raw(b"\x89").glob("collections", "OrderedDict")
    op.mark().tuple().reduce().tuple().reduce()
    op.mark().raw(b"(").str("storage").glob("torch", "FloatStorage").str("0").str("cpu").int(4).tuple().raw(b"Q")
    op.int(0).mark().int(10**6).tuple().mark().int(1).tuple().tuple().build()
    return cf.write_pt_zip(tmp_path / "set.pt", op.done(), {"0": b"\0" * 16})


def test_pt_storage_size_must_match_its_member(tmp_path):
    path = _pt_with_tensor(tmp_path / "lying.pt", 0, (10**6,), (1,), numel=10**6)
    with pytest.raises(CheckpointError) as info:
        torch_load_weights_only(path)
    assert_one_line(info.value, path)


def test_extent_check_against_an_independent_count():
    """Valid views (incl. size-0 / size-1 dims) pass; the first element past the end fails."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        dims = int(rng.integers(1, 4))
        size = tuple(int(s) for s in rng.integers(0, 5, dims))
        stride = tuple(int(s) for s in rng.integers(1, 7, dims))
        offset = int(rng.integers(0, 5))
        if 0 in size:
            need = 0
        else:  # largest index reached, counted by brute force
            need = offset + 1 + max(sum(i * st for i, st in zip(idx, stride)) for idx in np.ndindex(*size))
        check_tensor_extent(max(need, 0), offset, size, stride)
        if need:
            with pytest.raises(Exception):
                check_tensor_extent(need - 1, offset, size, stride)
        # the real tensor agrees that ``need`` elements suffice
        if need:
            t = torch.empty(0).set_(torch.arange(float(need)).untyped_storage(), offset, size, stride)
            assert t.numel() == int(np.prod(size))


# ----------------------------------------------------------------------------------------------
# 3. small files asking for gigabytes
# ----------------------------------------------------------------------------------------------


def _small_safetensors(tmp_path: Path, arch_patch: dict, name: str) -> Path:
    from safetensors.torch import save_file

    G = load_generator(cf.write_rosinality_checkpoint(tmp_path / f"{name}_src.pt",
                                                      cf.rosinality_state_dict(8, 8, 1, seed=1),
                                                      latent_avg=torch.zeros(8)))
    path = tmp_path / f"{name}.safetensors"
    save_generator(G, path)
    meta = read_metadata(path)
    arch = {**meta["architecture"], **arch_patch}
    header = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in meta.items()}
    header["architecture"] = json.dumps(arch)
    save_file({"mapping.w_avg": torch.zeros(8)}, str(path), metadata=header)
    return path


HUGE_ARCH = {"channels": {"channels": {"4": 8192, "8": 8192}}, "mapping_layers": {"mapping_layers": 10**6},
             "z_dim": {"z_dim": 10**7}, "resolution": {"img_resolution": 2**20, "channels": {}},
             "hidden": {"mapping_hidden": 10**6}, "filter": {"resample_filter": [1] * 40}}
for _case in HUGE_ARCH:
    isolated(f"huge_{_case}", "generator")(lambda d, c=_case: _small_safetensors(d, HUGE_ARCH[c], f"huge_{c}"))


@pytest.mark.parametrize("case", sorted(HUGE_ARCH))
def test_safetensors_claiming_a_huge_architecture_is_refused_without_allocating(isolated_results, case):
    result, path = isolated_results[f"huge_{case}"]
    assert path.stat().st_size < 4096
    assert_refused(result, path)


def test_safetensors_whose_weights_do_not_match_their_architecture(tmp_path):
    path = _small_safetensors(tmp_path, {}, "partial")  # only w_avg stored
    with pytest.raises(CheckpointError, match="do not fit the architecture") as info:
        load_generator(path)
    assert_one_line(info.value, path)


def test_nvidia_zero_stride_tensors_describing_16384_channels(isolated_results):
    assert_refused(*isolated_results["nvidia_zero_stride"])


@isolated("nvidia_zero_stride", "generator")
def _nvidia_zero_stride(tmp_path: Path) -> Path:
    s = dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8)
    kwargs = cf.nvidia_generator_kwargs(**s)
    net = cf.build_nvidia_generator(cf.nvidia_generator_tensors(**s), kwargs)
    net.state["_init_kwargs"] = dict(kwargs, synthesis_kwargs=cf.FakeEasyDict(
        kwargs["synthesis_kwargs"], channel_base=16384 * 8, channel_max=16384))
    one = torch.storage.TypedStorage(wrap_storage=torch.zeros(1).untyped_storage(), dtype=torch.float32,
                                     _internal=True)

    def swap(node) -> None:  # every 8-channel dim becomes 16384, all backed by one float (stride 0)
        for group in ("_parameters", "_buffers"):
            for k, v in list(node.state[group].items()):
                if isinstance(v, torch.Tensor) and v.dim():
                    shape = tuple(16384 if d == 8 else d for d in v.shape)
                    node.state[group][k] = _Tensor(one, 0, shape, (0,) * len(shape))
        for child in node.state["_modules"].values():
            swap(child)

    swap(net)
    return cf.write_pickle(tmp_path / "zero_stride.pkl", {"G_ema": net})


def test_nvidia_kwargs_asking_for_huge_sizes(isolated_results):
    assert_refused(*isolated_results["nvidia_deep_mapping"])


@isolated("nvidia_deep_mapping", "generator")
def _nvidia_deep_mapping(tmp_path: Path) -> Path:
    s = dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8)
    kwargs = cf.nvidia_generator_kwargs(**s)
    net = cf.build_nvidia_generator(cf.nvidia_generator_tensors(**s), kwargs)
    net.state["_init_kwargs"] = dict(kwargs, mapping_kwargs=cf.FakeEasyDict(kwargs["mapping_kwargs"], num_layers=10**6))
    return cf.write_pickle(tmp_path / "deep.pkl", {"G_ema": net})


def test_deflate_bomb_is_refused_from_the_central_directory(isolated_results):
    result, path = isolated_results["deflate_bomb"]
    assert path.stat().st_size < 2 * 1024 * 1024
    assert_refused(result, path)
    assert "inflate" in result["message"]


@isolated("deflate_bomb", "pt")
def _deflate_bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", cf.Op().raw(b"}").done())
        with zf.open("archive/data/0", "w") as fh:  # 256 MiB of zeros deflate to ~250 KiB
            chunk = b"\0" * (1 << 20)
            for _ in range(256):
                fh.write(chunk)
    return path


def test_archive_declaring_more_than_4_gib_is_refused(tmp_path):
    from nada_core.formats.limits import check_archive

    path = cf.write_pt_zip(tmp_path / "big.pt", cf.Op().raw(b"}").done(), {"0": b"\0" * 64})
    with zipfile.ZipFile(path) as zf:
        check_archive(zf, str(path))  # a small honest archive passes
        zf.getinfo("archive/data/0").file_size = 5 * 1024**3
        with pytest.raises(CheckpointError, match="declares") as info:
            check_archive(zf, str(path))
    assert_one_line(info.value, path)


# ----------------------------------------------------------------------------------------------
# 4. one clear line, never a traceback
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ['[1, 2]', '"text"', '{"mapping_layers": "8"}', '{"channels": "big"}',
                                  '{"z_dim": [16]}', '{"conv_clamp": "x"}', '{"z_dim": 1e400}', '{"z_dim": true}',
                                  "[" * 5000 + "]" * 5000, "{nope"])
def test_safetensors_architecture_of_the_wrong_type(tmp_path, arch):
    from safetensors.torch import save_file

    path = _small_safetensors(tmp_path, {}, "typed")
    meta = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in read_metadata(path).items()}
    if arch.startswith("{") and not arch.startswith("{nope"):
        base = json.loads(meta["architecture"])
        base.update(json.loads(arch))
        arch = json.dumps(base)
    meta["architecture"] = arch
    save_file({"mapping.w_avg": torch.zeros(8)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line(info.value, path)


def test_deeply_nested_provenance_and_header(tmp_path):
    from safetensors.torch import save_file

    path = _small_safetensors(tmp_path, {}, "nested")
    meta = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in read_metadata(path).items()}
    meta["provenance"] = '{"a":' * 100_000 + "1" + "}" * 100_000
    save_file({"mapping.w_avg": torch.zeros(8)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError) as info:
        read_metadata(path)
    assert_one_line(info.value, path)
    # a raw header nested 100k deep (written by hand: safetensors would not)
    raw = tmp_path / "deep_header.safetensors"
    blob = b'{"__metadata__":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001
    raw.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(CheckpointError) as info:
        load_generator(raw)
    assert_one_line(info.value, raw)


def test_cyclic_nvidia_module_graph(tmp_path):
    """A PersistentStub whose ``_modules`` holds itself: walk() ends, the load is one line."""
    op = cf.Op().raw(b"}").str("G_ema")
    op.glob("torch_utils.persistence", "_reconstruct_persistent_obj")
    op.raw(b"(").raw(b"}").str("class_name").str("Generator").raw(b"s").str("state").raw(b"}").put(2)
    op.raw(b"s").tuple().reduce().put(3)
    # state['_modules'] = {'synthesis': <the stub itself>, 'mapping': <itself>}
    op.get(2).str("_modules").raw(b"}").str("synthesis").get(3).raw(b"s").str("mapping").get(3).raw(b"s")
    op.raw(b"s").raw(b"0")  # SETITEM on the state, then drop it
    op.raw(b"s")  # snapshot['G_ema'] = stub
    path = tmp_path / "cycle.pkl"
    path.write_bytes(op.done())
    stub = load_restricted_pickle(path)["G_ema"]
    assert isinstance(stub, PersistentStub) and stub.child("synthesis") is stub
    assert [name for name, _ in stub.walk()] == [""]
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line(info.value, path)


@pytest.mark.parametrize("key,value", [("img_resolution", "big"), ("z_dim", [16]), ("w_dim", 8.5),
                                       ("img_channels", None), ("c_dim", "0"), ("img_resolution", True)])
def test_wrong_typed_nvidia_kwargs(tmp_path, key, value):
    s = dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8)
    tensors, kwargs = cf.nvidia_generator_tensors(**s), cf.nvidia_generator_kwargs(**s)
    net = cf.build_nvidia_generator(tensors, kwargs)
    net.state["_init_kwargs"] = dict(kwargs, **{key: value})
    path = cf.write_pickle(tmp_path / "typed.pkl", {"G_ema": net})
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line(info.value, path)


@pytest.fixture(scope="module")
def real_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=3)
    files = {"pt": cf.write_rosinality_checkpoint(d / "r.pt", sd, latent_avg=torch.randn(8)),
             "pt_legacy": cf.write_rosinality_checkpoint(d / "rl.pt", sd, latent_avg=torch.randn(8), legacy=True)}
    s = dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8)
    nv = cf.nvidia_generator_tensors(seed=4, **s)
    files["pkl"] = cf.write_nvidia_pkl(d / "n.pkl", nv, cf.nvidia_generator_kwargs(**s))
    files["pkl_numpy1"] = cf.write_nvidia_pkl(d / "n1.pkl", nv, cf.nvidia_generator_kwargs(**s),
                                              numpy_style="numpy1", torch_era="1.7", protocol=3)
    files["safetensors"] = save_generator(load_generator(files["pt"]), d / "o.safetensors")
    return files, sd, nv


@pytest.mark.parametrize("kind", ["pt", "pt_legacy", "pkl", "pkl_numpy1", "safetensors"])
def test_truncation_sweep_always_ends_in_checkpoint_error(tmp_path, real_files, kind):
    files = real_files[0]
    data = files[kind].read_bytes()
    cuts = sorted(set(np.random.default_rng(len(data)).integers(1, len(data), 24).tolist()) |
                  {1, 8, 9, 64, len(data) // 2, len(data) - 1})
    path = tmp_path / f"cut{files[kind].suffix}"
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        assert_one_line(info.value, path)


def test_real_layouts_still_load_bit_identically(real_files):
    files, sd, nv = real_files
    for kind in ("pt", "pt_legacy"):
        ours = torch_load_weights_only(files[kind])
        theirs = torch.load(files[kind], map_location="cpu", weights_only=False)  # our own trusted file
        assert ours.keys() == theirs.keys()
        for k, v in theirs["g_ema"].items():
            assert ours["g_ema"][k].dtype == v.dtype and torch.equal(ours["g_ema"][k], v), k
        assert torch.equal(ours["latent_avg"], theirs["latent_avg"])
        assert vars(ours["args"]) == vars(theirs["args"])
    for kind in ("pkl", "pkl_numpy1"):
        got = load_restricted_pickle(files[kind])["G_ema"].tensors()
        assert got.keys() == nv.keys()
        for k, v in nv.items():
            assert torch.equal(got[k], v), k
    G = load_generator(files["safetensors"])
    ref = load_generator(files["pt"])
    for k, v in ref.state_dict().items():
        assert torch.equal(G.state_dict()[k], v), k


def test_unknown_globals_in_pt_are_still_named(tmp_path):
    path = cf.write_pt_zip(tmp_path / "evil.pt", cf.Op().glob("os", "system").mark().str("true").tuple()
                           .reduce().done())
    assert ("os", "system") in scan_globals(zipfile.ZipFile(path).read("archive/data.pkl"))
    with pytest.raises(UnsafeCheckpointError, match="'os.system'") as info:
        torch_load_weights_only(path)
    assert_one_line(info.value, path)


# ----------------------------------------------------------------------------------------------
# OpenAI TorchScript CLIP archives go through the same unpickler and archive check
# ----------------------------------------------------------------------------------------------


def _torchscript_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes], compress: bool = False) -> Path:
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        zf.writestr("ViT-B-32/data.pkl", data_pkl)
        zf.writestr("ViT-B-32/constants.pkl", b"\x80\x02).")
        zf.writestr("ViT-B-32/code/__torch__/model.py", "")
        for key, raw in storages.items():
            zf.writestr(f"ViT-B-32/data/{key}", raw)
        zf.writestr("ViT-B-32/version", "3\n")
    return path


def _script_module_with_tensor(size: tuple, stride: tuple, numel: int = 4) -> bytes:
    """``__torch__.Model`` NEWOBJ + BUILD {'w': tensor(size, stride) over a 4-float storage}."""
    op = cf.Op().glob("__torch__.model", "Model").raw(b")\x81").raw(b"}").str("w")
    op.glob("torch._utils", "_rebuild_tensor_v2").mark()
    op.raw(b"(").str("storage").glob("torch", "FloatStorage").str("0").str("cpu").int(numel).tuple().raw(b"Q")
    op.int(0).mark()
    for s in size:
        op.int(s)
    op.tuple().mark()
    for s in stride:
        op.int(s)
    op.tuple().raw(b"\x89").glob("collections", "OrderedDict").mark().tuple().reduce().tuple().reduce()
    return op.raw(b"s").build().done()


def test_torchscript_reader_uses_the_shared_unpickler(tmp_path):
    from nada_core.errors import ClipError
    from nada_core.guidance.clip.torchscript import read_torchscript_state_dict

    floats = struct.pack("<4f", 1, 2, 3, 4)
    ok = _torchscript_zip(tmp_path / "ok.pt", _script_module_with_tensor((2, 2), (2, 1)), {"0": floats})
    assert torch.equal(read_torchscript_state_dict(ok)["w"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    for name, size, stride in (("long", (1000,), (1,)), ("zero", (4096, 4096), (0, 0))):
        bad = _torchscript_zip(tmp_path / f"{name}.pt", _script_module_with_tensor(size, stride), {"0": floats})
        with pytest.raises(ClipError, match="cannot read.*(storage holds 4|zero or negative stride)") as info:
            read_torchscript_state_dict(bad)
        assert_one_line(info.value, bad)
    bomb = _torchscript_zip(tmp_path / "bomb.pt", _script_module_with_tensor((2,), (1,)),
                            {"0": floats, "1": b"\0" * (64 << 20)}, compress=True)
    with pytest.raises(ClipError, match="inflate") as info:
        read_torchscript_state_dict(bomb)
    assert_one_line(info.value, bomb)
    numpy_trick = _torchscript_zip(tmp_path / "np.pt", NUMPY_CASES["object_scalar"](), {})
    with pytest.raises(ClipError) as info:
        read_torchscript_state_dict(numpy_trick)
    assert_one_line(info.value, numpy_trick)
