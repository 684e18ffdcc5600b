"""nada_core.guidance.clip: loading every weights layout offline, safe reading, preprocessing, encoders."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nada_core import clip as nclip
from nada_core.guidance.clip import (ClipEnsemble, Preprocess, load_clip, load_clip_ensemble,
                            preprocess_unit_images, read_torchscript_state_dict)
from nada_core.errors import ClipError, InputError
from tests.clip_factory import (LAYOUTS, OPENAI_MEAN, OPENAI_STD, register_tiny_config, save_tiny_clip,
                                tiny_arch_name, tiny_clip_model)

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["a photo of a face.", "a pencil sketch of a face.", "zzz"]



@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every layout of the same tiny weights (seed 0); OpenAI layouts are QuickGELU."""
    root = tmp_path_factory.mktemp("tiny_clips")
    specs = {layout: save_tiny_clip(root, layout) for layout in LAYOUTS}
    specs["hf_quickgelu"] = save_tiny_clip(root / "qg", "hf", quick_gelu=True)
    return root, specs


@pytest.fixture(scope="module")
def tiny(saved):
    return load_clip(saved[1]["safetensors"])


def _tokenize(texts):
    import open_clip

    return open_clip.get_tokenizer("ViT-B-32")(texts)


def _reference(model, texts, img):
    """Embeddings computed straight from an open_clip model (32 px input: no resizing needed)."""
    with torch.no_grad():
        t = F.normalize(model.encode_text(_tokenize(texts)).float(), dim=-1)
        x = ((img + 1) / 2 - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        i = F.normalize(model.encode_image(x).float(), dim=-1)
    return t, i


def _openai_reference(sd):
    """open_clip's own OpenAI builder (independent of our loader) from an OpenAI-layout state dict."""
    from open_clip.model import build_model_from_openai_state_dict

    sd = {k: v for k, v in sd.items() if k != "attn_mask"}
    return build_model_from_openai_state_dict(sd, quick_gelu=True, cast_dtype=None).float().eval()


# ------------------------------------------------------------------------------------------------
# Loading every layout
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_and_matches_the_saved_model(saved, layout):
    root, specs = saved
    clip = load_clip(specs[layout])
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    if layout.startswith("openai"):
        path = Path(specs[layout])
        sd = (read_torchscript_state_dict(path) if layout == "openai_jit"
              else torch.load(path, weights_only=True))
        ref_model = _openai_reference(dict(sd))
        assert clip.quick_gelu, "OpenAI layouts must use QuickGELU"
    else:
        ref_model = tiny_clip_model(seed=0)
        assert not clip.quick_gelu
    ref_t, ref_i = _reference(ref_model, PROMPTS, img)
    got_t, got_i = clip.encode_text(PROMPTS), clip.encode_image(img)
    assert got_t.shape == (3, 32) and got_i.shape == (2, 32)
    torch.testing.assert_close(got_t, ref_t, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_i, ref_i, atol=1e-5, rtol=1e-4)
    assert clip.embed_dim == 32 and clip.image_size == 32
    assert clip.mean == pytest.approx(OPENAI_MEAN) and clip.std == pytest.approx(OPENAI_STD)
    assert not any(p.requires_grad for p in clip.model.parameters())
    assert not clip.model.training


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.*:FutureWarning")
def test_torchscript_reader_matches_torch_jit_and_the_archive_looks_like_openai(saved):
    path = Path(saved[1]["openai_jit"])
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    root = names[0].split("/")[0]
    for entry in ("data.pkl", "constants.pkl", "version"):
        assert f"{root}/{entry}" in names
    assert any(n.startswith(f"{root}/code/__torch__/") for n in names)
    assert any(n.startswith(f"{root}/data/") for n in names)
    ours = read_torchscript_state_dict(path)
    theirs = torch.jit.load(str(path), map_location="cpu").state_dict()  # our own test file: safe to run
    assert set(theirs) <= set(ours)
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype and torch.equal(ours[k], v), k
    assert ours["visual.conv1.weight"].dtype == torch.float16  # like OpenAI's files
    assert "input_resolution" in ours and "vocab_size" in ours


def test_openai_torchscript_loads_without_running_torchscript(saved, monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("TorchScript / pickle loader must not be used for OpenAI archives")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    clip = load_clip(saved[1]["openai_jit"])
    assert clip.quick_gelu and clip.arch.endswith("quickgelu")
    assert torch.isfinite(clip.encode_text(["x"])).all()


def test_named_openai_file_switches_to_quickgelu_and_gelu_would_differ(saved):
    path = saved[1]["openai_state_dict"]
    name = register_tiny_config()
    clip = load_clip(f"{name}:{path}")
    assert clip.arch == tiny_arch_name(quick_gelu=True) and clip.quick_gelu
    forced_gelu = load_clip(f"{name}:{path}", quick_gelu=False)
    assert not forced_gelu.quick_gelu
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    # The activation matters: the wrong one would silently give other embeddings.
    assert (clip.encode_image(img) - forced_gelu.encode_image(img)).abs().max() > 1e-3


def test_hf_config_quick_gelu_is_honoured(saved):
    clip = load_clip(saved[1]["hf_quickgelu"])
    assert clip.quick_gelu
    ref_t, ref_i = _reference(tiny_clip_model(seed=0, quick_gelu=True), PROMPTS, torch.zeros(1, 3, 32, 32))
    torch.testing.assert_close(clip.encode_text(PROMPTS), ref_t, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(clip.encode_image(torch.zeros(1, 3, 32, 32)), ref_i, atol=1e-5, rtol=1e-4)


def test_weights_file_inside_hf_folder_uses_the_folder_config(saved):
    folder = Path(saved[1]["hf_quickgelu"])
    clip = load_clip(str(folder / "open_clip_model.safetensors"))
    assert clip.quick_gelu


def test_names_are_unique_per_weights_and_describe_is_json(saved):
    a = load_clip(saved[1]["safetensors"])
    b = load_clip(saved[1]["hf"])
    assert a.name != b.name and a.arch == b.arch == tiny_arch_name()
    json.dumps(a.describe())


def test_bf16_precision_is_close_to_fp32_and_differentiable(saved, tiny):
    low = load_clip(saved[1]["safetensors"], precision="bf16")
    assert low.dtype == torch.bfloat16
    img = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    e = low.encode_image(img)
    assert e.dtype == torch.float32
    assert F.cosine_similarity(e, tiny.encode_image(img.detach())).min() > 0.98
    e.sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all()
    with pytest.raises(ClipError, match="precision"):
        load_clip(saved[1]["safetensors"], precision="fp8")


# ------------------------------------------------------------------------------------------------
# Clear errors
# ------------------------------------------------------------------------------------------------
def test_weights_of_another_architecture_name_the_mismatch(saved):
    path = saved[1]["safetensors"].split(":", 1)[1]
    with pytest.raises(ClipError) as err:
        load_clip(f"ViT-B-32:{path}")
    msg = str(err.value)
    assert Path(path).name in msg and "ViT-B-32" in msg
    assert "vision width 64 (it expects 768)" in msg
    assert f"pass {tiny_arch_name()}:" in msg


def test_smaller_tiny_weights_under_the_tiny_name_suggest_their_own_name(tmp_path):
    model = tiny_clip_model(width=32)
    spec = save_tiny_clip(tmp_path, "safetensors", model=model)
    name32, path = spec.split(":", 1)
    with pytest.raises(ClipError, match=r"vision width 32 \(it expects 64\).*pass " + name32):
        load_clip(f"{register_tiny_config()}:{path}")
    assert load_clip(spec).embed_dim == 32


def test_missing_empty_and_corrupt_files(tmp_path):
    name = register_tiny_config()
    with pytest.raises(ClipError, match="not found"):
        load_clip(f"{name}:{tmp_path / 'nope.safetensors'}")
    with pytest.raises(ClipError, match="not found"):
        load_clip(str(tmp_path / "nope.pt"))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ClipError, match="empty"):
        load_clip(f"{name}:{empty}")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(64))
    with pytest.raises(ClipError, match="not a valid .safetensors"):
        load_clip(f"{name}:{junk}")
    junk_bin = tmp_path / "junk.bin"
    junk_bin.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ClipError, match="cannot read"):
        load_clip(f"{name}:{junk_bin}")


