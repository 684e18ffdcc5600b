"""TensorFlow-era StyleGAN2 pickles (``dnnlib.tflib.network.Network``): loaded safely, images exact.

The pickles are written by :func:`checkpoint_factories.write_tf_pkl` in the layout NVIDIA's TF code
saves (a ``(G, D, Gs)`` tuple; each network pickled with NEWOBJ + BUILD of its ``__getstate__``
dict; numpy-1 array names, protocol 3). Two independent references:

- ``tests/data/tf_stylegan2_nvidia_reference.npz``: images made by NVIDIA's own code from the same
  factory weights: ``legacy.convert_tf_generator`` of stylegan2-ada-pytorch, rendered by its
  ``Generator`` on CPU with ``noise_mode="const", force_fp32=True`` (script kept outside the repo;
  regenerate it if :func:`checkpoint_factories.tf_generator_variables` ever changes);
- :mod:`reference_stylegan2` applied to a test-side translation of the TF variables.

Tolerance: max |ours - reference| <= 1e-5 * max(1, max |reference|) per image.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint_factories as cf
import tf_factories as tff
from nada_core.errors import CheckpointError, UnsafeCheckpointError
from nada_core.formats.checkpoints import FORMAT_TF, load_generator, save_generator
from reference_stylegan2 import nvidia_reference

FIXTURE = Path(__file__).parent / "data" / "tf_stylegan2_nvidia_reference.npz"
# The cases of the fixture: factory settings and seeds exactly as the fixture was made.
FIXTURE_CASES = {
    "default": dict(kw={}, seed=1, version=4),
    "cond_embed": dict(kw=dict(label_size=5, label_fmaps=7), seed=3, version=5),
    "nonoise_clamp": dict(kw=dict(use_noise=False, conv_clamp=0.5), seed=5, version=4),
}


def assert_close(got: torch.Tensor, expected, what: str = "") -> None:
    expected = torch.as_tensor(np.asarray(expected))
    assert got.shape == expected.shape, what
    for i in range(got.shape[0]):  # per image
        diff = (got[i].double() - expected[i].double()).abs().max().item()
        tol = 1e-5 * max(1.0, expected[i].abs().max().item())
        assert diff <= tol, f"{what} image {i}: max abs difference {diff:.3g} exceeds {tol:.3g}"


def write_case(tmp_path: Path, name: str, kw: dict, seed: int, version: int = 4, **build) -> tuple[Path, dict, dict]:
    kw = tff.tf_generator_settings(**kw)
    v = tff.tf_generator_variables(kw, seed=seed, label=build.pop("label", "LabelEmbed"))
    if not kw.get("use_noise", True):  # TF creates no noise variables then
        v["synthesis"] = {k: a for k, a in v["synthesis"].items()
                          if not (k.startswith("noise") or k.endswith("noise_strength"))}
    path = tff.write_tf_pkl(tmp_path / f"{name}.pkl", v, kw, version=version, **build)
    return path, kw, v


def one_line(err: BaseException, path: Path) -> str:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIXTURE_CASES))
def test_tf_pickle_matches_images_made_by_nvidias_converter(tmp_path, name):
    case = FIXTURE_CASES[name]
    path, kw, _ = write_case(tmp_path, name, case["kw"], case["seed"], case["version"])
    ref = np.load(FIXTURE)
    G = load_generator(path)
    assert G.metadata["format"] == FORMAT_TF and G.metadata["network"] == "Gs"
    z, c, ws = (torch.from_numpy(ref[f"{name}/{k}"]) for k in ("z", "c", "ws"))
    c = c if c.shape[1] else None
    assert G.c_dim == kw["label_size"]
    with torch.no_grad():
        for psi, cut in ((1.0, None), (0.6, None), (0.5, 3)):
            assert_close(G(z, c, truncation_psi=psi, truncation_cutoff=cut), ref[f"{name}/img_psi{psi}_cut{cut}"],
                         f"psi {psi} cutoff {cut}")
        assert_close(G.synthesis(ws), ref[f"{name}/img_ws"], "W+ codes")
        assert_close(G(z, c, truncation_psi=0.7, noise_mode="none"), ref[f"{name}/img_nonoise"], "no noise")
        assert_close(G.mapping(z, c), ref[f"{name}/w"], "mapping")


TF_SETTINGS = {
    "32px_hidden_dims": dict(resolution=32, mapping_fmaps=12, mapping_layers=3, latent_size=10, dlatent_size=6,
                             fmap_base=64, fmap_max=8),
    "fmap_decay_min": dict(resolution=32, fmap_base=40, fmap_decay=0.7, fmap_min=3, fmap_max=9,
                           mapping_lrmul=0.05, truncation_psi=0.5, style_mixing_prob=0.9, randomize_noise=True),
    "gray_8px": dict(resolution=8, num_channels=1, mapping_layers=1),
}


@pytest.mark.parametrize("name", list(TF_SETTINGS))
@pytest.mark.parametrize("style", [("numpy1", 3), ("numpy2", 4), ("numpy1", 2)], ids=["np1-p3", "np2-p4", "np1-p2"])
def test_tf_pickle_matches_independent_reference(tmp_path, name, style):
    path, kw, v = write_case(tmp_path, name, TF_SETTINGS[name], seed=21, numpy_style=style[0], protocol=style[1])
    G = load_generator(path)
    cfg = G.config
    stage = [int(math.log2(r)) - 1 for r in cfg.resolutions]
    want = [int(np.clip(int(kw["fmap_base"] / 2 ** (s * kw.get("fmap_decay", 1.0))), kw.get("fmap_min", 1),
                        kw["fmap_max"])) for s in stage]
    assert [c for _, c in cfg.channels] == want
    assert (cfg.z_dim, cfg.w_dim, cfg.img_channels) == (kw["latent_size"], kw["dlatent_size"], kw["num_channels"])
    assert torch.equal(G.w_avg, torch.from_numpy(v["G"]["dlatent_avg"]))
    assert G.metadata["w_avg_origin"] == "dlatent_avg"
    t = tff.tf_to_nvidia_tensors(v)
    z = torch.randn(2, kw["latent_size"], generator=torch.Generator().manual_seed(3))
    lr = kw.get("mapping_lrmul", 0.01)
    with torch.no_grad():
        assert_close(G(z, truncation_psi=0.7), nvidia_reference(t, z, 0.7, lr_multiplier=lr))
        assert_close(G(z, noise_mode="none"), nvidia_reference(t, z, lr_multiplier=lr, noise="none"))


def test_nada_info_names_the_tf_format(tmp_path, capsys):
    from nada_core import cli

    path, _, _ = write_case(tmp_path, "info", dict(label_size=2), seed=3)
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{FORMAT_TF} (NVIDIA StyleGAN2 TensorFlow pickle" in out and "2 (class-conditional" in out
    assert "'Gs' (EMA)" in out and "dlatent_avg" in out


def test_ema_false_reads_the_training_generator(tmp_path):
    path, kw, v = write_case(tmp_path, "g", {}, seed=4)
    Gs, G = load_generator(path), load_generator(path, ema=False)
    assert G.metadata["network"] == "G" and Gs.metadata["network"] == "Gs"
    assert not torch.equal(G.synthesis.const, Gs.synthesis.const)
    assert torch.allclose(G.synthesis.const, Gs.synthesis.const + 0.01)  # the factory's G = Gs + 0.01


def test_label_concat_tf_stylegan2_conditional(tmp_path):
    """TF StyleGAN2's LabelConcat: ``norm([z, c @ W]) -> Dense layers`` (no bias, no weight gain)."""
    path, kw, v = write_case(tmp_path, "concat", dict(label_size=3), seed=8, label="LabelConcat")
    G = load_generator(path)
    assert G.c_dim == 3 and G.config.c_embed == "joint"
    m = {k: torch.from_numpy(np.array(a, dtype=np.float64)) for k, a in v["mapping"].items()}
    z = torch.randn(2, kw["latent_size"], generator=torch.Generator().manual_seed(5)).double()
    c = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    x = torch.cat([z, c @ m["LabelConcat/weight"]], dim=1)
    x = x / torch.sqrt((x ** 2).mean(dim=1, keepdim=True) + 1e-8)
    for i in range(kw["mapping_layers"]):
        w, b = m[f"Dense{i}/weight"], m[f"Dense{i}/bias"]
        x = x @ w * (0.01 / math.sqrt(w.shape[0])) + b * 0.01
        x = torch.where(x >= 0, x, 0.2 * x) * math.sqrt(2)
    with torch.no_grad():
        got = G.mapping(z.float(), c.float())[:, 0]
    assert_close(got, x.numpy())
    t = tff.tf_to_nvidia_tensors(v)
    with torch.no_grad():
        assert_close(G.synthesis(G.mapping(z.float(), c.float())), nvidia_reference(t, z, ws=G.mapping(z.float(), c.float())))


