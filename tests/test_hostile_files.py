"""Hostile latents, direction, generator, encoder and domain files found by the session-4 audit.

Each case was a traceback, a silent wrong value or a memory/time bomb before; now it is one
:class:`~nada_core.errors.NadaError` line (or, for the JSON depth scan, the same answer faster).
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from factories import tiny_generator
from nada_core import cli
from nada_core.domains import load_domain, new_domain, save_domain
from nada_core.editing.direction_files import load_direction
from nada_core.editing.interpolate import interpolate_latents
from nada_core.editing.latents import Latents, latents_from_seeds, load_latents, save_latents
from nada_core.errors import CheckpointError, InputError, NadaError
from nada_core.formats.checkpoints import load_generator, save_generator
from nada_core.formats.safetensors_header import MAX_HEADER_BYTES
from nada_core.json_text import json_depth_exceeds, parse_json

READERS = {"latents": (load_latents, "w"), "direction": (load_direction, "direction")}


def one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg, msg
    return msg


def npy(header: dict, body: bytes = b"") -> bytes:
    """An ``.npy`` stream with exactly ``header`` (numpy's own writer pads it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + body


def npz(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# ----------------------------------------------------------------------------------------------
# .npy / .npz (latents, editing directions): one guarded reader
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", READERS)
def test_npz_member_without_npy_suffix_cannot_inflate_a_bomb(tmp_path, kind):
    """numpy reads a member named ``w`` (no ``.npy``) too; the old size check looked only for
    ``w.npy``, so deflated zeros were inflated whatever their size (1 GiB took 5.6 GB and 20 s).
    Now the archive is refused from its central directory before anything is inflated."""
    load, key = READERS[kind]
    hdr = {"descr": "<f4", "fortran_order": False, "shape": (2**24,)}
    path = npz(tmp_path / "bomb.npz", {key: npy(hdr, bytes(2**24 * 4))})  # 64 MiB -> 65 KiB
    with pytest.raises(CheckpointError, match="inflate") as info:
        load(path)
    one_line(info.value)


@pytest.mark.parametrize("kind", READERS)
@pytest.mark.parametrize("dtype", ["<i8", "|b1", "<c8", "<M8[s]", "<U3", "|O"])
def test_non_float_arrays_are_refused_not_cast(tmp_path, kind, dtype):
    """Integers, bools, complex, dates, text and objects were cast to floats (complex silently lost
    its imaginary part; text raised ValueError tracebacks in load_direction)."""
    load, _ = READERS[kind]
    path = tmp_path / "bad.npy"
    path.write_bytes(npy({"descr": dtype, "fortran_order": False, "shape": (1, 8)}, bytes(8 * 16)))
    with pytest.raises(CheckpointError, match="not floats") as info:
        load(path)
    one_line(info.value)


@pytest.mark.parametrize("kind", READERS)
@pytest.mark.parametrize("case, method, flag, words", [
    ("bzip2", zipfile.ZIP_BZIP2, 0, "unusual compression"),  # NotImplementedError from numpy before
    ("lzma", zipfile.ZIP_LZMA, 0, "unusual compression"),
    ("encrypted", zipfile.ZIP_STORED, 1, "encrypted"),  # RuntimeError from zipfile before
])
def test_odd_npz_members_are_one_line(tmp_path, kind, case, method, flag, words):
    load, key = READERS[kind]
    body = io.BytesIO()
    np.save(body, np.ones((1, 8), np.float32))
    path = npz(tmp_path / f"{case}.npz", {f"{key}.npy": body.getvalue()}, method)
    if flag:
        data = bytearray(path.read_bytes())
        data[6] |= 1  # local header: encrypted
        data[data.find(b"PK\x01\x02") + 8] |= 1  # central directory too
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=words) as info:
        load(path)
    one_line(info.value)


@pytest.mark.parametrize("kind", READERS)
def test_damaged_streams_are_one_line(tmp_path, kind):
    """zlib.error (bad deflate data) and tokenize.TokenError (header cut inside a bracket) escaped."""
    load, key = READERS[kind]
    body = io.BytesIO()
    np.save(body, np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32))
    good = npz(tmp_path / "good.npz", {f"{key}.npy": body.getvalue() * 40})
    data = bytearray(good.read_bytes())
    start = data.find(b"PK\x03\x04") + 30 + len(f"{key}.npy")
    for i in range(start + 20, start + 60):
        data[i] ^= 0x5A
    (tmp_path / "zlib.npz").write_bytes(bytes(data))
    header = npy({"descr": "<f4", "fortran_order": False, "shape": (1, 8)})
    (tmp_path / "token.npy").write_bytes(header[:header.index(b"(") + 1])  # "(1, 8)" cut after "("
    for name in ("zlib.npz", "token.npy"):
        with pytest.raises(CheckpointError) as info:
            load(tmp_path / name)
        assert name in one_line(info.value)


