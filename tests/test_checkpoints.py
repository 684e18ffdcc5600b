"""Loading foreign StyleGAN2 checkpoints safely, and saving/reading our own format.

Foreign files are written from scratch by :mod:`checkpoint_factories` in the exact layouts of
rosinality's stylegan2-pytorch and NVIDIA's stylegan2-ada-pytorch; expected images come from the
independent float64 implementation in :mod:`reference_stylegan2`, which reads the raw foreign
tensors. Tolerance: max |ours - reference| <= 1e-5 * max(1, max |reference|).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint_factories as cf
from nada_core import cli
from nada_core.formats.checkpoints import (FORMAT_NADA, FORMAT_NVIDIA, FORMAT_ROSINALITY, detect_format, lineage_sha256,
                                   load_generator, read_metadata, save_generator, sha256_file)
from nada_core.errors import CheckpointError, InputError, UnsafeCheckpointError
from nada_core.formats.safe_unpickle import scan_globals
from nada_core.models.stylegan2 import Generator, GeneratorConfig
from reference_stylegan2 import nvidia_reference, rosinality_reference

REPO = Path(__file__).resolve().parents[1]



def assert_close_to_reference(got: torch.Tensor, expected: torch.Tensor) -> float:
    assert got.shape == expected.shape
    diff = (got.detach() - expected).abs().max().item()
    tol = 1e-5 * max(1.0, expected.abs().max().item())
    assert diff <= tol, f"max abs difference {diff:.3g} exceeds {tol:.3g}"
    return diff


def zs(n: int, dim: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def assert_one_line_naming(err: BaseException, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg


# ----------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_rosinality_matches_reference_with_truncation(tmp_path, legacy):
    sd = cf.rosinality_state_dict(size=32, style_dim=16, n_mlp=3, seed=1)
    latent_avg = torch.randn(16) * 0.5
    path = cf.write_rosinality_checkpoint(tmp_path / "ffhq.pt", sd, latent_avg=latent_avg, legacy=legacy)
    G = load_generator(path)
    assert not G.training
    assert G.img_resolution == 32 and G.num_ws == 8 and G.z_dim == G.w_dim == 16
    assert G.config.mapping_layers == 3
    assert G.config.channel_dict == cf.tiny_channels(32)
    assert torch.equal(G.w_avg, latent_avg)
    assert G.metadata["format"] == FORMAT_ROSINALITY and G.metadata["w_avg_origin"] == "latent_avg"
    assert G.metadata["ema"] is True and G.metadata["network"] == "g_ema"
    z = zs(3, 16)
    for psi in (1.0, 0.7, 0.5):
        with torch.no_grad():
            got = G(z, truncation_psi=psi, noise_mode="const")
        assert_close_to_reference(got, rosinality_reference(sd, z, psi, latent_avg))


def test_rosinality_noise_none_and_non_ema_weights(tmp_path):
    sd = cf.rosinality_state_dict(size=16, style_dim=8, n_mlp=2, seed=2)
    g_train = cf.rosinality_state_dict(size=16, style_dim=8, n_mlp=2, seed=3)
    path = cf.write_rosinality_checkpoint(tmp_path / "run.pt", sd, g=g_train, latent_avg=torch.zeros(8))
    z = zs(2, 8)
    G_ema, G = load_generator(path), load_generator(path, ema=False)
    assert G.metadata["ema"] is False and G.metadata["network"] == "g"
    with torch.no_grad():
        assert_close_to_reference(G(z), rosinality_reference(g_train, z))
        assert_close_to_reference(G_ema(z, noise_mode="none"), rosinality_reference(sd, z, noise="none"))


def test_rosinality_real_channel_table_and_args_cross_check(tmp_path):
    # 16 px with rosinality's real channel table (512 wide) and a full train.py-style dict.
    sd = cf.rosinality_state_dict(size=16, style_dim=32, n_mlp=2, channel_multiplier=2, seed=4)
    path = cf.write_rosinality_checkpoint(tmp_path / "table.pt", sd, latent_avg=torch.zeros(32))
    G = load_generator(path)
    assert G.config.channel_dict == {4: 512, 8: 512, 16: 512}
    z = zs(1, 32)
    with torch.no_grad():
        assert_close_to_reference(G(z), rosinality_reference(sd, z))
    # args that disagree with the weights are reported, not silently ignored.
    bad = cf.write_rosinality_checkpoint(tmp_path / "bad.pt", sd, include_training=False,
                                         args=argparse.Namespace(size=256, latent=32, n_mlp=2))
    with pytest.raises(CheckpointError, match="size=256"):
        load_generator(bad)
    wide = cf.rosinality_state_dict(size=64, style_dim=8, n_mlp=1, channel_multiplier=1, seed=4)
    wrong_mult = cf.write_rosinality_checkpoint(tmp_path / "mult.pt", wide, include_training=False,
                                                args=argparse.Namespace(size=64, channel_multiplier=2))
    with pytest.raises(CheckpointError, match="channel_multiplier=2"):
        load_generator(wrong_mult)


def test_rosinality_without_latent_avg_uses_seeded_estimate(tmp_path):
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=2, seed=5)
    path = cf.write_rosinality_checkpoint(tmp_path / "nada_out.pt", sd, include_training=False, args=None,
                                          extra={"g_optim": {"state": {}, "param_groups": []}})
    G1, G2 = load_generator(path), load_generator(path)
    assert "estimated" in G1.metadata["w_avg_origin"] and "seed 0" in G1.metadata["w_avg_origin"]
    assert torch.equal(G1.w_avg, G2.w_avg)  # deterministic
    # It is the mean of mapped z, computed independently here:
    z = torch.randn(10_000, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        independent = G1.mapping(z)[:, 0].double().mean(0).float()
    assert torch.allclose(G1.w_avg, independent, atol=1e-5)


def test_rosinality_bare_state_dict_and_dataparallel_prefix(tmp_path):
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=6)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "bare.pt")
    G = load_generator(tmp_path / "bare.pt")
    z = zs(2, 8)
    with torch.no_grad():
        assert_close_to_reference(G(z), rosinality_reference(sd, z))


def test_rosinality_missing_noise_buffers_are_generated_reproducibly(tmp_path):
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=7)
    sd = {k: v for k, v in sd.items() if not k.startswith("noises.")}
    torch.save({"g_ema": sd}, tmp_path / "old.pt")
    G1, G2 = load_generator(tmp_path / "old.pt"), load_generator(tmp_path / "old.pt")
    assert "generated" in G1.metadata["noise_const"]
    assert torch.equal(G1.synthesis.convs[2].noise_const, G2.synthesis.convs[2].noise_const)


def test_rosinality_structure_errors(tmp_path):
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=8)
    torch.save({"d": cf.rosinality_discriminator_state_dict()}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="only a discriminator"):
        load_generator(tmp_path / "d.pt")
    torch.save({"g": sd}, tmp_path / "g_only.pt")
    with pytest.raises(CheckpointError, match="ema=False"):
        load_generator(tmp_path / "g_only.pt")
    assert load_generator(tmp_path / "g_only.pt", ema=False).img_resolution == 8
    broken = dict(sd)
    broken["convs.1.conv.weight"] = torch.randn(1, 5, 5, 3, 3)
    torch.save({"g_ema": broken}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="convs.1.conv.weight") as info:
        load_generator(tmp_path / "shape.pt")
    assert_one_line_naming(info.value, tmp_path / "shape.pt")
    odd = dict(sd)
    odd["to_rgbs.0.iwt.weight"] = torch.zeros(3)  # e.g. a SWAGAN generator
    torch.save({"g_ema": odd}, tmp_path / "swagan.pt")
    with pytest.raises(CheckpointError, match="different architecture"):
        load_generator(tmp_path / "swagan.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a stylegan2-pytorch checkpoint"):
        load_generator(tmp_path / "list.pt")


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch
# ----------------------------------------------------------------------------------------------

NV_SETTINGS = {
    "default": dict(img_resolution=32, z_dim=16, w_dim=16, num_layers=2, channel_base=256, channel_max=16),
    "clamp_fp16_dims": dict(img_resolution=64, z_dim=24, w_dim=20, num_layers=3, channel_base=512, channel_max=16,
                            layer_features=12, conv_clamp=0.75, num_fp16_res=2),
    "gray_8px": dict(img_resolution=8, z_dim=8, w_dim=8, num_layers=1, channel_base=64, channel_max=8,
                     img_channels=1),
}


@pytest.mark.parametrize("name", list(NV_SETTINGS))
def test_nvidia_matches_reference(tmp_path, name):
    s = NV_SETTINGS[name]
    tensors = cf.nvidia_generator_tensors(seed=11, **{k: v for k, v in s.items()
                                                      if k not in ("conv_clamp", "num_fp16_res")})
    path = cf.write_nvidia_pkl(tmp_path / "network-snapshot.pkl", tensors, cf.nvidia_generator_kwargs(**s))
    G = load_generator(path)
    cfg = G.config
    assert cfg.img_resolution == s["img_resolution"] and cfg.z_dim == s["z_dim"] and cfg.w_dim == s["w_dim"]
    assert cfg.mapping_layers == s["num_layers"] and cfg.mapping_hidden == s.get("layer_features")
    assert cfg.conv_clamp == s.get("conv_clamp") and cfg.num_fp16_res == s.get("num_fp16_res", 0)
    assert cfg.channel_dict == {r: min(s["channel_base"] // r, s["channel_max"]) for r in cfg.resolutions}
    assert torch.equal(G.w_avg, tensors["mapping.w_avg"])
    assert G.metadata["format"] == FORMAT_NVIDIA and G.metadata["w_avg_origin"] == "mapping.w_avg"
    z = zs(2, s["z_dim"])
    clamp = s.get("conv_clamp")
    for psi, cutoff in ((1.0, None), (0.7, None), (0.5, 3)):
        with torch.no_grad():
            got = G(z, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode="const")
        expected = nvidia_reference(tensors, z, psi, cutoff, conv_clamp=clamp)
        assert_close_to_reference(got, expected)
    if clamp is not None:  # make sure the clamp really was exercised
        unclamped = nvidia_reference(tensors, z, psi, cutoff, conv_clamp=None)
        assert (unclamped - expected).abs().max() > 0.1
    with torch.no_grad():
        assert_close_to_reference(G(z, noise_mode="none"), nvidia_reference(tensors, z, conv_clamp=clamp, noise="none"))


def test_nvidia_original_release_style_pickle_numpy1_protocol3(tmp_path):
    """Python 3.7 / torch 1.7 / numpy 1 era files: protocol 3, GLOBAL opcodes, numpy.core names."""
    s = NV_SETTINGS["default"]
    tensors = cf.nvidia_generator_tensors(seed=12, **s)
    kw = cf.nvidia_generator_kwargs(**s)
    old = cf.write_nvidia_pkl(tmp_path / "old.pkl", tensors, kw, numpy_style="numpy1", protocol=3, torch_era="1.7")
    new = cf.write_nvidia_pkl(tmp_path / "new.pkl", tensors, kw, numpy_style="numpy2", protocol=4)
    old_globals, new_globals = set(scan_globals(old.read_bytes())), set(scan_globals(new.read_bytes()))
    assert ("numpy.core.multiarray", "scalar") in old_globals
    assert ("numpy.core.multiarray", "_reconstruct") in old_globals
    assert not any(m.startswith("numpy._core") for m, _ in old_globals)
    assert ("numpy._core.multiarray", "scalar") in new_globals
    assert ("builtins", "set") in old_globals  # protocol 3 pickles sets via a global
    G_old, G_new = load_generator(old), load_generator(new)
    for (k, a), (_, b) in zip(G_old.state_dict().items(), G_new.state_dict().items()):
        assert torch.equal(a, b), k
    z = zs(2, 16)
    with torch.no_grad():
        assert_close_to_reference(G_old(z, truncation_psi=0.6), nvidia_reference(tensors, z, 0.6))


def test_nvidia_non_ema_generator_and_missing_networks(tmp_path):
    s = NV_SETTINGS["default"]
    ema_t = cf.nvidia_generator_tensors(seed=13, **s)
    train_t = cf.nvidia_generator_tensors(seed=14, **s)
    path = cf.write_nvidia_pkl(tmp_path / "snap.pkl", ema_t, cf.nvidia_generator_kwargs(**s), g_tensors=train_t)
    G = load_generator(path, ema=False)
    assert G.metadata["network"] == "G" and G.metadata["ema"] is False
    z = zs(1, 16)
    with torch.no_grad():
        assert_close_to_reference(G(z), nvidia_reference(train_t, z))
    only_g = cf.write_nvidia_pkl(tmp_path / "only_g.pkl", ema_t, cf.nvidia_generator_kwargs(**s), include=("G",))
    with pytest.raises(CheckpointError, match="ema=False"):
        load_generator(only_g)
    d_only = cf.write_nvidia_pkl(tmp_path / "d.pkl", ema_t, cf.nvidia_generator_kwargs(**s), include=("D",))
    with pytest.raises(CheckpointError, match="only a discriminator") as info:
        load_generator(d_only)
    assert_one_line_naming(info.value, d_only)


def test_nvidia_stylegan3_repo_layout_with_flat_synthesis_kwargs(tmp_path):
    """NVIDIA's stylegan3 repo pickles its StyleGAN2 class with synthesis settings as top-level kwargs."""
    s = NV_SETTINGS["default"]
    tensors = cf.nvidia_generator_tensors(seed=15, **s)
    kw = cf.nvidia_generator_kwargs(**s)
    flat = dict(kw)
    flat.update(flat.pop("synthesis_kwargs"))
    flat["fused_modconv_default"] = "inference_only"
    G = cf.build_nvidia_generator(tensors, kw)
    G.state["_init_kwargs"] = flat
    path = cf.write_pickle(tmp_path / "sg3repo.pkl", {"G_ema": G, "progress": {"cur_nimg": torch.tensor(1000)}})
    ours = load_generator(path)
    z = zs(2, 16)
    with torch.no_grad():
        assert_close_to_reference(ours(z), nvidia_reference(tensors, z))


