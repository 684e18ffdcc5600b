"""Node chains run by calling the node functions directly (no ComfyUI), with tiny models.

Checks ComfyUI's IMAGE convention ([B, H, W, C] float32 in [0, 1] on the CPU), results against an
independent computation, that nodes never modify their inputs (ComfyUI shares cached outputs),
and that problems surface as one short message naming the node.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.formats.checkpoints import load_generator, save_generator
from nada_core.media.images import to_unit
from nada_core.editing.latents import Latents
from nada_core.seeds import z_from_seeds
from nodes import NODE_CLASS_MAPPINGS as NODES
from nodes.common import NadaNodeError
from tests.clip_factory import save_tiny_clip
from tests.comfy_harness import save_adapted_copy
from tests.factories import tiny_generator


def node(name):
    return NODES[name]()


def state(G) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_comfy_image(img, n=None, size=None):
    assert isinstance(img, torch.Tensor) and img.dtype == torch.float32 and img.device.type == "cpu"
    assert img.ndim == 4 and img.shape[-1] == 3
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    if n is not None:
        assert img.shape[0] == n
    if size is not None:
        assert tuple(img.shape[1:3]) == tuple(size)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A models/input/output tree with a tiny generator and two tiny CLIPs, exposed through the env vars."""
    root = tmp_path_factory.mktemp("nada_nodes")
    (root / "models" / "stylegan").mkdir(parents=True)
    (root / "models" / "open_clip").mkdir(parents=True)
    (root / "input").mkdir()
    (root / "output").mkdir()
    save_generator(tiny_generator(32, seed=0), root / "models" / "stylegan" / "tiny.safetensors")
    # "other": as if adapted from "tiny" (same lineage), so blends and shared latents are allowed
    save_adapted_copy(root / "models" / "stylegan" / "tiny.safetensors", root / "models" / "stylegan" / "other.safetensors")
    save_generator(tiny_generator(32, seed=5), root / "models" / "stylegan" / "unrelated.safetensors")
    hf = Path(save_tiny_clip(root / "models" / "open_clip", layout="hf", seed=0))
    spec2 = save_tiny_clip(root / "models" / "open_clip", layout="safetensors", seed=1)
    mp = pytest.MonkeyPatch()
    mp.setenv("NADA_MODELS_DIR", str(root / "models"))
    mp.setenv("NADA_INPUT_DIR", str(root / "input"))
    mp.setenv("NADA_OUTPUT_DIR", str(root / "output"))
    ns = types.SimpleNamespace(root=root, clip_folder=hf.name, clip_file=Path(spec2.split(":", 1)[1]).name,
                               clip_arch=spec2.split(":", 1)[0])
    yield ns
    mp.undo()


@pytest.fixture(scope="module")
def G(env):
    return node("NadaLoadGenerator").load("tiny.safetensors", "EMA")[0]


@pytest.fixture(scope="module")
def clip(env):
    return node("NadaLoadCLIP").load(env.clip_folder, "ViT-B-32", 1.0, "fp32")[0]


@pytest.fixture(scope="module")
def direction(clip):
    return node("NadaTextDirection").direction(clip, "photo", "pencil sketch", True)[0]


@pytest.fixture(scope="module")
def trained(G, clip, direction):
    """A 3-step training run under inference mode (as ComfyUI runs nodes)."""
    before = state(G)
    with torch.inference_mode():
        out = node("NadaTrain").train(G, clip, direction, steps=3, batch=2, lr=0.01, layers="all", interval=1,
                                      falloff=0, mixing=0.9, global_weight=0.0, angle_weight=0.0, seed=7,
                                      preview_every=1, preview_seeds="0-2")
    return types.SimpleNamespace(out=out, before=before)


# --------------------------------------------------------------------------------------- generators


def test_load_generator_lists_files_and_loads_them(env, G):
    names = NODES["NadaLoadGenerator"].INPUT_TYPES()["required"]["generator_name"][0]
    assert names == ["other.safetensors", "tiny.safetensors", "unrelated.safetensors"]
    ref = load_generator(env.root / "models" / "stylegan" / "tiny.safetensors")
    assert same_state(state(G), state(ref))
    assert not G.training