@pytest.mark.parametrize("kind", READERS)
def test_float64_beyond_float32_is_refused_as_non_finite(tmp_path, kind):
    load, _ = READERS[kind]
    np.save(tmp_path / "big.npy", np.full((1, 8), 1e300))
    with pytest.raises(CheckpointError, match="NaN/inf") as info:
        load(tmp_path / "big.npy")
    one_line(info.value)


def test_honest_numpy_files_still_load_exactly(tmp_path):
    """float16/32/64, C and Fortran order, .npy and .npz (deflated or stored, with or without .npy)."""
    rng = np.random.default_rng(1)
    ws = rng.standard_normal((2, 4, 8))
    for i, (dtype, order) in enumerate([(np.float32, "C"), (np.float64, "F"), (np.float16, "C")]):
        arr = np.asarray(ws, dtype=dtype, order=order)
        np.save(tmp_path / f"a{i}.npy", arr)
        assert torch.equal(load_latents(tmp_path / f"a{i}.npy").ws, torch.from_numpy(arr.astype(np.float32)))
    np.savez_compressed(tmp_path / "p.npz", w=ws.astype(np.float32))
    np.savez(tmp_path / "q.npz", dlatents=ws.astype(np.float32))
    for name in ("p.npz", "q.npz"):
        assert torch.equal(load_latents(tmp_path / name).ws, torch.from_numpy(ws.astype(np.float32)))
    body = io.BytesIO()
    np.save(body, ws[0, :1].astype(np.float32))
    plain = npz(tmp_path / "d.npz", {"boundary": body.getvalue()})  # a member named without .npy
    assert torch.equal(load_direction(plain).vectors, torch.from_numpy(ws[0, :1].astype(np.float32)))


def test_latents_need_a_w_dim_and_float_codes(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((2, 0), np.float32))
    with pytest.raises(CheckpointError, match="at least one W\\+ entry"):
        load_latents(tmp_path / "z.npy")  # loaded as [2, 1, 0] before
    save_file({"ws": torch.full((1, 4, 8), 1e300, dtype=torch.float64)}, str(tmp_path / "big.safetensors"))
    with pytest.raises(CheckpointError, match="32 NaN/inf"):  # finite as float64, inf as the float32 codes
        load_latents(tmp_path / "big.safetensors")
    save_file({"ws": torch.ones(1, 4, 8, dtype=torch.int32)}, str(tmp_path / "i.safetensors"))
    with pytest.raises(CheckpointError, match="must be floats"):
        load_latents(tmp_path / "i.safetensors")


def test_latents_file_listing_thousands_of_tensors_is_read_in_part(tmp_path):
    tensors = {f"junk{i}": torch.zeros(1) for i in range(3000)}
    tensors["ws"] = torch.ones(1, 4, 8)
    save_file(tensors, str(tmp_path / "many.safetensors"))
    assert torch.equal(load_latents(tmp_path / "many.safetensors").ws, torch.ones(1, 4, 8))
    noise = {f"noise.{i:03d}": torch.zeros(1, 1, 4, 4) for i in range(65)}
    save_file({"ws": torch.ones(1, 4, 8), **noise}, str(tmp_path / "noise.safetensors"))
    with pytest.raises(CheckpointError, match="65 noise maps"):
        load_latents(tmp_path / "noise.safetensors")


def test_direction_values_and_vectors_must_be_finite_floats():
    from nada_core.editing.semantic import Directions

    with pytest.raises(InputError, match="values hold NaN"):
        Directions(torch.ones(1, 8), torch.tensor([float("nan")]))
    with pytest.raises(InputError, match="float vectors"):
        Directions(torch.ones(1, 8, dtype=torch.int64), torch.ones(1))