def test_truncated_safetensors_is_reported(saved, tmp_path):
    src = Path(saved[1]["safetensors"].split(":", 1)[1])
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ClipError, match="cut.safetensors"):
        load_clip(f"{register_tiny_config()}:{cut}")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"visual.conv1.weight": _Evil()}, path)
    with pytest.raises(ClipError, match="refused.*would call (posix|nt).system.*nothing was executed"):
        load_clip(f"{register_tiny_config()}:{path}")


def test_torchscript_archive_with_foreign_global_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    payload = (b"\x80\x02cposix\nsystem\nq\x00X" + len(f"touch {marker}").to_bytes(4, "little")
               + f"touch {marker}".encode() + b"\x85R.")
    path = tmp_path / "ViT-B-32.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ViT-B-32/data.pkl", payload)
        zf.writestr("ViT-B-32/constants.pkl", pickle.dumps(()))
        zf.writestr("ViT-B-32/code/__torch__/model.py", "")
        zf.writestr("ViT-B-32/version", "3\n")
    with pytest.raises(ClipError, match="refused.*posix.system"):
        load_clip(str(path))
    assert not marker.exists()


def test_unknown_model_name_lists_close_matches(saved):
    path = saved[1]["safetensors"].split(":", 1)[1]
    with pytest.raises(ClipError, match="unknown CLIP model 'ViT-B-33'.*ViT-B-32"):
        load_clip(f"ViT-B-33:{path}")
    assert nclip.resolve_architecture("ViT-B/32") == "ViT-B-32"
    assert nclip.resolve_architecture("vit-b-32") == "ViT-B-32"