def test_loader_change_marker_follows_the_file(env):
    cls = NODES["NadaLoadGenerator"]
    a = cls.IS_CHANGED(generator_name="tiny.safetensors", weights="EMA")
    assert a == cls.IS_CHANGED(generator_name="tiny.safetensors", weights="EMA")
    assert a != cls.IS_CHANGED(generator_name="other.safetensors", weights="EMA")
    assert a != cls.IS_CHANGED(generator_name="tiny.safetensors", weights="non-EMA")
    target = env.root / "models" / "stylegan" / "copy.safetensors"
    save_generator(tiny_generator(32, seed=0), target)
    first = cls.IS_CHANGED(generator_name="copy.safetensors", weights="EMA")
    save_generator(tiny_generator(32, seed=3), target)  # replaced file -> ComfyUI must reload
    assert cls.IS_CHANGED(generator_name="copy.safetensors", weights="EMA") != first
    target.unlink()


def test_missing_generator_fails_with_one_clear_message(env):
    with pytest.raises(NadaNodeError) as info:
        node("NadaLoadGenerator").load("ffhq.pkl", "EMA")
    msg = str(info.value)
    assert msg.startswith("NADA Load Generator: stylegan file 'ffhq.pkl' not found; put it in ")
    assert str(env.root / "models" / "stylegan") in msg and "\n" not in msg
    assert NODES["NadaLoadGenerator"].VALIDATE_INPUTS("tiny.safetensors") is True


def test_seeds_render_matches_the_generator(G):
    latent = node("NadaLatentFromSeeds").make(G, "3, 5-6", 0.7)[0]
    assert isinstance(latent, Latents) and latent.ws.shape == (3, G.num_ws, G.w_dim)
    images = node("NadaRender").render(G, latent, "const")[0]
    assert_comfy_image(images, 3, (32, 32))
    with torch.no_grad():  # nodes run on the best device outside ComfyUI; compare on the CPU
        ws = G.mapping(z_from_seeds([3, 5, 6], G.z_dim, device=G.w_avg.device), truncation_psi=0.7)
        expected = to_unit(G.synthesis(ws, noise_mode="const")).permute(0, 2, 3, 1).cpu()
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)


def test_sample_is_seeded_and_consistent_with_render(G):
    images, latent = node("NadaSample").sample(G, 10, 3, 0.7)
    assert_comfy_image(images, 3, (32, 32))
    assert latent.provenance["seeds"] == [10, 11, 12]
    again, _ = node("NadaSample").sample(G, 10, 3, 0.7)
    assert torch.equal(images, again)
    assert torch.equal(images, node("NadaRender").render(G, latent, "const")[0])
    other, _ = node("NadaSample").sample(G, 11, 3, 0.7)
    assert torch.equal(other[:2], images[1:]) and not torch.equal(other, images)


def test_bad_seeds_name_the_node(G):
    with pytest.raises(NadaNodeError, match=r"^NADA Latent From Seeds: cannot read seed 'x'"):
        node("NadaLatentFromSeeds").make(G, "1, x", 0.7)


def test_save_generator_appears_in_the_loader_and_round_trips(env, G):
    saved = node("NadaSaveGenerator").save(G, "my_domain", False)
    assert saved["result"] == ("nada/my_domain.safetensors",) and saved["ui"]["text"] == ["nada/my_domain.safetensors"]
    path = env.root / "models" / "stylegan" / "nada" / "my_domain.safetensors"
    assert path.is_file()
    again = node("NadaSaveGenerator").save(G, "my_domain.safetensors", False)["result"][0]
    assert again == "nada/my_domain_00001.safetensors", "without overwrite an existing file is kept"
    assert node("NadaSaveGenerator").save(G, "my_domain", True)["result"][0] == "nada/my_domain.safetensors"
    names = NODES["NadaLoadGenerator"].INPUT_TYPES()["required"]["generator_name"][0]
    assert {"nada/my_domain.safetensors", "nada/my_domain_00001.safetensors"} <= set(names)
    loaded = node("NadaLoadGenerator").load("nada/my_domain.safetensors", "EMA")[0]
    assert same_state(state(loaded), state(G))