@pytest.mark.parametrize("case,match", [
    # ("conditional", ...) moved: class-conditional snapshots load now (tests/test_conditional.py)
    ("resnet", "'resnet'"),
    ("stylegan3", "StyleGAN3"),
    ("unknown_kwarg", "does not know"),
    ("shape", "has shape"),
    ("tf", "TensorFlow"),
])
def test_nvidia_unsupported_files_give_clear_errors(tmp_path, case, match):
    s = dict(NV_SETTINGS["default"])
    path = tmp_path / f"{case}.pkl"
    if case == "resnet":
        t = cf.nvidia_generator_tensors(seed=1, **s)
        cf.write_nvidia_pkl(path, t, cf.nvidia_generator_kwargs(architecture="resnet", **s))
    elif case == "stylegan3":
        t = cf.nvidia_generator_tensors(seed=1, **s)
        src = "from torch_utils.ops import filtered_lrelu\nclass SynthesisInput: pass\n"
        G = cf.build_nvidia_generator(t, cf.nvidia_generator_kwargs(**s), module_src=src)
        syn = G.state["_modules"]["synthesis"]
        syn.state["_modules"] = {"input": cf.FakePersistent("SynthesisInput", cf._module_state(
            {"weight": torch.zeros(4, 2)}, {}, {}, {}, {}, "2.x"), "")}
        cf.write_pickle(path, {"G_ema": G})
    elif case == "unknown_kwarg":
        t = cf.nvidia_generator_tensors(seed=1, **s)
        kw = cf.nvidia_generator_kwargs(**s)
        kw["synthesis_kwargs"]["magnitude_ema_beta"] = 0.99
        cf.write_nvidia_pkl(path, t, kw)
    elif case == "shape":
        t = cf.nvidia_generator_tensors(seed=1, **s)
        kw = cf.nvidia_generator_kwargs(**{**s, "channel_max": 8})  # tensors are 16 wide
        G = cf.build_nvidia_generator(t, cf.nvidia_generator_kwargs(**s))
        G.state["_init_kwargs"] = kw
        cf.write_pickle(path, {"G_ema": G})
    else:  # TensorFlow-era pickle: (G, D, Gs) of dnnlib.tflib.network.Network
        class _Net:
            def __reduce_ex__(self, protocol):
                return (cf._Global("dnnlib.tflib.network", "Network"), (), {"version": 4, "name": "G",
                        "variables": [("G_mapping/Dense0/weight", np.zeros((2, 2), np.float32))]})
        cf.write_pickle(path, (_Net(), _Net(), _Net()), protocol=2)
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert_one_line_naming(info.value, path)