def test_tf_generator_round_trips_through_our_safetensors(tmp_path):
    path, kw, _ = write_case(tmp_path, "cond", dict(label_size=4), seed=6)
    G = load_generator(path)
    out = save_generator(G, tmp_path / "cond.safetensors")
    H = load_generator(out)
    assert H.config == G.config and H.c_dim == 4
    assert H.metadata["source_format"] == FORMAT_TF
    z = torch.randn(2, kw["latent_size"], generator=torch.Generator().manual_seed(1))
    c = torch.eye(4)[[1, 2]]
    with torch.no_grad():
        assert torch.equal(G(z, c, truncation_psi=0.7), H(z, c, truncation_psi=0.7))


# ----------------------------------------------------------------------------------------------
# Hostile and broken files
# ----------------------------------------------------------------------------------------------


def test_build_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "PWNED"
    src = tff.FAKE_TF_MODULE_SRC.format(marker=str(marker))
    exec(compile(src, "check", "exec"), {})  # the source really would write the marker ...
    assert marker.exists()
    marker.unlink()
    path, _, _ = write_case(tmp_path, "evil_src", {}, seed=2, module_src=src)
    G = load_generator(path)  # ... but loading only keeps it as text
    assert G.c_dim == 0 and not marker.exists()


@pytest.mark.parametrize("what,value,match", [
    ("resolution", 2**20, "resolution"),
    ("fmap_max", 10**9, "fmap_max"),
    ("latent_size", 10**7, "latent_size"),
    ("label_size", 10**9, "label_size"),
    ("mapping_layers", 10**6, "mapping_layers"),
    ("resample_kernel", list(range(10**5)), "resample kernel"),
    ("resolution", "1024", "not an integer"),
    ("fmap_decay", float("nan"), "fmap_decay"),
    ("architecture", "resnet", "'skip'"),
    ("normalize_latents", False, "normalize_latents"),
    ("some_new_setting", 1, "does not know"),
])
def test_bad_static_kwargs_give_one_line_before_anything_is_built(tmp_path, monkeypatch, what, value, match):
    kw = tff.tf_generator_settings()
    v = tff.tf_generator_variables(kw, seed=1)
    Gs = tff.build_tf_generator(v, kw)
    Gs.state["static_kwargs"][what] = value
    path = cf.write_pickle(tmp_path / "bad.pkl", (Gs, Gs, Gs), protocol=3)
    import nada_core.formats.checkpoints as ck

    monkeypatch.setattr(ck, "Generator", None)  # building a module would fail loudly
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    one_line(info.value, path)