def test_bare_open_clip_file_asks_for_the_name(saved):
    path = saved[1]["safetensors"].split(":", 1)[1]
    with pytest.raises(ClipError, match=f"pass the model name.*{tiny_arch_name()}"):
        load_clip(path)


def test_folder_problems(tmp_path, saved):
    with pytest.raises(ClipError, match="open_clip_config.json"):
        load_clip(str(tmp_path))
    folder = tmp_path / "nocfg"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 3}}))
    with pytest.raises(ClipError, match="model_cfg"):
        load_clip(str(folder))
    good_cfg = (Path(saved[1]["hf"]) / "open_clip_config.json").read_text()
    (folder / "open_clip_config.json").write_text(good_cfg)
    (folder / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ClipError, match="no open_clip_model.safetensors.*model.safetensors"):
        load_clip(str(folder))
    (folder / "open_clip_config.json").write_text("{broken")
    with pytest.raises(ClipError, match="cannot read"):
        load_clip(str(folder))


def test_spec_without_weights_and_unknown_tag():
    with pytest.raises(ClipError, match="names no weights"):
        load_clip("ViT-B-32")
    with pytest.raises(ClipError, match="empty CLIP spec"):
        load_clip("  ")
    with pytest.raises(ClipError, match="known tags:.*openai"):
        load_clip("ViT-B-32:no_such_tag")