def test_save_generator_also_writes_rosinality_pt(env, G):
    from nada_core.models.random_init import random_generator
    from nada_core.models.stylegan2 import GeneratorConfig, channels_from_multiplier

    # G has tiny channel widths rosinality's Generator cannot build: refused before anything is written.
    with pytest.raises(NadaNodeError, match=r"^NADA Save Generator: cannot save as a rosinality .pt: .*channel widths"):
        node("NadaSaveGenerator").save(G, "for_e4e", False, "both")
    folder = env.root / "models" / "stylegan" / "nada"
    assert not list(folder.glob("for_e4e*"))
    table = random_generator(GeneratorConfig(img_resolution=8, channels=channels_from_multiplier(8, 2), z_dim=8,
                                             w_dim=8, mapping_layers=1), seed=2, bias_std=0.2, w_avg_std=0.3)
    saved = node("NadaSaveGenerator").save(table, "for_e4e", False, "both")
    assert saved["result"] == ("nada/for_e4e.safetensors",)
    assert saved["ui"]["text"] == ["nada/for_e4e.safetensors", "nada/for_e4e.pt"]
    ckpt = torch.load(folder / "for_e4e.pt", weights_only=True)
    assert list(ckpt) == ["g_ema", "latent_avg"]
    again = node("NadaSaveGenerator").save(table, "for_e4e", False, "rosinality .pt")
    assert again["result"] == ("nada/for_e4e_00001.pt",), "an existing file is kept without overwrite"
    for name in ("nada/for_e4e.pt", "nada/for_e4e_00001.pt"):
        assert same_state(state(node("NadaLoadGenerator").load(name, "EMA")[0]), state(table))


@pytest.mark.parametrize("bad", ["", "../escape", "/abs/path", "a/../../b", "bad:name"])
def test_save_generator_refuses_unsafe_names(G, bad):
    with pytest.raises(NadaNodeError, match=r"^NADA Save Generator: cannot save as"):
        node("NadaSaveGenerator").save(G, bad, False)


# ------------------------------------------------------------------------------------------ latents


def test_latents_save_and_load_round_trip(env, G):
    latent = node("NadaLatentFromSeeds").make(G, "0-2", 0.5)[0]
    ui = node("NadaSaveLatent").save(latent, "nada/faces")["ui"]["text"][0]
    assert ui == "nada/faces_00001.safetensors [output]"
    assert (env.root / "output" / "nada" / "faces_00001.safetensors").is_file()
    assert node("NadaSaveLatent").save(latent, "nada/faces")["ui"]["text"][0].startswith("nada/faces_00002")
    choices = NODES["NadaLoadLatent"].INPUT_TYPES()["required"]["latent_file"][0]
    assert "nada/faces_00001.safetensors [output]" in choices
    (env.root / "input" / "copied.safetensors").write_bytes(
        (env.root / "output" / "nada" / "faces_00001.safetensors").read_bytes())
    for name in ("nada/faces_00001.safetensors [output]", "copied.safetensors"):
        loaded = node("NadaLoadLatent").load(name)[0]
        assert torch.equal(loaded.ws, latent.ws) and loaded.provenance["seeds"] == [0, 1, 2]
    msg = NODES["NadaLoadLatent"].VALIDATE_INPUTS("missing.safetensors")
    assert msg.startswith("NADA Load Latent: latent file 'missing.safetensors' not found; put it in ")


def test_interpolate_latents(G):
    a = node("NadaLatentFromSeeds").make(G, "1", 0.7)[0]
    b = node("NadaLatentFromSeeds").make(G, "2", 0.7)[0]
    path = node("NadaInterpolateLatents").interpolate(a, 5, "lerp", "linear", False, latent_b=b)[0]
    assert path.ws.shape[0] == 5
    assert torch.equal(path.ws[0], a.ws[0]) and torch.equal(path.ws[-1], b.ws[0])
    torch.testing.assert_close(path.ws[2], (a.ws[0] + b.ws[0]) / 2)
    keys = node("NadaLatentFromSeeds").make(G, "1-3", 0.7)[0]
    through = node("NadaInterpolateLatents").interpolate(keys, 5, "lerp", "linear", False)[0]
    assert torch.equal(through.ws[2], keys.ws[1]), "a batch without latent B is a list of keyframes"
    slerped = node("NadaInterpolateLatents").interpolate(a, 4, "slerp", "linear", False, latent_b=b, generator=G)[0]
    assert slerped.ws.shape[0] == 4
    with pytest.raises(NadaNodeError, match=r"^NADA Interpolate Latents: slerp through z needs the generator"):
        node("NadaInterpolateLatents").interpolate(a, 4, "slerp", "linear", False, latent_b=b)


def test_style_mix_takes_the_chosen_layers_from_a(G):
    a = node("NadaLatentFromSeeds").make(G, "1-2", 0.7)[0]
    b = node("NadaLatentFromSeeds").make(G, "5-6", 0.7)[0]
    mixed = node("NadaStyleMix").mix(a, b, "0-3")[0]
    assert torch.equal(mixed.ws[:, :4], a.ws[:, :4]) and torch.equal(mixed.ws[:, 4:], b.ws[:, 4:])
    with pytest.raises(NadaNodeError, match=r"^NADA Style Mix: W\+ entry 99 is out of range"):
        node("NadaStyleMix").mix(a, b, "99")