@pytest.mark.parametrize("case,match", [
    ("wrong_shape", "has shape"),
    ("missing", "is missing"),
    ("extra_resnet", "resnet"),
    ("orig_arch", "'orig'"),
    ("stylegan1", "StyleGAN 1"),
    ("string_variable", "not a numeric array"),
    ("variables_not_list", "not a list"),
    ("old_version", "too old"),
    ("no_components", "no mapping/synthesis"),
    ("cycle", "nest deeper"),
    ("two_networks", "2 networks"),
])
def test_broken_tf_pickles_give_one_line(tmp_path, case, match):
    kw = tff.tf_generator_settings()
    v = tff.tf_generator_variables(kw, seed=1)
    s = v["synthesis"]
    if case == "wrong_shape":
        s["8x8/Conv1/weight"] = s["8x8/Conv1/weight"][:, :, :3]
    elif case == "missing":
        del s["noise2"]
    elif case == "extra_resnet":
        s["8x8/Skip/weight"] = np.zeros((1, 1, 8, 8), np.float32)
    elif case == "orig_arch":
        s["ToRGB_lod0/weight"] = np.zeros((1, 1, 4, 3), np.float32)
    elif case == "stylegan1":
        v["synthesis"] = {"4x4/Const/const": s["4x4/Const/const"], "4x4/Const/Noise/weight": np.zeros(8, np.float32)}
    if case in ("string_variable", "variables_not_list", "old_version", "no_components", "cycle", "two_networks"):
        Gs = tff.build_tf_generator(v, kw, "Gs", version=3 if case == "old_version" else 4)
        if case == "string_variable":
            Gs.state["components"]["mapping"].state["variables"].append(("Dense9/weight", "rm -rf /"))
        elif case == "variables_not_list":
            Gs.state["components"]["synthesis"].state["variables"] = "nope"
        elif case == "no_components":
            Gs.state["components"] = {}
        elif case == "cycle":
            syn = Gs.state["components"]["synthesis"]
            node = syn
            for _ in range(6):  # a chain deeper than any generator
                child = tff.build_tf_generator(v, kw, "x")
                node.state["components"] = {"deeper": child}
                node = child
        obj = (Gs, Gs) if case == "two_networks" else (Gs, Gs, Gs)
        path = cf.write_pickle(tmp_path / f"{case}.pkl", obj, protocol=3)
    else:
        path = tff.write_tf_pkl(tmp_path / f"{case}.pkl", v, kw)
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    one_line(info.value, path)


def test_tf_pickle_naming_a_forbidden_global_is_refused(tmp_path):
    marker = tmp_path / "PWNED"

    class _Evil:
        def __reduce_ex__(self, protocol):
            return (cf._Global("os", "system"), (f"touch {marker}",))

    kw = tff.tf_generator_settings()
    v = tff.tf_generator_variables(kw, seed=1)
    Gs = tff.build_tf_generator(v, kw)
    Gs.state["static_kwargs"]["resolution"] = _Evil()
    path = cf.write_pickle(tmp_path / "evil.pkl", (Gs, Gs, Gs), protocol=3)
    with pytest.raises(UnsafeCheckpointError, match="os.system"):
        load_generator(path)
    assert not marker.exists()
