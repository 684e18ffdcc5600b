"""Hostile inputs outside the checkpoint loaders and the queue: each is refused with one line, fast,
without losing what was there. Every hostile file, folder and process is built here in tmp_path."""

from __future__ import annotations

import errno
import itertools
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from factories import tiny_generator
from nada_core import atomic
from nada_core.atomic import TMP_PATTERN, WriteError, atomic_write, atomic_write_bytes, check_output, remove_stale_temps
from nada_core.cli import main
from nada_core.devices import resolve_device
from nada_core.editing.interpolate import parse_layers
from nada_core.editing.latents import Latents, latents_from_seeds, load_latents, render, save_latents
from nada_core.errors import CheckpointError, InputError
from nada_core.formats.checkpoints import save_generator
from nada_core.media.images import MAX_IMAGE_PIXELS, load_image
from nada_core.seeds import parse_seeds

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _one_line(err) -> str:
    text = str(err.value if hasattr(err, "value") else err)
    assert "\n" not in text.strip(), text
    return text


@pytest.fixture(scope="module")
def gen_file(tmp_path_factory):
    G = tiny_generator(16, seed=3)
    return save_generator(G, tmp_path_factory.mktemp("g") / "tiny.safetensors"), G


# ------------------------------------------------------------------------------ 1. outputs vs inputs


def test_output_that_is_an_input_is_refused_also_through_links(tmp_path):
    src = tmp_path / "gen.pt"
    src.write_bytes(b"weights")
    link = tmp_path / "link.png"
    link.symlink_to(src)
    hard = tmp_path / "hard.png"
    os.link(src, hard)
    for out in (src, link, hard):
        with pytest.raises(InputError, match="is the input file") as err:
            check_output(out, [src], suffixes=(".png", ".pt"))
        _one_line(err)
    assert src.read_bytes() == b"weights"
    check_output(tmp_path / "new.png", [src, None], suffixes=(".png",))  # a fresh name passes


@pytest.mark.parametrize("name, kind, words", [
    ("grid.pt", "file", r"writes \.png but the name has '\.pt'; name it grid\.png"),
    ("grid", "file", "has no extension"),
    ("adir", "file", "existing folder"),
    ("afile.png", "dir", "existing file but a folder"),
    ("afile.png/x.png", "file", "is a file, not a folder"),
    ("n" * 300 + ".png", "file", "over this file system's limit of"),
])
def test_check_output_refuses_wrong_kind_suffix_and_names(tmp_path, name, kind, words):
    (tmp_path / "adir.png").mkdir()
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile.png").write_bytes(b"x")
    target = tmp_path / ("adir.png" if name == "adir" else name)
    with pytest.raises(InputError, match=words) as err:
        check_output(target, suffixes=(".png",) if kind == "file" else None, kind=kind)
    _one_line(err)


def test_check_output_refuses_a_path_over_path_max(tmp_path):
    deep = tmp_path.joinpath(*(["d" * 200] * 25), "x.png")  # 5000+ bytes, each part legal
    with pytest.raises(InputError, match="path is over this file system's limit") as err:
        check_output(deep, suffixes=(".png",))
    _one_line(err)


@pytest.mark.skipif(IS_ROOT, reason="root can write anywhere")
def test_check_output_refuses_an_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="no permission to write"):
            check_output(ro / "sub" / "x.png", suffixes=(".png",))
    finally:
        ro.chmod(0o700)


def test_check_output_refuses_an_unwritable_folder_as_root_too(tmp_path, monkeypatch):
    # Root passes every permission check, so the refusal is exercised through os.access.
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(InputError, match=f"no permission to write in {tmp_path}") as err:
        check_output(tmp_path / "new" / "x.png", suffixes=(".png",))
    _one_line(err)