# ----------------------------------------------------------------------------------------------
# Generator and encoder weights
# ----------------------------------------------------------------------------------------------


def _rewrite(path: Path, change) -> Path:
    with safe_open(str(path), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    change(tensors, meta)
    path.unlink()
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory):
    return save_generator(tiny_generator(16, seed=2), tmp_path_factory.mktemp("g") / "g.safetensors")


@pytest.mark.parametrize("case, words", [
    ("nan", "NaN or infinite"), ("inf_w_avg", "NaN or infinite"), ("f64_overflow", "NaN or infinite"),
    ("int32", "int32 values, not floats"), ("bool", "bool values, not floats"), ("complex", "complex64 values"),
])
def test_generator_weights_must_be_finite_floats(tmp_path, gen_path, case, words):
    """All six loaded before (NaN/inf rendered black or NaN images; ints/bools were cast silently)."""
    path = tmp_path / "g.safetensors"
    path.write_bytes(gen_path.read_bytes())
    key = "mapping.w_avg" if case == "inf_w_avg" else "synthesis.convs.0.conv.weight"

    def change(t, meta):
        v = t[key]
        t[key] = {"nan": v.fill_(float("nan")), "inf_w_avg": v.fill_(float("inf")), "f64_overflow": v.double() * 1e300,
                  "int32": v.to(torch.int32), "bool": v > 0, "complex": v.to(torch.complex64)}[case]

    with pytest.raises(CheckpointError, match=words) as info:
        load_generator(_rewrite(path, change))
    assert key in one_line(info.value)


def test_encoder_weights_must_be_finite_floats(tmp_path):
    from encoder_factories import encoder_opts, encoder_state_dict, random_latent_avg, write_encoder_checkpoint
    from nada_core.encoders import load_encoder

    sd = encoder_state_dict("Encoder4Editing", n_styles=8, units=(1, 2, 3, 1), widths=(8, 16, 24, 32), w_dim=32)
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 4)
    for value, words in ((sd[key].to(torch.int64), "int64 values, not floats"),
                         (torch.full_like(sd[key], float("nan")), "NaN or infinite")):
        path = write_encoder_checkpoint(tmp_path / "e.pt", {**sd, key: value}, encoder_opts("Encoder4Editing",
                                        output_size=32), latent_avg=random_latent_avg(8, 32))
        with pytest.raises(CheckpointError, match=words) as info:
            load_encoder(path)
        assert key in one_line(info.value)


# ----------------------------------------------------------------------------------------------
# Headers and metadata
# ----------------------------------------------------------------------------------------------


def _reference_depth_exceeds(text: str, limit: int) -> bool:
    """The obvious character loop (the scan's previous implementation), as the reference."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def test_json_depth_scan_agrees_with_a_character_loop_on_valid_json():
    rng = random.Random(0)

    def value(d: int) -> str:
        if d == 0 or rng.random() < 0.3:
            return rng.choice(['1', '"a[b"', '"\\\\"', '"\\"{"', '"]]}"', 'null'])
        items = [value(d - 1) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            return "[" + ",".join(items) + "]"
        return "{" + ",".join(f'"k{i}":{v}' for i, v in enumerate(items)) + "}"

    for _ in range(3000):
        text = value(rng.randint(0, 9))
        json.loads(text)
        for limit in range(8):
            assert json_depth_exceeds(text, limit) == _reference_depth_exceeds(text, limit), (text, limit)
    assert json_depth_exceeds("[[[[", 3) and not json_depth_exceeds('"' + "[" * 50 + '"', 3)


def test_megabytes_of_metadata_text_parse_fast():
    """A 20 MB string used to cost a 20-million-step Python loop in every parse (~3 s each; a
    generator file's header is parsed four times)."""
    text = json.dumps({"provenance": json.dumps({"notes": "x" * 20_000_000})})
    assert not json_depth_exceeds(text, 64)  # C-speed string operations: well under a second
    assert len(parse_json(text, "h", expect=dict)["provenance"]) > 20_000_000


def test_safetensors_headers_over_the_cap_are_refused_before_parsing(tmp_path, gen_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes(gen_path.read_bytes())
    _rewrite(path, lambda t, meta: meta.__setitem__("provenance", json.dumps({"a": "x" * (MAX_HEADER_BYTES + 10)})))
    for load in (load_generator, load_latents, load_direction, load_domain):
        with pytest.raises(NadaError, match="header size") as info:
            load(path)
        one_line(info.value)


# ----------------------------------------------------------------------------------------------
# Provenance read back from files (JSON of any shape)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("meta", [
    {"nada": {"clip_models": "abc"}}, {"nada": {"direction": 5}}, {"nada": {"clip_models": [1, 2]}},
    {"metrics": {"diversity_before": "x", "diversity_after": 1}}, {"nada": "text"}, {"metrics": [1]},
])
def test_domain_info_survives_odd_provenance(tmp_path, capsys, meta):
    """``nada info`` raised AttributeError/ValueError tracebacks on these; the node text too."""
    from nodes.domain_nodes import describe_domain

    d = new_domain(tiny_generator(16), "domain", metadata=meta)
    d.architecture["img_resolution"] = "x" * 30
    path = save_domain(d, tmp_path / "odd.safetensors")
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kind:" in out and "resolution: ?" in out.replace("  ", " ")
    assert describe_domain(load_domain(path)).startswith("odd:")