# ------------------------------------------------------------------------------------------------
# Downloads: cache first, fail fast offline
# ------------------------------------------------------------------------------------------------
def _fake_hub_cache(cache: Path, repo: str, files: dict[str, bytes]) -> None:
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text("0" * 40)
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_tag_is_loaded_from_the_local_hub_cache_without_network(saved, tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc
    from open_clip import pretrained as ocp

    name = register_tiny_config()
    weights = Path(saved[1]["safetensors"].split(":", 1)[1]).read_bytes()
    _fake_hub_cache(tmp_path, "nada-test/tiny-clip", {"open_clip_model.safetensors": weights})
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setitem(ocp._PRETRAINED, name, {"testtag": {"hf_hub": "nada-test/tiny-clip/", "quick_gelu": True,
                                                            "mean": OPENAI_MEAN, "std": OPENAI_STD}})
    # _probe is looked up in the hub module (by _ensure_online), so patch it there.
    monkeypatch.setattr(nclip.hub, "_probe", lambda *a, **k: pytest.fail("network must not be probed when cached"))
    clip = load_clip(f"{name}:testtag")
    assert clip.quick_gelu and clip.arch == tiny_arch_name(quick_gelu=True)
    assert clip.name == f"{tiny_arch_name(quick_gelu=True)}:testtag"


def test_tag_offline_fails_fast_with_the_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(ClipError) as err:
        load_clip("ViT-B-32:openai")
    assert time.monotonic() - t0 < 3
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "models/open_clip" in msg
    assert "https://huggingface.co/timm/vit_base_patch32_clip_224.openai" in msg
    with pytest.raises(ClipError, match="offline"):
        load_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")


def test_unreachable_endpoint_fails_fast_in_a_fresh_process(tmp_path):
    code = textwrap.dedent("""
        import time
        import open_clip  # imported first: only the failing load itself is timed
        from nada_core.guidance.clip import load_clip
        from nada_core.errors import ClipError
        t0 = time.monotonic()
        try:
            load_clip("ViT-B-16:laion2b_s34b_b88k")
        except ClipError as err:
            print("ERR", round(time.monotonic() - t0, 2), err)
        else:
            print("LOADED")
    """)
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"),
               HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), PYTHONPATH=str(REPO))
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HTTPS_PROXY", None)
    env.pop("https_proxy", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         cwd=str(REPO))
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith(("ERR", "LOADED"))), out.stderr[-500:])
    assert line.startswith("ERR"), line
    elapsed = float(line.split()[1])
    assert elapsed < 5, line
    assert "unreachable" in line and "models/open_clip" in line and "laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in line


# ------------------------------------------------------------------------------------------------
# Preprocessing and encoders
# ------------------------------------------------------------------------------------------------
def _test_picture(h, w, seed):
    from PIL import Image

    rng = np.random.RandomState(seed)
    base = (rng.rand(max(2, h // 8), max(2, w // 8), 3) * 255).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR)).astype(np.float32)
    return Image.fromarray((smooth + rng.rand(h, w, 3) * 30).clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [224, 32])
@pytest.mark.parametrize("hw", [(300, 400), (50, 37), (17, 90), (512, 512)])
def test_tensor_preprocessing_matches_open_clip_pil_pipeline(size, hw):
    from open_clip.transform import image_transform

    from nada_core.media.images import pil_to_unit

    pil = _test_picture(*hw, seed=hw[0])
    expected = image_transform(size, is_train=False)(pil)
    got = preprocess_unit_images(pil_to_unit(pil)[None], Preprocess(size=size), clamp=True)[0]
    assert got.shape == expected.shape == (3, size, size)
    pixel_diff = (got - expected) * torch.tensor(OPENAI_STD).view(3, 1, 1)  # back to [0, 1] units
    assert pixel_diff.abs().mean() < 1 / 255
    assert pixel_diff.abs().max() < 6 / 255


def test_pil_embeddings_match_open_clips_own_pipeline(saved, tiny):
    import open_clip

    path = saved[1]["safetensors"].split(":", 1)[1]
    model, _, preprocess = open_clip.create_model_and_transforms(tiny_arch_name(), pretrained=path)
    model.eval()
    pictures = [_test_picture(70, 50, 3), _test_picture(24, 96, 4), _test_picture(200, 200, 5)]
    with torch.no_grad():
        ref = F.normalize(model.encode_image(torch.stack([preprocess(p) for p in pictures])), dim=-1)
    ours = tiny.encode_pil(pictures)
    assert F.cosine_similarity(ours, ref).min() > 0.999


def test_encode_image_any_size_is_unit_norm_and_differentiable(tiny):
    for shape in [(2, 3, 16, 16), (1, 3, 64, 64), (2, 3, 40, 24), (2, 1, 32, 32)]:
        img = (torch.rand(*shape) * 2 - 1).requires_grad_(True)
        emb = tiny.encode_image(img)
        assert emb.shape == (shape[0], 32)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(shape[0]))
        emb[:, 0].sum().backward()
        assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.model.parameters())


def test_encode_image_matches_preprocessing_then_model(tiny):
    img = torch.rand(2, 3, 48, 48) * 2 - 1
    x = F.interpolate((img + 1) / 2, size=(32, 32), mode="bicubic", antialias=True, align_corners=False)
    x = (x - torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)) / torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = F.normalize(tiny.model.encode_image(x), dim=-1)
    torch.testing.assert_close(tiny.encode_image(img), ref, atol=1e-5, rtol=1e-4)