def test_sample_refuses_to_overwrite_its_generator(gen_file, tmp_path, capsys):
    path, _ = gen_file
    before = path.read_bytes()
    assert main(["sample", "--generator", str(path), "--out", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is the input file" in err
    assert path.read_bytes() == before
    same = tmp_path / "same.safetensors"
    os.link(path, same)
    assert main(["sample", "--generator", str(path), "--out", str(same), "--device", "cpu"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert main(["sample", "--generator", str(path), "--out", str(tmp_path / "g.pt"), "--device", "cpu"]) == 2
    assert "name it g.png" in capsys.readouterr().err
    assert not (tmp_path / "g.pt").exists()


def test_interpolate_refuses_latents_as_output_and_a_file_for_frames(gen_file, tmp_path, capsys):
    path, G = gen_file
    lat_file = save_latents(latents_from_seeds(G, [1, 2]), tmp_path / "lat.safetensors")
    before = lat_file.read_bytes()
    # The latents file renamed .gif by a hard link: same file, must be refused.
    gif = tmp_path / "lat.gif"
    os.link(lat_file, gif)
    assert main(["interpolate", "--generator", str(path), "--latents", str(lat_file), "--frames", "2",
                 "--out", str(gif), "--device", "cpu", "--quiet"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert lat_file.read_bytes() == before


def test_train_refuses_to_overwrite_its_source_generator(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    src = save_generator(tiny_generator(16, seed=4), out / "generator.safetensors")
    before = src.read_bytes()
    assert main(["train", "--generator", str(src), "--out", str(out), "--source", "photo", "--target", "sketch",
                 "--steps", "1", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is the input file" in err and err.count("\n") == 1
    assert src.read_bytes() == before


@pytest.mark.parametrize("command", ["train", "invert"])
def test_train_and_invert_refuse_a_file_as_their_folder(gen_file, tmp_path, capsys, command):
    path, _ = gen_file
    f = tmp_path / "out"
    f.write_text("keep me")
    extra = (["--source", "photo", "--target", "sketch", "--steps", "1"] if command == "train"
             else ["--image", str(tmp_path)])
    assert main([command, "--generator", str(path), "--out", str(f), "--device", "cpu", "--quiet", *extra]) == 2
    assert "existing file but a folder" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_demo_refuses_a_file_as_its_folder(tmp_path, capsys):
    f = tmp_path / "nada_demo"
    f.write_text("keep me")
    assert main(["demo", "--out", str(f), "--steps", "1", "--device", "cpu"]) == 2
    assert "existing file but a folder" in capsys.readouterr().err
    assert f.read_text() == "keep me"


def test_save_latent_node_refuses_a_name_over_name_max(tmp_path, monkeypatch):
    from nodes import NODE_CLASS_MAPPINGS
    from nodes.common import NadaNodeError

    monkeypatch.setenv("NADA_OUTPUT_DIR", str(tmp_path / "output"))
    lat = Latents(torch.zeros(1, 4, 8))
    with pytest.raises(NadaNodeError, match="limit of") as err:
        NODE_CLASS_MAPPINGS["NadaSaveLatent"]().save(lat, "nada/" + "x" * 300)
    _one_line(err)


def test_save_generator_node_refuses_a_name_over_name_max(tmp_path, monkeypatch):
    from nodes import NODE_CLASS_MAPPINGS
    from nodes.common import NadaNodeError

    monkeypatch.setenv("NADA_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(NadaNodeError, match="NADA Save Generator: file name: the name .* over this file system") as err:
        NODE_CLASS_MAPPINGS["NadaSaveGenerator"]().save(tiny_generator(16), "g" * 300, True)
    _one_line(err)
    assert not any((tmp_path / "models").rglob("*.safetensors"))


# ---------------------------------------------------------------------------------- 2. atomic writes


def test_a_file_in_place_of_a_folder_is_one_line(tmp_path):
    (tmp_path / "f").write_text("keep")
    with pytest.raises(WriteError, match="part of the path is a file") as err:
        atomic_write_bytes(tmp_path / "f" / "sub" / "x.png", b"x")
    _one_line(err)
    assert (tmp_path / "f").read_text() == "keep"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_disk_full_and_friends_are_one_line_and_keep_the_old_file(tmp_path, code):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def fill_disk(p):
        p.write_bytes(b"half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(WriteError, match=f"cannot write .*out.png: {os.strerror(code)}; ") as err:
        atomic_write(target, fill_disk)
    _one_line(err)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_failure_at_rename_is_one_line_and_removes_the_temp(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(WriteError, match="No space left on device; free some disk space"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_other_errors_pass_through_unchanged(tmp_path):
    def bug(_p):
        raise OSError(errno.ECONNRESET, "reset")  # not a write failure: not relabelled

    with pytest.raises(ConnectionResetError):
        atomic_write(tmp_path / "x", bug)
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = r"""
import sys, time
from nada_core.atomic import atomic_write
def slow(p):
    p.write_bytes(b"partial")
    print(p, flush=True)
    time.sleep(60)
atomic_write(sys.argv[1], slow)
"""


def test_temp_of_a_sigkilled_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"good")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.is_file() and TMP_PATTERN.match(tmp.name)
        assert str(proc.pid) in tmp.name
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert tmp.exists() and target.read_bytes() == b"good"  # the kill left its temp behind

    # Files that are not ours, and a temp of a live writer, must survive the clean-up.
    foreign = [tmp_path / ".model.safetensors.tmp", tmp_path / "notes.nada-1-abcdefgh.tmp", tmp_path / "x.tmp"]
    for f in foreign:
        f.write_bytes(b"not ours")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_tmp = tmp_path / f".other.nada-{live.pid}-0123abcd.tmp"
        live_tmp.write_bytes(b"in progress")
        old_live = tmp_path / f".old.nada-{live.pid}-89abcdef.tmp"  # pid alive but ancient: pid reuse
        old_live.write_bytes(b"ancient")
        os.utime(old_live, (time.time() - atomic.STALE_AGE_S - 60,) * 2)

        atomic_write_bytes(tmp_path / "other.png", b"png")
        assert not tmp.exists() and not old_live.exists()
        assert live_tmp.exists()
        assert all(f.read_bytes() == b"not ours" for f in foreign)
    finally:
        live.kill()
        live.wait(timeout=30)
    assert remove_stale_temps(tmp_path) == [live_tmp]  # now its writer is dead too


def test_temp_name_stays_within_name_max_for_long_targets(tmp_path):
    target = tmp_path / ("n" * 250 + ".png")
    assert atomic_write_bytes(target, b"x").read_bytes() == b"x"


# ------------------------------------------------------------------------------------------ 3. devices


@pytest.mark.parametrize("spec, words", [
    ("cuda:abc", "unknown device 'cuda:abc'"),
    ("tpu", "unknown device 'tpu'"),
    ("meta", "not supported"),
    ("x" * 5000, "unknown device"),
])
def test_unknown_devices_list_the_choices(spec, words):
    with pytest.raises(InputError, match=words) as err:
        resolve_device(spec)
    text = _one_line(err)
    assert "use one of: auto, cpu" in text and len(text) < 300


def test_cuda_and_mps_absent_or_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for spec, words in (("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                        ("mps", "MPS is not available")):
        with pytest.raises(InputError, match=words) as err:
            resolve_device(spec)
        assert "use one of: auto, cpu" in _one_line(err)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match="has 2 CUDA device"):
        resolve_device("cuda:7")
    assert resolve_device("CPU") == torch.device("cpu")


def test_device_errors_through_the_cli(gen_file, tmp_path, capsys):
    path, _ = gen_file
    assert main(["sample", "--generator", str(path), "--out", str(tmp_path / "a.png"), "--device", "cuda:abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown device" in err and "\n" not in err


# -------------------------------------------------------------------------------------------- 4. seeds


def test_seed_cap_counts_the_whole_list():
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="over 100000 seeds"):
        parse_seeds(",".join(["0-9999"] * 11))
    with pytest.raises(InputError, match="over 100000 seeds"):
        parse_seeds(",".join(["7"] * 100_001))
    with pytest.raises(InputError, match="over 100000 seeds"):
        parse_seeds(itertools.count())  # an endless iterable stops at the cap
    assert len(parse_seeds(",".join(["0-9999"] * 10))) == 100_000  # exactly at the cap is fine
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("spec, words", [
    (f"0-{10 ** 18}", "out of range"),
    ("1" * 5000, "out of range"),
    (f"0-{'9' * 5000}", "out of range"),
    ("0-4294967295", "over 100000"),
])
def test_absurd_seed_ranges_are_refused_without_building_them(spec, words):
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=words) as err:
        parse_seeds(spec)
    assert time.perf_counter() - t0 < 0.5
    assert len(_one_line(err)) < 200


def test_layer_ranges_are_bounded_before_building():
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="out of range"):
        parse_layers("0-1000000000000", 8)
    assert time.perf_counter() - t0 < 0.5
    assert parse_layers("2-4", 8) == [2, 3, 4]


# ------------------------------------------------------------------------------------ 5. symlink loops


def test_model_listing_survives_symlink_loops(tmp_path, monkeypatch):
    from nodes import paths

    models = tmp_path / "models"
    gen = models / "stylegan"
    (gen / "a" / "b").mkdir(parents=True)
    (gen / "a" / "b" / "g.safetensors").write_bytes(b"x")
    (gen / "top.pt").write_bytes(b"x")
    (gen / "a" / "b" / "up").symlink_to(gen)  # loop back to the root
    (gen / "a" / "self").symlink_to(gen / "a")  # loop on itself
    (gen / "other").symlink_to(gen / "a")  # a second name for the same folder
    monkeypatch.setenv("NADA_MODELS_DIR", str(models))
    t0 = time.perf_counter()
    names = paths.list_models(paths.STYLEGAN)
    assert time.perf_counter() - t0 < 1
    assert names == ["a/b/g.safetensors", "top.pt"]

    inp = tmp_path / "input"
    (inp / "faces").mkdir(parents=True)
    (inp / "faces" / "again").symlink_to(inp)
    monkeypatch.setenv("NADA_INPUT_DIR", str(inp))
    assert paths.list_input_subfolders() == ["faces"]


def test_model_listing_inside_comfyui_survives_symlink_loops(tmp_path, monkeypatch):
    """ComfyUI's own get_filename_list would follow the loop; our listing must not call it."""
    import types

    from nodes import paths

    user = tmp_path / "nas"
    (user / "x").mkdir(parents=True)
    (user / "x" / "g.pkl").write_bytes(b"x")
    (user / "x" / "loop").symlink_to(user)
    (user / "notes.txt").write_text("not a model")
    fp = types.ModuleType("folder_paths")
    fp.folder_names_and_paths = {"stylegan": ([str(user)], {".pkl"})}
    fp.get_folder_paths = lambda name: list(fp.folder_names_and_paths[name][0])

    def never(_name):
        raise AssertionError("ComfyUI's unbounded walk was used")

    fp.get_filename_list = never
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    t0 = time.perf_counter()
    assert paths.list_models(paths.STYLEGAN) == ["x/g.pkl"]
    assert time.perf_counter() - t0 < 1


def test_model_listing_stops_at_the_depth_cap(tmp_path):
    from nodes import paths

    deep = tmp_path.joinpath(*["d"] * (paths.MAX_WALK_DEPTH + 3))
    deep.mkdir(parents=True)
    (deep / "deep.pt").write_bytes(b"x")
    (tmp_path / "d" / "ok.pt").write_bytes(b"x")
    assert paths.list_files(tmp_path, {".pt"}) == ["d/ok.pt"]


# ---------------------------------------------------------------------------------------- 6. images


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width x height`` RGB pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (9000, 9000)])  # 9000^2 is below Pillow's own warning
def test_decompression_bombs_are_refused_from_the_declared_size(tmp_path, w, h):
    bomb = _png_declaring(tmp_path / "bomb.png", w, h)
    assert bomb.stat().st_size < 2000 and w * h > MAX_IMAGE_PIXELS
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=f"declares ({w}x{h}|{w * h:,}) pixels, over the limit") as err:
        load_image(bomb)
    assert time.perf_counter() - t0 < 1
    _one_line(err)


def test_truncated_and_corrupt_images_are_one_line(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    assert load_image(good).shape == (3, 64, 64)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff" + os.urandom(300))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for bad in (cut, junk, empty):
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=f"cannot read image {bad.name}") as err:
            load_image(bad)
        assert time.perf_counter() - t0 < 1
        _one_line(err)


def test_image_prep_uses_the_same_checks(tmp_path):
    from nada_core.media.image_prep import prepare_images

    with pytest.raises(InputError, match="over the limit"):
        prepare_images([_png_declaring(tmp_path / "b.png", 20000, 20000)], 32)


# --------------------------------------------------------------------------------------- 7. latents


@pytest.fixture()
def lat_file(tmp_path):
    return save_latents(Latents(torch.randn(2, 4, 8), provenance={"seeds": [1, 2]}), tmp_path / "lat.safetensors")


def _safetensors_with(path: Path, ws: torch.Tensor, provenance: str) -> Path:
    from safetensors.torch import save_file

    save_file({"ws": ws}, str(path), metadata={"format": "nada-latents", "provenance": provenance})
    return path


@pytest.mark.parametrize("cut", [10, 0.5, -4])
def test_truncated_latent_files_name_the_file(lat_file, cut):
    data = lat_file.read_bytes()
    n = cut if isinstance(cut, int) and cut > 0 else (int(len(data) * cut) if cut < 1 and cut > 0 else len(data) + cut)
    lat_file.write_bytes(data[:n])
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="cannot read latents file lat.safetensors") as err:
        load_latents(lat_file)
    assert time.perf_counter() - t0 < 1
    _one_line(err)


@pytest.mark.parametrize("provenance, words", [
    ("[1, 2]", "expected a JSON object, got array"),
    ("{" * 5000 + "}" * 5000, "JSON nested deeper than 64"),
    ('{"a": ', "not valid JSON"),
    ("1" * 10000, "unreadable JSON|expected a JSON object"),
])
def test_bad_provenance_is_one_checkpoint_line(tmp_path, provenance, words):
    f = _safetensors_with(tmp_path / "p.safetensors", torch.zeros(1, 4, 8), provenance)
    with pytest.raises(CheckpointError, match=f"latents file p.safetensors: provenance metadata: ({words})") as err:
        load_latents(f)
    _one_line(err)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_latents_are_refused(tmp_path, value):
    ws = torch.zeros(1, 4, 8)
    ws[0, 1, 2] = value
    f = _safetensors_with(tmp_path / "n.safetensors", ws, "{}")
    with pytest.raises(CheckpointError, match="n.safetensors: 'ws' holds 1 NaN/inf"):
        load_latents(f)
    np.save(tmp_path / "n.npy", ws.numpy())
    with pytest.raises(CheckpointError, match="n.npy: 'ws' holds 1 NaN/inf"):
        load_latents(tmp_path / "n.npy")
    G = tiny_generator(16, seed=0)
    with pytest.raises(InputError, match="NaN/inf"):
        render(G, Latents(torch.full((1, G.num_ws, G.w_dim), value)))


def test_bad_space_and_shapes_name_the_file(tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "s.safetensors"
    save_file({"ws": torch.zeros(1, 4, 8)}, str(f), metadata={"space": "z", "provenance": "{}"})
    with pytest.raises(CheckpointError, match="latents file s.safetensors: latent space must be"):
        load_latents(f)
    save_file({"ws": torch.zeros(4, 8)}, str(f), metadata={})
    with pytest.raises(CheckpointError, match="latents file s.safetensors: latent codes must have shape"):
        load_latents(f)


def test_corrupt_numpy_latents_are_one_line(tmp_path):
    bad_zip = tmp_path / "a.npz"
    bad_zip.write_bytes(b"PK\x03\x04" + os.urandom(200))
    strings = tmp_path / "b.npy"
    np.save(strings, np.array(["a", "b"]))
    empty = tmp_path / "c.npy"
    empty.write_bytes(b"")
    cut = tmp_path / "d.npy"
    np.save(cut, np.zeros((4, 512), np.float32))
    cut.write_bytes(cut.read_bytes()[:300])
    for f in (bad_zip, strings, empty, cut):
        with pytest.raises(CheckpointError, match=f"latents file {f.name}") as err:
            load_latents(f)
        _one_line(err)


def test_npz_declaring_a_huge_array_is_refused_before_inflating(tmp_path):
    """A compressed member whose header claims 10^10 floats but holds a few bytes."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)})
    f = tmp_path / "bomb.npz"
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"declares shape \[100000, 100000\]"):
        load_latents(f)
    assert time.perf_counter() - t0 < 1


def test_hostile_latents_through_the_cli(gen_file, lat_file, tmp_path, capsys):
    path, _ = gen_file
    lat_file.write_bytes(lat_file.read_bytes()[:50])
    out = tmp_path / "x.png"
    assert main(["sample", "--generator", str(path), "--latents", str(lat_file), "--out", str(out),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lat.safetensors" in err and "\n" not in err and not out.exists()


# ----------------------------------------------------------------------------- end to end: subprocess


@pytest.mark.parametrize("case", ["same-file", "seeds", "device"])
def test_hostile_cli_runs_print_one_line_and_no_traceback(gen_file, tmp_path, case):
    path, _ = gen_file
    args = {"same-file": ["--out", str(path)],
            "seeds": ["--seeds", ",".join(["0-9999"] * 11), "--out", str(tmp_path / "a.png")],
            "device": ["--device", "tpu", "--out", str(tmp_path / "a.png")]}[case]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NADA_TRACEBACK", None)
    r = subprocess.run([sys.executable, "-m", "nada_core", "sample", "--generator", str(path), *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode in (1, 2), r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nada sample: error: "), r.stderr


def test_cli_turns_a_stray_os_error_into_one_line(monkeypatch, capsys):
    import nada_core.commands.info as info

    def boom(_args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(info, "run", boom)
    monkeypatch.delenv("NADA_TRACEBACK", raising=False)
    assert main(["info", "whatever.pt"]) == 1
    assert capsys.readouterr().err.strip() == "nada info: error: OSError: [Errno 5] Input/output error"


def test_a_nul_character_in_an_output_name_is_one_line(tmp_path):
    """``open()`` raises ValueError (not OSError) for it, which escaped as a traceback."""
    name = str(tmp_path / "a\x00b.safetensors")
    with pytest.raises(InputError, match="NUL character"):
        check_output(name, suffixes=(".safetensors",))
    with pytest.raises(WriteError, match="NUL character"):
        atomic_write_bytes(name, b"x")
    assert list(tmp_path.iterdir()) == []