@pytest.mark.parametrize("prov, words", [({"truncation_psi": "abc"}, "truncation"),
                                         ({"truncation_psi": 0.5, "truncation_cutoff": -3}, "cutoff"),
                                         ({"class_index": "x"}, "class")])
def test_slerp_checks_the_keyframes_truncation_from_their_provenance(tmp_path, prov, words):
    """``float("abc")`` raised ValueError inside interpolate_latents (a latents file's provenance)."""
    G = tiny_generator(16)
    lat = latents_from_seeds(G, [1, 2])
    path = save_latents(Latents(lat.ws, lat.space, lat.lineage_sha256, {**lat.provenance, **prov}, lat.z),
                        tmp_path / "k.safetensors")
    with pytest.raises(CheckpointError, match=f"provenance is damaged .*{words}") as info:
        interpolate_latents(load_latents(path), 4, mode="slerp", G=G)
    one_line(info.value)


def test_mp4_frames_of_the_wrong_kind_are_one_line(tmp_path):
    pytest.importorskip("av")
    from nada_core.media.video import write_mp4

    good = np.zeros((8, 8, 3), np.uint8)
    for frames, words in (([good, np.zeros((8, 8, 4), np.uint8)], "frame 1 is uint8 \\[8, 8, 4\\]"),
                          ([good, good.astype(np.float32)], "frame 1 is float32"), ([np.zeros(3, np.uint8)], "frame 0")):
        with pytest.raises(InputError, match=words):
            write_mp4(frames, tmp_path / "x.mp4")
    with pytest.raises(InputError, match="crf"):
        write_mp4([good], tmp_path / "x.mp4", crf="high")
    assert not (tmp_path / "x.mp4").exists()


def test_a_video_without_a_video_stream_is_one_line(tmp_path):
    """An audio-only .mp4 raised IndexError from ``container.decode(video=0)``."""
    av = pytest.importorskip("av")
    from nada_core.media.video import read_video

    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        read_video(path)


def test_foreign_generators_with_integer_weights_are_refused(tmp_path):
    """The rosinality, NVIDIA and TensorFlow converters cast every tensor to float32 themselves, so
    an integer or bool weight was taken as a weight (NVIDIA's case: test_interop.py)."""
    import checkpoint_factories as cf
    import tf_factories as tff

    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=3)
    key = next(k for k in sd if k.endswith("conv.weight"))
    path = cf.write_rosinality_checkpoint(tmp_path / "r.pt", {**sd, key: sd[key].to(torch.int16)}, g=sd)
    with pytest.raises(CheckpointError, match="int16 values, not floats") as info:
        load_generator(path)
    assert key in one_line(info.value)
    kw = tff.tf_generator_settings()
    variables = tff.tf_generator_variables(kw, seed=1)
    synthesis = variables["synthesis"]
    name = next(k for k, v in synthesis.items() if getattr(v, "ndim", 0) == 4)
    synthesis[name] = np.asarray(synthesis[name]).astype(np.int32)
    path = tff.write_tf_pkl(tmp_path / "tf.pkl", variables, kw)
    with pytest.raises(CheckpointError, match="int32 values, not floats") as info:
        load_generator(path)
    assert name in one_line(info.value)