def test_encode_unit_images_accepts_lists_of_sizes(tiny):
    imgs = [torch.rand(3, 20, 30), torch.rand(3, 64, 64), torch.rand(1, 3, 32, 32)]
    emb = tiny.encode_unit_images(imgs)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb[1:2], tiny.encode_unit_images(imgs[1][None]))
    with pytest.raises(InputError):
        tiny.encode_unit_images([])
    with pytest.raises(InputError, match="channels"):
        tiny.encode_image(torch.zeros(1, 5, 32, 32))


def test_text_is_encoded_once_per_text_and_keeps_no_graph(saved):
    clip = load_clip(saved[1]["safetensors"])
    seen = []
    tok = clip.tokenizer
    clip.tokenizer = lambda texts: (seen.append(list(texts)), tok(texts))[1]
    first = clip.encode_text(["a", "b", "a"])
    second = clip.encode_text(["b", "a"])
    assert clip.text_encoder_calls == 1 and seen == [["a", "b"]]
    torch.testing.assert_close(second, first[[1, 0]])
    clip.encode_text(["a", "c"])
    assert clip.text_encoder_calls == 2 and seen[-1] == ["c"]
    assert first.grad_fn is None and not first.requires_grad
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(3))
    with pytest.raises(InputError):
        clip.encode_text([])


# ------------------------------------------------------------------------------------------------
# Ensembles
# ------------------------------------------------------------------------------------------------
class _NeverCalled:
    name = "never"

    def encode_text(self, texts):
        raise AssertionError("zero-weight model was called")

    encode_image = encode_text


def test_zero_weight_member_is_dropped_and_never_called(tiny):
    ens = ClipEnsemble([(tiny, 1.5), (_NeverCalled(), 0.0)])
    assert ens.names == [tiny.name] and ens.dropped == ["never"] and ens.weights == {tiny.name: 1.5}
    out = ens.encode_image(torch.zeros(1, 3, 32, 32))
    assert list(out) == [tiny.name]
    ens.encode_text(["x"])


def test_ensemble_rejects_bad_weights_and_duplicates(tiny):
    with pytest.raises(InputError, match=">= 0"):
        ClipEnsemble([(tiny, -1.0)])
    with pytest.raises(InputError, match="weight 0"):
        ClipEnsemble([(tiny, 0.0)])
    with pytest.raises(InputError, match="twice"):
        ClipEnsemble([(tiny, 1.0), (tiny, 1.0)])
    with pytest.raises(InputError):
        ClipEnsemble([])


def test_load_clip_ensemble_never_loads_zero_weight_specs(saved, tmp_path):
    ens = load_clip_ensemble([(saved[1]["safetensors"], 1.0), (saved[1]["hf"], 0.5),
                              (f"ViT-B-32:{tmp_path / 'missing.safetensors'}", 0)])
    assert len(ens) == 2 and ens.weights[ens.names[1]] == 0.5
    assert ens.dropped == [f"ViT-B-32:{tmp_path / 'missing.safetensors'}"]
    with pytest.raises(InputError, match="weight 0"):
        load_clip_ensemble([(saved[1]["safetensors"], 0)])