# ----------------------------------------------------------------------------------------------
# Untrusted files
# ----------------------------------------------------------------------------------------------

HOSTILE_GLOBALS = [
    ("os", "system", lambda m: (f"touch {m}",)),
    ("posix", "system", lambda m: (f"touch {m}",)),
    ("builtins", "eval", lambda m: (f"open({str(m)!r}, 'w').close()",)),
    ("builtins", "exec", lambda m: (f"open({str(m)!r}, 'w').close()",)),
    ("subprocess", "check_call", lambda m: (["touch", str(m)],)),
    ("torch.serialization", "load", lambda m: (str(m),)),
]


@pytest.mark.parametrize("module,name,args", HOSTILE_GLOBALS, ids=[f"{m}.{n}" for m, n, _ in HOSTILE_GLOBALS])
@pytest.mark.parametrize("protocol", [2, 4])
def test_hostile_pickle_is_refused_and_nothing_runs(tmp_path, module, name, args, protocol):
    marker = tmp_path / "PWNED"
    path = cf.write_malicious_pickle(tmp_path / "evil.pkl", module, name, args(marker), protocol=protocol)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_generator(path)
    assert f"{module}.{name}" in str(info.value)
    assert_one_line_naming(info.value, path)
    assert not marker.exists()


def test_hostile_payload_hidden_in_a_tensor_storage_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    inner = cf.write_malicious_pickle(tmp_path / "inner.bin", "os", "system", (f"touch {marker}",), protocol=2,
                                      wrap_in_snapshot=False).read_bytes()

    class _Storage:
        def __reduce_ex__(self, protocol):
            return (cf._Global("torch.storage", "_load_from_bytes"), (inner,))

    path = cf.write_pickle(tmp_path / "nested.pkl", {"G_ema": _Storage()})
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_generator(path)
    assert not marker.exists()