# ------------------------------------------------------------------------------------------ blending


def test_blend_generators_returns_a_new_generator_and_leaves_inputs_alone(G):
    other = node("NadaLoadGenerator").load("other.safetensors", "EMA")[0]
    sa, sb = state(G), state(other)
    half = node("NadaBlendGenerators").blend(G, other, 0.5, "")[0]
    assert half is not G and half is not other
    assert same_state(state(G), sa) and same_state(state(other), sb)
    w = "synthesis.convs.0.conv.weight"
    torch.testing.assert_close(state(half)[w], (sa[w] + sb[w]) / 2)
    fine_only = node("NadaBlendGenerators").blend(G, other, 1.0, "4-")[0]
    assert torch.equal(state(fine_only)[w], sa[w]), "entries outside the layer list stay generator A"
    last = f"synthesis.convs.{G.num_ws - 1 if G.num_ws - 1 < len(G.synthesis.convs) else len(G.synthesis.convs) - 1}.conv.weight"
    assert torch.equal(state(fine_only)[last], sb[last])


def test_blend_frames_morph_from_a_to_b(G):
    other = node("NadaLoadGenerator").load("other.safetensors", "EMA")[0]
    one = node("NadaLatentFromSeeds").make(G, "4", 0.7)[0]
    frames = node("NadaBlendFrames").frames(G, other, one, 4, "linear", False, "", "const")[0]
    assert_comfy_image(frames, 4, (32, 32))
    torch.testing.assert_close(frames[0], node("NadaRender").render(G, one, "const")[0][0])
    torch.testing.assert_close(frames[-1], node("NadaRender").render(other, one, "const")[0][0])
    grid = node("NadaBlendFrames").frames(G, other, node("NadaLatentFromSeeds").make(G, "0-3", 0.7)[0], 3,
                                          "linear", False, "", "const")[0]
    assert_comfy_image(grid, 3, (66, 66))  # 4 codes -> a 2x2 grid with 2 px gaps per frame


# --------------------------------------------------------------------------------------------- CLIP


def test_load_clip_one_or_two_models(env, clip):
    assert clip.names == [m.name for m in clip.models] and len(clip) == 1
    two = node("NadaLoadCLIP").load(env.clip_folder, "", 1.0, "fp32", env.clip_file, env.clip_arch, 0.5)[0]
    assert len(two) == 2 and sorted(two.weights.values()) == [0.5, 1.0]
    dropped = node("NadaLoadCLIP").load(env.clip_folder, "", 1.0, "fp32", env.clip_file, env.clip_arch, 0.0)[0]
    assert len(dropped) == 1
    with pytest.raises(NadaNodeError, match=r"^NADA Load CLIP: open_clip file 'ViT-L-14.pt' not found; put it in "):
        node("NadaLoadCLIP").load("ViT-L-14.pt", "ViT-L-14", 1.0, "fp32")


def test_load_clip_lists_a_folder_once_and_refuses_the_same_model_twice(env):
    choices = NODES["NadaLoadCLIP"].INPUT_TYPES()["required"]["clip_name"][0]
    assert env.clip_folder in choices and env.clip_file in choices
    assert not [c for c in choices if c.startswith(env.clip_folder + "/")], f"folder and its files listed: {choices}"
    with pytest.raises(NadaNodeError) as info:
        node("NadaLoadCLIP").load(env.clip_folder, "", 1.0, "fp32", env.clip_folder, "", 1.0)
    assert str(info.value) == (f"NADA Load CLIP: clip_name_2 is the same model as clip_name ({env.clip_folder}); "
                               "pick a different second model, or 'none' and a higher weight for one model")


def test_text_direction(clip, direction):
    assert direction.kind == "text" and set(direction.vectors) == set(clip.names)
    v = next(iter(direction.vectors.values()))
    assert abs(float(v.norm()) - 1.0) < 1e-5
    with pytest.raises(NadaNodeError, match=r"^NADA Text Direction: source and target prompts are the same"):
        node("NadaTextDirection").direction(clip, "photo", "Photo", True)