def test_missing_and_unknown_keys_are_counted_and_named(tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in tiny_clip_model().state_dict().items()}
    del sd["ln_final.bias"]
    sd["extra.weight"] = torch.zeros(2)
    path = tmp_path / "odd.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ClipError, match=r"odd.safetensors do not fit .*1 weights are missing \(e.g. ln_final.bias\)"
                                        r".*1 are unknown .*extra.weight"):
        load_clip(f"{register_tiny_config()}:{path}")


def test_spec_parsing_forms(tmp_path):
    from nada_core.guidance.clip import parse_clip_spec

    assert parse_clip_spec("ViT-B-32:openai").kind == "tag"
    file_spec = parse_clip_spec("ViT-B-32:models/open_clip/x.safetensors")
    assert file_spec.kind == "file" and file_spec.arch == "ViT-B-32" and file_spec.path.name == "x.safetensors"
    assert parse_clip_spec(f"local-dir:{tmp_path}").kind == "folder"
    assert parse_clip_spec(str(tmp_path)).kind == "folder"
    hub = parse_clip_spec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert hub.kind == "hub" and hub.tag == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    with pytest.raises(ClipError, match="org/name"):
        parse_clip_spec("hf-hub:justaname")
    with pytest.raises(ClipError, match="incomplete"):
        parse_clip_spec("ViT-B-32:")