def test_module_src_inside_nvidia_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "EXECUTED"
    s = NV_SETTINGS["default"]
    t = cf.nvidia_generator_tensors(seed=3, **s)
    path = cf.write_nvidia_pkl(tmp_path / "snap.pkl", t, cf.nvidia_generator_kwargs(**s),
                               module_src=cf.FAKE_MODULE_SRC.format(marker=str(marker)))
    assert str(marker).encode() in path.read_bytes()
    G = load_generator(path)
    assert G.img_resolution == 32
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_hostile_pt_is_refused_and_nothing_runs(tmp_path, legacy):
    marker = tmp_path / "PWNED"
    path = cf.write_malicious_pt(tmp_path / "evil.pt", marker, legacy=legacy)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_generator(path)
    assert "system" in str(info.value)
    assert_one_line_naming(info.value, path)
    assert not marker.exists()


def test_pickled_python_objects_in_pt_are_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"g_ema": torch.nn.Linear(2, 2)}, path)  # a whole pickled module, not weights
    with pytest.raises(UnsafeCheckpointError, match="torch.nn.modules.linear.Linear"):
        load_generator(path)


# ----------------------------------------------------------------------------------------------
# Bad files
# ----------------------------------------------------------------------------------------------


def _truncate(src: Path, dst: Path, keep: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("samples")
    sd = cf.rosinality_state_dict(size=8, style_dim=8, n_mlp=1, seed=21)
    pt = cf.write_rosinality_checkpoint(d / "ros.pt", sd, latent_avg=torch.zeros(8))
    pt_legacy = cf.write_rosinality_checkpoint(d / "ros_legacy.pt", sd, latent_avg=torch.zeros(8), legacy=True)
    s = dict(NV_SETTINGS["gray_8px"], img_channels=3)
    pkl = cf.write_nvidia_pkl(d / "nv.pkl", cf.nvidia_generator_tensors(seed=22, **s), cf.nvidia_generator_kwargs(**s))
    st = d / "ours.safetensors"
    save_generator(load_generator(pt), st, metadata={"note": "x"})
    return {"pt": pt, "pt_legacy": pt_legacy, "pkl": pkl, "safetensors": st}


@pytest.mark.parametrize("kind", ["pt", "pt_legacy", "pkl", "safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_files_give_one_line_checkpoint_errors(tmp_path, sample_files, kind, keep):
    path = _truncate(sample_files[kind], tmp_path / f"cut_{kind}", keep)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("content", [b"", b"hello world, not a model\n", os.urandom(4096),
                                     b'{"not": "a model"}', b"\x80\x04K\x05."])
def test_unrecognised_or_empty_files(tmp_path, content):
    path = tmp_path / "mystery.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line_naming(info.value, path)
    if not content.startswith(b"\x80"):
        assert ".safetensors" in str(info.value) and ".pkl" in str(info.value)  # lists what is supported


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file") as info:
        load_generator(tmp_path / "nope.pkl")
    assert_one_line_naming(info.value, tmp_path / "nope.pkl")
    with pytest.raises(CheckpointError, match="folder"):
        load_generator(tmp_path)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_corrupted_pickle_inside_a_torch_zip(tmp_path, sample_files, seed):
    rng = np.random.default_rng(seed)
    src = zipfile.ZipFile(sample_files["pt"])
    path = tmp_path / "corrupt.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as out:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                at = int(rng.integers(2, len(data) - 64))
                data = data[:at] + rng.integers(0, 256, 64, dtype=np.uint8).tobytes() + data[at + 64:]
            out.writestr(name, data)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line_naming(info.value, path)


def test_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert_one_line_naming(info.value, path)


def test_format_is_recognised_by_content_not_extension(tmp_path, sample_files):
    renamed = {"pt": tmp_path / "a.pkl", "pkl": tmp_path / "b.pt", "safetensors": tmp_path / "c.bin"}
    expected = {"pt": FORMAT_ROSINALITY, "pkl": FORMAT_NVIDIA, "safetensors": FORMAT_NADA}
    for kind, dst in renamed.items():
        dst.write_bytes(sample_files[kind].read_bytes())
        assert detect_format(dst) == expected[kind]
        G = load_generator(dst)
        assert G.metadata["format"] == expected[kind]
    assert detect_format(sample_files["pt_legacy"]) == FORMAT_ROSINALITY


def test_safetensors_whose_header_length_looks_like_a_pickle_opcode(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    for pad in range(500, 700):  # find a header length of 0x0280..0x0580: bytes 80 02..05, like a pickle
        save_file({"x": torch.zeros(2)}, str(path), metadata={"pad": "p" * pad})
        n = int.from_bytes(path.read_bytes()[:8], "little")
        if n & 0xFF == 0x80 and 2 <= n >> 8 <= 5:
            break
    else:  # pragma: no cover
        pytest.fail("could not build the test file")
    assert detect_format(path) == FORMAT_NADA
    with pytest.raises(CheckpointError, match="not a ComfyUI-NADA"):
        load_generator(path)


def test_loading_does_not_disturb_the_global_random_stream(sample_files):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_generator(sample_files["pkl"])
    assert torch.equal(torch.rand(3), expected)


# ----------------------------------------------------------------------------------------------
# Our .safetensors format
# ----------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_exact(tmp_path):
    sd = cf.rosinality_state_dict(size=16, style_dim=8, n_mlp=2, seed=31)
    src = cf.write_rosinality_checkpoint(tmp_path / "src.pt", sd, latent_avg=torch.randn(8))
    G = load_generator(src)
    with torch.no_grad():  # an "adapted" generator: change some synthesis weights
        G.synthesis.convs[1].conv.weight.mul_(1.1)
    provenance = {"source_prompt": "photo", "target_prompt": "pencil sketch", "steps": 300, "lr": 0.002,
                  "layers": [1, 2, 3]}
    out = save_generator(G, tmp_path / "adapted.safetensors", metadata=provenance)
    assert out == tmp_path / "adapted.safetensors"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    H = load_generator(out)
    assert H.config == G.config
    for (k, a), (k2, b) in zip(G.state_dict().items(), H.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert torch.equal(H.w_avg, G.w_avg)
    z = zs(2, 8)
    with torch.no_grad():
        for mode in ("const", "none"):
            assert torch.equal(G(z, truncation_psi=0.7, noise_mode=mode), H(z, truncation_psi=0.7, noise_mode=mode))
    assert H.metadata["provenance"] == provenance
    assert H.metadata["source_sha256"] == G.source_sha256 == sha256_file(src)
    assert H.metadata["source_format"] == FORMAT_ROSINALITY and H.metadata["w_avg_origin"] == "latent_avg"
    assert H.source_sha256 == sha256_file(out) != G.source_sha256
    assert lineage_sha256(H) == lineage_sha256(G) == G.source_sha256
    # saving again without new metadata keeps provenance and the original source hash
    again = save_generator(H, tmp_path / "again.safetensors")
    meta = read_metadata(again)
    assert meta["provenance"] == provenance and meta["source_sha256"] == G.source_sha256


def test_read_metadata_reads_only_the_header(tmp_path):
    G = Generator(GeneratorConfig(img_resolution=8, channels=((4, 8), (8, 8)), z_dim=8, w_dim=8, mapping_layers=1))
    path = save_generator(G, tmp_path / "g.safetensors", metadata={"a": 1})
    meta = read_metadata(path)
    assert meta["nada_format"] == "generator" and meta["format_version"] == "1"
    assert GeneratorConfig.from_dict(meta["architecture"]) == G.config
    assert meta["provenance"] == {"a": 1} and meta["source_sha256"] == ""
    # a generator of unknown origin: the saved file starts the lineage
    loaded = load_generator(path)
    assert lineage_sha256(G) is None
    assert loaded.metadata["source_sha256"] == lineage_sha256(loaded) == sha256_file(path)
    # header only: destroying the tensor bytes does not affect it, but loading then fails cleanly
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(bytes(data[: 8 + header_len]))
    assert read_metadata(broken)["provenance"] == {"a": 1}
    with pytest.raises(CheckpointError) as info:
        load_generator(broken)
    assert_one_line_naming(info.value, broken)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a ComfyUI-NADA"):
        read_metadata(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="not a ComfyUI-NADA"):
        load_generator(tmp_path / "other.safetensors")
    not_ours = tmp_path / "x.pkl"
    not_ours.write_bytes(b"\x80\x04K\x05.")
    with pytest.raises(CheckpointError) as info:
        read_metadata(not_ours)
    assert_one_line_naming(info.value, not_ours)


def test_save_is_atomic_and_validates_input(tmp_path):
    G = Generator(GeneratorConfig(img_resolution=8, channels=((4, 8), (8, 8)), z_dim=8, w_dim=8, mapping_layers=1))
    path = save_generator(G, tmp_path / "g.safetensors", metadata={"v": 1})
    before = path.read_bytes()
    with pytest.raises(InputError, match="JSON"):
        save_generator(G, path, metadata={"bad": object()})
    with pytest.raises(InputError, match=".safetensors"):
        save_generator(G, tmp_path / "g.pt")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]


def test_unknown_future_format_version(tmp_path):
    from safetensors.torch import save_file

    G = Generator(GeneratorConfig(img_resolution=8, channels=((4, 8), (8, 8)), z_dim=8, w_dim=8, mapping_layers=1))
    meta = {"nada_format": "generator", "format_version": "99", "architecture": json.dumps(G.config.to_dict()),
            "source_sha256": "", "provenance": "{}"}
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(tmp_path / "f.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="version"):
        load_generator(tmp_path / "f.safetensors")


def test_sha256_file_streams_and_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# nada info
# ----------------------------------------------------------------------------------------------


def test_info_command_in_process(sample_files, capsys):
    assert cli.main(["info", str(sample_files["pkl"])]) == 0
    out = capsys.readouterr().out
    assert FORMAT_NVIDIA in out and "8 x 8 px" in out and "4:8  8:8" in out and "mapping.w_avg" in out
    G = load_generator(sample_files["pkl"])
    assert f"{G.num_parameters():,}" in out and f"{G.num_ws} (num_ws)" in out
    assert cli.main(["info", "--json", str(sample_files["safetensors"])]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == FORMAT_NADA and info["resolution"] == 8 and info["num_ws"] == 4
    assert info["channels"] == {"4": 16, "8": 16} and info["metadata"]["provenance"] == {"note": "x"}
    assert info["metadata"]["source_format"] == FORMAT_ROSINALITY and info["w_avg_origin"] == "latent_avg"


def test_info_command_as_a_user_runs_it(sample_files, tmp_path, capsys):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ok = subprocess.run([sys.executable, "-m", "nada_core", "info", str(sample_files["pt"])], cwd=tmp_path,
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert FORMAT_ROSINALITY in ok.stdout and "'g_ema' (EMA)" in ok.stdout and "latent_avg" in ok.stdout
    assert "Traceback" not in ok.stderr
    # A hostile file: exit status 2 and one line on stderr, nothing executed.
    bad = tmp_path / "evil.pkl"
    cf.write_malicious_pickle(bad, "os", "system", (f"touch {tmp_path / 'PWNED'}",))
    assert cli.main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "os.system" in err and str(bad) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "PWNED").exists()


def test_loading_under_inference_mode_gives_trainable_tensors(tmp_path):
    # ComfyUI runs nodes under torch.inference_mode(); a loaded generator must still be trainable.
    from factories import tiny_generator

    path = save_generator(tiny_generator(8), tmp_path / "g.safetensors")
    with torch.inference_mode():
        G = load_generator(path)
    assert not any(p.is_inference() for p in G.parameters())
    G.synthesis.convs[0].conv.weight.requires_grad_(True)
    G(torch.randn(1, G.z_dim)).sum().backward()
    assert G.synthesis.convs[0].conv.weight.grad is not None