def test_image_direction_accepts_canvas_images_of_any_kind(clip, G):
    rgba = torch.rand(2, 40, 56, 4)  # canvas image with alpha, not square
    grey = torch.rand(1, 30, 30, 1)
    d_rgba = node("NadaImageDirection").direction(clip, G, rgba, 4, 0, 1.0)[0]
    d_grey = node("NadaImageDirection").direction(clip, G, grey, 4, 0, 1.0)[0]
    assert d_rgba.kind == d_grey.kind == "image"
    assert not torch.allclose(next(iter(d_rgba.vectors.values())), next(iter(d_grey.vectors.values())))
    with pytest.raises(NadaNodeError, match=r"^NADA Image Direction: target image 0 holds NaN"):
        node("NadaImageDirection").direction(clip, G, torch.full((1, 8, 8, 3), float("nan")), 2, 0, 1.0)


# --------------------------------------------------------------------------------------------- train


def test_train_outputs(trained, G):
    adapted, comparison, plot, metrics, domain = trained.out
    assert domain is None  # adapt 'full' (the default) trains a whole generator, no compact domain
    assert same_state(state(G), trained.before), "training must not modify the input generator"
    assert type(adapted) is type(G) and adapted is not G and not adapted.training
    changed = [k for k, v in state(adapted).items() if not torch.equal(v, trained.before[k])]
    assert changed and all(k.startswith("synthesis.") for k in changed)
    assert torch.equal(state(adapted)["mapping.w_avg"], trained.before["mapping.w_avg"])
    # comparison: 3 preview seeds, source row above adapted row, 2 px gaps
    assert_comfy_image(comparison, 1, (2 * 32 + 2, 3 * 32 + 4))
    with torch.no_grad():
        ws = G.mapping(z_from_seeds([0, 1, 2], G.z_dim, device=G.w_avg.device), truncation_psi=0.7)
        src = to_unit(G.synthesis(ws, noise_mode="const")).permute(0, 2, 3, 1).cpu()
        adp = to_unit(adapted.synthesis(ws.to(adapted.w_avg.device), noise_mode="const")).permute(0, 2, 3, 1).cpu()
    torch.testing.assert_close(comparison[0, :32, 34:66], src[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(comparison[0, 34:66, 68:100], adp[2], atol=1e-5, rtol=0)
    assert_comfy_image(plot, 1)
    assert plot.shape[1] > 100 and plot.shape[2] > 100
    assert isinstance(metrics, str) and "directional similarity" in metrics and "3 steps" in metrics
    assert adapted.metadata["provenance"]["nada"]["settings"]["lr"] == 0.01


def test_train_is_deterministic(trained, G, clip, direction):
    with torch.inference_mode():
        again = node("NadaTrain").train(G, clip, direction, steps=3, batch=2, lr=0.01, layers="all", interval=1,
                                        falloff=0, mixing=0.9, global_weight=0.0, angle_weight=0.0, seed=7,
                                        preview_every=0, preview_seeds="0-2")
    assert same_state(state(again[0]), state(trained.out[0]))


def test_trained_generator_saves_with_its_settings(env, trained):
    from nada_core.formats.checkpoints import read_metadata

    name = node("NadaSaveGenerator").save(trained.out[0], "trained", True)["result"][0]
    meta = read_metadata(env.root / "models" / "stylegan" / name)
    assert meta["provenance"]["nada"]["settings"]["steps"] == 3
    assert meta["provenance"]["nada"]["direction"]["target_text"] == "pencil sketch"


def test_train_validation_messages(G, clip, direction):
    """layers is checked before the run (VALIDATE_INPUTS takes only it: ComfyUI attaches the message to
    every parameter of VALIDATE_INPUTS); preview_seeds as the node starts, before any training."""
    import inspect

    cls = NODES["NadaTrain"]
    assert list(inspect.signature(cls.VALIDATE_INPUTS).parameters) == ["layers"]
    assert cls.VALIDATE_INPUTS(layers="all") is True
    assert cls.VALIDATE_INPUTS(layers="12") is True
    assert cls.VALIDATE_INPUTS(layers="most").startswith("NADA Train: layers must be")
    with pytest.raises(NadaNodeError, match=r"^NADA Train: cannot read seed") as info:
        node("NadaTrain").train(G, clip, direction, steps=3, batch=2, lr=0.01, layers="all", interval=1, falloff=0,
                                mixing=0.9, global_weight=0.0, angle_weight=0.0, seed=7, preview_every=1,
                                preview_seeds="a-b")
    assert "\n" not in str(info.value)


def test_metrics_node(clip, direction, G, trained):
    out = node("NadaMetrics").measure(clip, direction, G, trained.out[0], "100-103", 0.7)
    text = out["result"][0]
    assert out["ui"]["text"] == [text] and "on 4 held-out seeds" in text
    before = node("NadaMetrics").measure(clip, direction, G, G, "100-103", 0.7)["result"][0]
    assert "directional similarity (higher = change matches the prompts): 0.0000" in before.replace("-0.0000", "0.0000")
    with pytest.raises(NadaNodeError, match=r"^NADA Metrics: give at least two seeds"):
        node("NadaMetrics").measure(clip, direction, G, G, "5", 0.7)


# ---------------------------------------------------------------------------------------- ComfyUI hooks


class FakeInterrupt(Exception):
    pass


@pytest.fixture
def fake_comfy(monkeypatch):
    """Minimal stand-ins for comfy.utils / comfy.model_management, to watch the bridge's calls."""
    calls = types.SimpleNamespace(updates=[], unloaded=0, interrupt_after=None, checks=0, flag=False)
    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = FakeInterrupt
    mm.get_torch_device = lambda: torch.device("cpu")

    def processing_interrupted():
        calls.checks += 1
        if calls.interrupt_after is not None and len(calls.updates) >= calls.interrupt_after:
            calls.flag = True
        return calls.flag

    def interrupt_current_processing(value=True):
        calls.flag = value

    mm.processing_interrupted = processing_interrupted
    mm.interrupt_current_processing = interrupt_current_processing
    mm.unload_all_models = lambda: setattr(calls, "unloaded", calls.unloaded + 1)
    mm.soft_empty_cache = lambda force=False: None
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            calls.updates.append((value, total, preview))

    utils.ProgressBar = ProgressBar
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    return calls


def test_train_reports_progress_with_previews_and_frees_memory(fake_comfy, G, clip, direction):
    with torch.inference_mode():
        node("NadaTrain").train(G, clip, direction, steps=4, batch=1, lr=0.002, layers="all", interval=1, falloff=0,
                                mixing=0.0, global_weight=0.0, angle_weight=0.0, seed=0, preview_every=2,
                                preview_seeds="0-1")
    assert fake_comfy.unloaded == 1
    assert [u[0] for u in fake_comfy.updates] == [1, 2, 3, 4] and all(u[1] == 4 for u in fake_comfy.updates)
    previews = [u[2] for u in fake_comfy.updates if u[2] is not None]
    assert len(previews) == 2  # steps 2 and 4
    fmt, pil, max_size = previews[0]
    assert fmt == "JPEG" and isinstance(pil, Image.Image) and pil.mode == "RGB" and max_size >= 256
    assert pil.size == (2 * 32 + 2, 2 * 32 + 2)


def test_train_stops_promptly_on_cancel(fake_comfy, G, clip, direction):
    fake_comfy.interrupt_after = 2  # Cancel pressed after the second step's progress update
    with torch.inference_mode(), pytest.raises(FakeInterrupt):
        node("NadaTrain").train(G, clip, direction, steps=50, batch=1, lr=0.002, layers="all", interval=1,
                                falloff=0, mixing=0.0, global_weight=0.0, angle_weight=0.0, seed=0,
                                preview_every=0, preview_seeds="0")
    assert len(fake_comfy.updates) == 2, "no step may run after Cancel"
    assert fake_comfy.flag is False, "the interrupt flag is consumed, as ComfyUI's own check does"


def test_invert_progress_and_cancel(fake_comfy, G):
    img = torch.rand(1, 48, 40, 3)
    fake_comfy.interrupt_after = 3
    with torch.inference_mode(), pytest.raises(FakeInterrupt):
        node("NadaInvertImage").invert(G, img, "w", 40, "crop", 0)
    assert len(fake_comfy.updates) == 3


def test_nodes_use_comfyui_device_choice(fake_comfy, env):
    seen = []
    sys.modules["comfy.model_management"].get_torch_device = lambda: seen.append(1) or torch.device("cpu")
    node("NadaLoadGenerator").load("tiny.safetensors", "EMA")
    node("NadaLoadCLIP").load(env.clip_folder, "", 1.0, "fp32")
    assert len(seen) == 2


# -------------------------------------------------------------------------------------------- invert


def test_invert_image(G, clip):
    img = torch.rand(1, 50, 36, 4)
    before, flags = state(G), [p.requires_grad for p in G.parameters()]
    with torch.inference_mode():
        latent, rec = node("NadaInvertImage").invert(G, img, "w+", 4, "pad", 0, clip=clip)
    assert same_state(state(G), before) and [p.requires_grad for p in G.parameters()] == flags
    assert latent.ws.shape == (1, G.num_ws, G.w_dim) and latent.space == "w+"
    assert_comfy_image(rec, 1, (32, 32))
    torch.testing.assert_close(rec, node("NadaRender").render(G, latent, "const")[0], atol=1e-5, rtol=0)
    with torch.inference_mode():
        w_latent, _ = node("NadaInvertImage").invert(G, img, "w", 2, "crop", 0)
    assert torch.equal(w_latent.ws[:, 0], w_latent.ws[:, -1])


# -------------------------------------------------------------------------------------- image folder


def test_load_image_folder(env):
    folder = env.root / "input" / "examples"
    folder.mkdir()
    Image.fromarray((np.random.rand(40, 60, 4) * 255).astype("uint8"), "RGBA").save(folder / "a.png")
    Image.fromarray((np.random.rand(30, 20) * 255).astype("uint8"), "L").save(folder / "b.jpg")
    Image.fromarray((np.random.rand(25, 25, 3) * 255).astype("uint8"), "RGB").save(folder / "c.webp")
    (folder / "readme.txt").write_text("not an image")
    assert "examples" in NODES["NadaLoadImageFolder"].INPUT_TYPES()["required"]["folder"][0]
    images = node("NadaLoadImageFolder").load("examples", 24, "crop", 0)[0]
    assert_comfy_image(images, 3, (24, 24))
    assert node("NadaLoadImageFolder").load("examples", 24, "crop", 2)[0].shape[0] == 2
    grey = images[1]
    assert torch.allclose(grey[..., 0], grey[..., 1]) and torch.allclose(grey[..., 1], grey[..., 2])
    (env.root / "input" / "empty").mkdir()
    assert NODES["NadaLoadImageFolder"].VALIDATE_INPUTS("empty").startswith(
        "NADA Load Image Folder: folder 'empty' holds no images")
    assert NODES["NadaLoadImageFolder"].VALIDATE_INPUTS("nope").startswith(
        "NADA Load Image Folder: image folder 'nope' not found")
    assert NODES["NadaLoadImageFolder"].VALIDATE_INPUTS("examples") is True


def test_load_image_folder_skips_an_unreadable_file_and_fails_only_when_none_is_left(env, caplog):
    import logging

    folder = env.root / "input" / "mixed"
    folder.mkdir()
    Image.new("RGB", (30, 30), "white").save(folder / "a.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # broken
    Image.new("RGB", (30, 30), "black").save(folder / "c.png")
    with caplog.at_level(logging.WARNING, logger="ComfyUI-NADA"):
        images = node("NadaLoadImageFolder").load("mixed", 16, "crop", 0)[0]
    assert_comfy_image(images, 2, (16, 16))
    assert float(images[0].min()) > 0.99 and float(images[1].max()) < 0.01  # a.png, c.png in order
    assert any("skipped b.png" in r.getMessage() for r in caplog.records)
    assert node("NadaLoadImageFolder").load("mixed", 16, "crop", 2)[0].shape[0] == 2, "max_images counts readable ones"
    bad = env.root / "input" / "all_broken"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    with pytest.raises(NadaNodeError, match=r"^NADA Load Image Folder: none of the 1 image files in 'all_broken' "
                                            r"could be read, e\.g\. x\.jpg \(cannot read image x\.jpg"):
        node("NadaLoadImageFolder").load("all_broken", 16, "crop", 0)


def test_load_image_folder_does_not_offer_comfyuis_own_folders(env):
    for system in ("3d", "clipspace", "pasted", "webcam", "threed"):
        (env.root / "input" / system / "sub").mkdir(parents=True, exist_ok=True)
    (env.root / "input" / "my_set" / "3d").mkdir(parents=True)  # a user's own folder may be called 3d deeper down
    choices = NODES["NadaLoadImageFolder"].INPUT_TYPES()["required"]["folder"][0]
    assert not [c for c in choices if c.split("/")[0] in ("3d", "clipspace", "pasted", "webcam", "threed")], choices
    assert {"my_set", "my_set/3d"} <= set(choices)


def test_generators_of_different_sources_are_refused_clearly(G):
    unrelated = node("NadaLoadGenerator").load("unrelated.safetensors", "EMA")[0]
    with pytest.raises(NadaNodeError, match=r"^NADA Blend Generators: cannot blend generators from different sources"):
        node("NadaBlendGenerators").blend(G, unrelated, 0.5, "")
    latent = node("NadaLatentFromSeeds").make(G, "0", 0.7)[0]
    with pytest.raises(NadaNodeError, match=r"^NADA Render: latents belong to generator lineage \w+ but this "
                                            r"generator descends from \w+"):
        node("NadaRender").render(unrelated, latent, "const")
    other = node("NadaLoadGenerator").load("other.safetensors", "EMA")[0]  # adapted from the same source: fine
    assert_comfy_image(node("NadaRender").render(other, latent, "const")[0], 1)


def test_change_markers_hold_no_path_and_follow_the_files(env, G):
    """IS_CHANGED values travel in every image ComfyUI saves (the embedded prompt): no folder may show."""
    latent = node("NadaLatentFromSeeds").make(G, "0", 0.7)[0]
    node("NadaSaveLatent").save(latent, "marker")
    folder = env.root / "input" / "marker_examples"
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (20, 20), "white").save(folder / "a.png")
    calls = {
        "NadaLoadGenerator": dict(generator_name="tiny.safetensors", weights="EMA"),
        "NadaLoadCLIP": dict(clip_name=env.clip_folder, clip_name_2=env.clip_file, model_name="ViT-B-32"),
        "NadaLoadLatent": dict(latent_file="marker_00001.safetensors [output]"),
        "NadaLoadImageFolder": dict(folder="marker_examples", size=64),
    }
    markers = {}
    for name, inputs in calls.items():
        marker = NODES[name].IS_CHANGED(**inputs)
        assert marker and isinstance(marker, str), name
        assert str(env.root) not in marker and "/" not in marker and env.root.name not in marker, (name, marker)
        markers[name] = marker
    assert len(set(markers.values())) == len(markers)
    Image.new("RGB", (20, 20), "black").save(folder / "b.png")  # one more example image
    assert NODES["NadaLoadImageFolder"].IS_CHANGED(**calls["NadaLoadImageFolder"]) != markers["NadaLoadImageFolder"]
    assert NODES["NadaLoadCLIP"].IS_CHANGED(clip_name=env.clip_folder) != markers["NadaLoadCLIP"]


def test_train_snapshots_go_to_the_save_folder_with_the_settings(env, G, clip, direction):
    """snapshot_every=2 over 5 steps: steps 2 and 4 saved (atomic, settings inside) under
    models/stylegan/nada/snapshots/<target>_<time>/, equal to a 4-step run's result, and listed."""
    from nada_core.formats.checkpoints import read_metadata
    from nodes import paths

    args = dict(batch=2, lr=0.01, layers="all", interval=1, falloff=0, mixing=0.9, global_weight=0.0,
                angle_weight=0.0, seed=11, preview_every=0, preview_seeds="0-1")
    root = env.root / "models" / "stylegan" / "nada" / "snapshots"
    with torch.inference_mode():
        node("NadaTrain").train(G, clip, direction, steps=5, snapshot_every=2, **args)
        four = node("NadaTrain").train(G, clip, direction, steps=4, **args)[0]
    runs = [d for d in root.iterdir() if d.name.startswith("pencil_sketch_")]
    assert len(runs) == 1, "one folder per run; snapshot_every=0 writes none"
    files = sorted(p.name for p in runs[0].iterdir())
    assert files == ["step_000002.safetensors", "step_000004.safetensors"], files
    meta = read_metadata(runs[0] / "step_000004.safetensors")["provenance"]
    assert meta["snapshot"] == {"step": 4, "of": 5}
    assert meta["nada"]["settings"]["steps"] == 5 and meta["nada"]["settings"]["snapshot_every"] == 2
    assert meta["nada"]["steps_done"] == 4 and meta["nada"]["direction"]["target_text"] == "pencil sketch"
    snap = load_generator(runs[0] / "step_000004.safetensors")
    assert same_state(state(snap), state(four)), "the step-4 snapshot is the generator after 4 steps"
    listed = f"nada/snapshots/{runs[0].name}/step_000002.safetensors"
    assert listed in NODES["NadaLoadGenerator"].INPUT_TYPES()["required"]["generator_name"][0]
    tip = NODES["NadaTrain"].INPUT_TYPES()["optional"]["snapshot_every"][1]["tooltip"]
    assert str(paths.generator_save_dir()) in tip and "Cancel" in tip
    assert not [p for p in runs[0].iterdir() if p.name.startswith(".")], "no temporary files left"


def test_snapshot_folder_names_stay_inside_the_save_folder():
    from nodes.snapshots import run_label

    class D:
        kind = "text"
        target_text = "../../etc/passwd \u00e9t\u00e9 / x"

    assert run_label(D()) == "etc_passwd_t_x"
    D.target_text = "///"
    assert run_label(D()) == "run"
    D.kind = "image"
    assert run_label(D()) == "images"