def test_openai_resnet_state_dict_loads_from_a_bare_path(tmp_path):
    from open_clip.model import CLIP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        ref = CLIP(embed_dim=32, vision_cfg=dict(layers=(1, 1, 1, 1), width=16, image_size=64),
                   text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                   quick_gelu=True).eval()
    sd = {k: v.half() if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    with torch.no_grad():  # the reference sees the same fp16-rounded weights
        ref.load_state_dict({k: v.float() for k, v in sd.items()})
    sd.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    path = tmp_path / "RN-tiny.pt"
    torch.save(sd, path)
    clip = load_clip(str(path))
    assert clip.quick_gelu and clip.image_size == 64
    img = torch.rand(2, 3, 64, 64) * 2 - 1
    _, ref_i = _reference(ref, ["x"], img)
    torch.testing.assert_close(clip.encode_image(img), ref_i, atol=1e-5, rtol=1e-4)


def test_importing_the_modules_stays_light():
    code = ("import sys, nada_core.guidance.clip, nada_core.guidance.directions, nada_core.guidance.losses; "
            "print('open_clip' in sys.modules, 'huggingface_hub' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert out.stdout.split() == ["False", "False"], out.stderr[-400:]


def test_loading_under_inference_mode_gives_a_differentiable_model(tmp_path):
    # ComfyUI loads everything under torch.inference_mode(); gradients must still reach the image.
    spec = save_tiny_clip(tmp_path, "hf")
    with torch.inference_mode():
        model = load_clip(spec)
    assert not any(p.is_inference() for p in model.model.parameters())
    img = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    model.encode_image(img).sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_short_reason_is_one_line_and_cut_at_the_limit():
    from nada_core.errors import short_reason

    assert short_reason(ValueError("bad\n  header\tbytes")) == "bad header bytes"
    assert short_reason(KeyError()) == "KeyError"  # an empty message names the exception type
    long = short_reason(OSError("x" * 500))
    assert len(long) == 200 and long.endswith("...") and long.startswith("x" * 197)
    assert short_reason(OSError("y" * 81), 80) == "y" * 77 + "..."
    assert short_reason(OSError("z" * 80), 80) == "z" * 80


def test_the_package_keeps_its_public_names_and_small_modules():
    import nada_core.guidance.clip as pkg

    for name in pkg.__all__ + ["HF_CONFIG_NAME", "HF_WEIGHT_NAMES", "MODELS_HINT", "PROBE_TIMEOUT_S"]:
        assert hasattr(pkg, name), name
    assert nclip is pkg  # the old flat name is the package itself
    # Private helpers live in their modules only, so a stale patch on the package fails loudly.
    assert not hasattr(pkg, "_probe") and hasattr(pkg.hub, "_probe")
    for path in Path(pkg.__file__).parent.glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) < 400, path.name


def test_sequence_first_attention_equals_open_clips_batch_first_layout():
    """The ClipModel's image tower runs attention on [L, N, D] activations (one matmul per projection
    instead of a batched one per token): image embeddings and their input gradients equal those of
    open_clip's own batch-first layout, computed on an untouched copy of the same weights."""
    import copy

    from tests.clip_factory import tiny_clip_model
    from nada_core.guidance.clip.model import sequence_first_attention

    reference = tiny_clip_model(seed=3).requires_grad_(False)
    changed = copy.deepcopy(reference)
    assert reference.visual.transformer.batch_first  # open_clip's default layout
    assert sequence_first_attention(changed.visual)
    assert not changed.visual.transformer.batch_first
    assert all(not b.attn.batch_first for b in changed.visual.transformer.resblocks)
    assert not sequence_first_attention(changed.visual)  # already applied: nothing left to change
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outs, grads = [], []
    for model in (reference, changed):
        xi = x.clone().requires_grad_(True)
        e = model.encode_image(xi)
        (e * torch.linspace(-1, 1, e.shape[1])).sum().backward()
        outs.append(e.detach())
        grads.append(xi.grad)
    assert outs[0].abs().max() > 0.01 and grads[0].abs().max() > 0
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
    assert not sequence_first_attention(torch.nn.Linear(2, 2))  # no transformer: left alone


def test_clip_model_runs_its_image_tower_sequence_first(tiny):
    assert tiny.model.visual.transformer.batch_first is False


def test_patch_embedding_as_matmul_equals_the_convolution_forward_and_backward():
    """The ViT patch embedding runs as one matmul: embeddings, input gradients and (when asked for)
    the weight gradient equal the convolution's on the same parameters; sizes that are not a whole
    number of patches drop the last pixels as the convolution does."""
    from nada_core.guidance.clip.model import PatchEmbedding, patch_embedding_as_matmul

    gen = torch.Generator().manual_seed(5)
    for bias, side in ((False, 32), (True, 37)):
        conv = torch.nn.Conv2d(3, 6, kernel_size=8, stride=8, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            if bias:
                conv.bias.copy_(torch.randn(6, generator=gen))
        emb = PatchEmbedding(conv)
        assert emb.weight is conv.weight  # same parameter: state dicts unchanged
        x = torch.randn(2, 3, side, side, generator=gen)
        outs, grads, wgrads = [], [], []
        for module in (conv, emb):
            conv.weight.grad = None
            xi = x.clone().requires_grad_(True)
            y = module(xi)
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
            outs.append(y.detach())
            grads.append(xi.grad)
            wgrads.append(conv.weight.grad.clone())
        assert outs[1].shape == (2, 6, side // 8, side // 8)
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(wgrads[1], wgrads[0], rtol=1e-5, atol=1e-5)
        if side > 32:  # the pixels past the last whole patch take no part
            assert grads[1][..., 32:].abs().max() == 0 and grads[1][..., :32, :32].abs().max() > 0
    other = torch.nn.Conv2d(3, 6, kernel_size=3, stride=1)
    holder = torch.nn.Module()
    holder.conv1 = other
    assert not patch_embedding_as_matmul(holder) and holder.conv1 is other  # not a patch embedding: left alone


def test_clip_model_embeds_patches_by_matmul(tiny):
    from nada_core.guidance.clip.model import PatchEmbedding

    assert isinstance(tiny.model.visual.conv1, PatchEmbedding)
    assert "visual.conv1.weight" in tiny.model.state_dict()
