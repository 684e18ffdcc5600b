"""NadaTrainer: what trains, what never changes, determinism, resume, interruption, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from nada_core.errors import InputError
from nada_core.training.freezing import trainable_parameter_names
from nada_core.training.trainer import NadaTrainer, NonFiniteLossError, TrainConfig, read_state
from tests.clip_factory import load_tiny_clip
from tests.factories import tiny_generator



@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def direction(clip):
    from nada_core.guidance.directions import text_direction

    return text_direction(clip, "photo", "pencil sketch", templates=False)


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=4, batch=2, lr=0.01, num_layers=2, preview_every=0, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {f"p.{k}": v.detach().clone() for k, v in module.named_parameters()}
    out.update({f"b.{k}": v.detach().clone() for k, v in module.named_buffers()})
    return out


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


# ----------------------------------------------------------------------------------------------
# The method works, and the frozen side never moves
# ----------------------------------------------------------------------------------------------


def test_directional_similarity_rises_and_frozen_generator_never_changes(clip, direction):
    from nada_core.training.metrics import evaluate

    G = tiny_generator(16)
    source_before = _state(G)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=30, num_layers="all", lr=0.01), "cpu")
    frozen_before = _state(tr.G_frozen)
    before = evaluate(tr.G_frozen, tr.G_frozen, clip, direction)
    result = tr.run()
    after = evaluate(tr.G_frozen, tr.G_train, clip, direction)

    assert result.steps_done == 30 and not result.interrupted
    assert before["directional_similarity"] == 0.0  # no change yet
    # Random CLIP weights: the directional loss still optimises exactly this quantity, and on
    # held-out seeds it climbs from 0 to about 0.2-0.3 (0.12 leaves room across seeds/platforms).
    assert after["directional_similarity"] > 0.12, after
    assert after["source_correspondence"] > 0.9  # a gentle change, not a collapse
    losses = [h["directional"] for h in result.history]
    assert losses[0] == pytest.approx(1.0, abs=1e-6)  # identical generators at the first step
    assert sum(losses[-10:]) / 10 < 0.9
    # G_frozen (all parameters and buffers) and the caller's generator are bit-identical.
    assert _changed(frozen_before, _state(tr.G_frozen)) == set()
    assert _changed(source_before, _state(G)) == set()
    # One shared mapping network, not trained.
    assert tr.G_train.mapping is tr.G_frozen.mapping
    assert not any(p.requires_grad for p in tr.G_frozen.parameters())


def test_step_changes_exactly_the_selected_layers(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers=2), "cpu")
    before = _state(tr.G_train)
    res = tr.step()
    assert len(res.layer_indices) == 2 and res.selected
    expected = {f"p.{n}" for n in trainable_parameter_names(tr.G_train, res.layer_indices, tr.freeze_options)}
    # Default (official code): a chosen layer's style affine trains with its conv.
    assert {f"p.synthesis.convs.{i}.conv.affine.weight" for i in res.layer_indices} <= expected
    assert _changed(before, _state(tr.G_train)) == expected
    trainable = {n for n, p in tr.G_train.named_parameters() if p.requires_grad}
    assert {f"p.{n}" for n in trainable} == expected


def test_torgb_option_trains_the_torgb_of_selected_odd_index(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers="all", train_torgb=True, train_affine=False), "cpu")
    before = _state(tr.G_train)
    tr.step()
    changed = _changed(before, _state(tr.G_train))
    assert "p.synthesis.to_rgbs.0.conv.weight" in changed
    assert "p.synthesis.to_rgbs.2.bias" in changed  # last W+ index: final toRGB
    assert not any(".affine." in k or k.startswith("p.mapping.") for k in changed)


def test_trainer_trains_the_conv_that_the_selected_index_drives(clip, direction):
    index = 3
    G = tiny_generator(16)
    with torch.no_grad():  # only ws[:, 3] influences the image (through convs[3])
        for name, p in G.named_parameters():
            if ".affine.weight" in name and name != f"synthesis.convs.{index}.conv.affine.weight":
                p.zero_()
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers=1), "cpu")
    before = _state(tr.G_train)
    res = tr.step()
    assert res.layer_indices == [index]
    changed = _changed(before, _state(tr.G_train))
    # The conv's weight, bias and noise strength, and (default, as the official code) its style affine.
    assert changed == {f"p.synthesis.convs.{index}.{s}" for s in ("conv.weight", "bias", "noise_strength",
                                                                 "conv.affine.weight", "conv.affine.bias")}


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_frozen_and_trained_images_of_a_pair_share_codes_crossover_and_noise(clip, direction, monkeypatch,
                                                                              noise_mode):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers="all", mixing=1.0, batch=3, noise_mode=noise_mode), "cpu")
    seen = []
    original = clip.encode_image
    monkeypatch.setattr(clip, "encode_image", lambda img: (seen.append(img.detach().clone()), original(img))[1])
    tr.step()
    assert len(seen) == 2 and [s.shape[0] for s in seen] == [3, 3]  # the frozen images, then the trained ones
    frozen, trained = seen
    assert torch.equal(frozen, trained)  # weights still equal at step 1: only the pairing could differ


def test_style_mixing_crossover(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(mixing=1.0, batch=16), "cpu")
    ws = tr._sample_ws()
    for row in ws:
        cut = next(i for i in range(1, G.num_ws) if not torch.equal(row[i], row[0]))
        assert torch.equal(row[:cut], row[0].expand(cut, -1))
        assert torch.equal(row[cut:], row[cut].expand(G.num_ws - cut, -1))
    tr0 = NadaTrainer(G, clip, direction, _cfg(mixing=0.0, batch=4), "cpu")
    ws0 = tr0._sample_ws()
    assert torch.equal(ws0, ws0[:, :1].expand_as(ws0))


def test_clip_calls_per_step_and_no_text_encoding_during_training(clip, direction):
    G = tiny_generator(16)
    # select_chunk=8: the 8 selection codes in one chunk, one CLIP call per pass; a step encodes its
    # frozen and its trained images in two calls.
    tr = NadaTrainer(G, clip, direction, _cfg(steps=6, num_layers=2, interval=3, select_chunk=8), "cpu")
    img_calls, txt_calls = clip.image_encoder_calls, clip.text_encoder_calls
    result = tr.run()
    selections = sum(1 for s in range(6) if s % 3 == 0)
    assert clip.image_encoder_calls - img_calls == 2 * 6 + selections  # 2 per step + 1 per selection pass
    assert clip.text_encoder_calls == txt_calls
    assert result.steps_done == 6


def test_all_layers_runs_no_selection_pass(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=3, num_layers="all"), "cpu")
    calls = clip.image_encoder_calls
    results = [tr.step() for _ in range(3)]
    assert clip.image_encoder_calls - calls == 2 * 3  # the step's two encodings, no selection pass
    assert all(r.layer_indices == list(range(G.num_ws - 1)) and not r.selected for r in results)


def test_falloff_shrinks_the_layer_count(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=5, num_layers=3, falloff=2), "cpu")
    tr.run()
    assert [len(x) for x in tr.layer_history] == [3, 3, 2, 2, 1]


# ----------------------------------------------------------------------------------------------
# Determinism, resume, interruption
# ----------------------------------------------------------------------------------------------


def _resume_cfg(**kw):
    return _cfg(steps=6, num_layers=2, interval=2, falloff=3, mixing=0.9, noise_mode="random", **kw)


def test_same_seed_same_result_and_resume_equals_uninterrupted(clip, direction, tmp_path):
    G = tiny_generator(16)
    full = NadaTrainer(G, clip, direction, _resume_cfg(), "cpu")
    full.run()
    again = NadaTrainer(G, clip, direction, _resume_cfg(), "cpu")
    again.run()
    assert _changed(_state(full.G_train), _state(again.G_train)) == set()

    first = NadaTrainer(G, clip, direction, _resume_cfg(), "cpu")
    for _ in range(3):
        first.step()
    torch.manual_seed(1234)  # the caller's global RNG must not matter
    first.save_state(tmp_path / "state.safetensors")
    second = NadaTrainer(G, clip, direction, _resume_cfg(), "cpu").load_state(tmp_path / "state.safetensors")
    assert second.step_index == 3
    result = second.run()
    assert result.steps_done == 6
    assert _changed(_state(full.G_train), _state(second.G_train)) == set()
    assert second.history == full.history
    assert second.layer_history == full.layer_history
    for p_full, p_res in zip(full.optimizer.param_groups[0]["params"], second.optimizer.param_groups[0]["params"]):
        s_full, s_res = full.optimizer.state.get(p_full, {}), second.optimizer.state.get(p_res, {})
        assert s_full.keys() == s_res.keys()
        for key in s_full:
            assert torch.equal(s_full[key], s_res[key])


def test_resume_rejects_changed_settings_and_allows_more_steps(clip, direction, tmp_path):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _resume_cfg(), "cpu")
    tr.step()
    tr.save_state(tmp_path / "s.safetensors")
    with pytest.raises(InputError, match="lr"):
        NadaTrainer(G, clip, direction, _resume_cfg(lr=0.02), "cpu").load_state(tmp_path / "s.safetensors")
    longer = _resume_cfg()
    longer.steps = 10
    resumed = NadaTrainer(G, clip, direction, longer, "cpu").load_state(tmp_path / "s.safetensors")
    assert resumed.step_index == 1
    with pytest.raises(InputError, match="no training state"):
        read_state(tmp_path / "missing")


@pytest.mark.parametrize("failing_call", [7, 8, 9], ids=["in-selection", "in-frozen-encode", "in-training-encode"])
def test_ctrl_c_inside_a_step_rolls_back_and_continuing_matches(clip, direction, monkeypatch, failing_call):
    G = tiny_generator(16)
    one_chunk = dict(steps=4, num_layers=2, select_chunk=8)  # one CLIP call per selection pass
    reference = NadaTrainer(G, clip, direction, _cfg(**one_chunk), "cpu")
    reference.run()
    after_two = NadaTrainer(G, clip, direction, _cfg(**one_chunk), "cpu")
    after_two.step()
    after_two.step()

    tr = NadaTrainer(G, clip, direction, _cfg(**one_chunk), "cpu")
    original = clip.encode_image
    calls = {"n": 0}

    def flaky(img):
        calls["n"] += 1
        # 3 calls per step (selection pass, frozen images, trained images): step 3 makes calls 7, 8, 9.
        if calls["n"] == failing_call:
            raise KeyboardInterrupt
        return original(img)

    monkeypatch.setattr(clip, "encode_image", flaky)
    result = tr.run()
    assert result.interrupted and result.steps_done == 2 and tr.step_index == 2
    assert _changed(_state(after_two.G_train), _state(tr.G_train)) == set()
    monkeypatch.setattr(clip, "encode_image", original)
    result = tr.run()  # continue: identical to never having been interrupted
    assert result.steps_done == 4 and not result.interrupted
    assert _changed(_state(reference.G_train), _state(tr.G_train)) == set()


def test_should_stop_stops_within_one_step_and_leaves_a_usable_generator(clip, direction, tmp_path):
    from nada_core.formats.checkpoints import load_generator

    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=50), "cpu")
    flag = {"stop": False}
    steps_seen = []

    def on_progress(info):
        steps_seen.append(info.step)
        if info.step == 3:
            flag["stop"] = True

    result = tr.run(on_progress=on_progress, should_stop=lambda: flag["stop"])
    assert result.interrupted and result.steps_done == 3 and steps_seen == [1, 2, 3]
    path = tr.save_generator(tmp_path / "g.safetensors")
    G2 = load_generator(path)
    trained = dict(tr.G_train.state_dict())
    assert all(torch.equal(v, trained[k]) for k, v in G2.state_dict().items())  # the weights, bit for bit
    with torch.no_grad():  # and the images (the twins use the autograd-friendly conv form: rounding only)
        z = torch.randn(2, G2.z_dim)
        torch.testing.assert_close(G2(z), tr.G_train(z), rtol=1e-5, atol=1e-5)


def test_failed_save_leaves_the_previous_files_intact(clip, direction, tmp_path, monkeypatch):
    import safetensors.torch

    from nada_core.formats.checkpoints import load_generator

    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=4), "cpu")
    tr.step()
    paths = tr.save(tmp_path)
    saved = {k: p.read_bytes() for k, p in paths.items()}
    tr.step()
    real_save = safetensors.torch.save_file

    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial garbage")  # half-written file, then the user hits Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        tr.save_generator(tmp_path / "generator.safetensors")
    with pytest.raises(KeyboardInterrupt):
        tr.save_state(tmp_path / "train_state.safetensors")
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    assert {k: p.read_bytes() for k, p in paths.items()} == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generator.safetensors", "train_state.safetensors"]
    load_generator(paths["generator"])
    assert read_state(paths["state"])[1]["step"] == 1


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_last_good_weights(clip, direction, monkeypatch):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers="all"), "cpu")
    tr.step()
    tr.step()
    good = _state(tr.G_train)
    original = clip.encode_image
    monkeypatch.setattr(clip, "encode_image", lambda img: original(img) * float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"step 3.*lower the learning rate"):
        tr.run()
    assert tr.step_index == 2 and len(tr.history) == 2
    assert _changed(good, _state(tr.G_train)) == set()
    assert all(p.grad is None for p in tr.G_train.parameters())


def test_non_finite_gradient_with_finite_loss_is_caught(clip, direction):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers="all"), "cpu")
    tr.step()
    good = _state(tr.G_train)
    hook = tr.G_train.synthesis.convs[1].conv.weight.register_hook(lambda g: g * float("inf"))
    with pytest.raises(NonFiniteLossError, match="gradient norm"):
        tr.step()
    hook.remove()
    assert tr.step_index == 1 and _changed(good, _state(tr.G_train)) == set()
    tr.step()  # recovers once the cause is gone
    assert tr.step_index == 2


# ----------------------------------------------------------------------------------------------
# ComfyUI: inference mode everywhere
# ----------------------------------------------------------------------------------------------


def test_training_under_inference_mode_with_inference_tensors(tmp_path):
    from nada_core.guidance.clip import load_clip
    from nada_core.guidance.directions import text_direction
    from nada_core.training.metrics import evaluate
    from tests.clip_factory import save_tiny_clip

    spec = save_tiny_clip(tmp_path)
    with torch.inference_mode():  # as ComfyUI runs a node: models loaded and used inside
        G = tiny_generator(16)
        clip = load_clip(spec)  # load_clip itself leaves inference mode; a model built by other
        # code inside it holds inference tensors, which the trainer must cope with too:
        clip.model.load_state_dict({k: v.clone() for k, v in clip.model.state_dict().items()}, assign=True)
        assert next(G.parameters()).is_inference() and next(clip.model.parameters()).is_inference()
        d = text_direction(clip, "photo", "pencil sketch", templates=False)
        tr = NadaTrainer(G, clip, d, _cfg(steps=3, num_layers=2, preview_every=3), "cpu")
        before = _state(tr.G_train)
        previews = []
        result = tr.run(on_progress=lambda info: previews.append(info.preview))
        exported = tr.export_generator()
        metrics = evaluate(tr.G_frozen, exported, clip, d, seeds=[1000, 1001, 1002])
        tr.save_state(tmp_path / "state.safetensors")  # resume inside inference mode too
        longer = _cfg(steps=4, num_layers=2, preview_every=3)
        resumed = NadaTrainer(G, clip, d, longer, "cpu").load_state(tmp_path / "state.safetensors")
        resumed.step()
    assert resumed.step_index == 4
    assert result.steps_done == 3 and all(math.isfinite(h["total"]) for h in result.history)
    assert _changed(before, _state(tr.G_train))
    assert previews[-1] is not None and previews[-1].shape == (2, 4, 3, 16, 16)
    assert math.isfinite(metrics["directional_similarity"]) and metrics["directional_similarity"] != 0.0


# ----------------------------------------------------------------------------------------------
# Previews, snapshots, saved files
# ----------------------------------------------------------------------------------------------


def test_previews_show_source_and_adapted_rows(clip, direction):
    from nada_core.seeds import z_from_seeds

    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=5, preview_every=2, preview_seeds=(3, 5, 7)), "cpu")
    p0 = tr.preview()
    assert p0.shape == (2, 3, 3, 16, 16) and torch.equal(p0[0], p0[1])
    with torch.no_grad():
        expected = G.synthesis(G.mapping(z_from_seeds([3, 5, 7], G.z_dim), truncation_psi=0.7))
    torch.testing.assert_close(p0[0], expected)
    got = {}
    tr.run(on_progress=lambda info: got.__setitem__(info.step, info.preview))
    assert [s for s, p in got.items() if p is not None] == [2, 4, 5]
    assert torch.equal(got[4][0], p0[0]) and not torch.equal(got[4][1], p0[1])


def test_snapshots_and_saved_generator_metadata(clip, direction, tmp_path):
    from nada_core.formats.checkpoints import load_generator, read_metadata, save_generator, sha256_file

    src = save_generator(tiny_generator(16), tmp_path / "source.safetensors")
    G = load_generator(src)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=4, snapshot_every=2), "cpu")
    tr.run(out_dir=tmp_path / "run")
    snaps = sorted((tmp_path / "run" / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["generator_000002.safetensors", "generator_000004.safetensors"]
    assert read_metadata(snaps[0])["provenance"]["nada"]["steps_done"] == 2
    assert read_state(tmp_path / "run")[1]["step"] == 4
    paths = tr.save(tmp_path / "run")
    meta = read_metadata(paths["generator"])
    nada = meta["provenance"]["nada"]
    assert meta["source_sha256"] == sha256_file(src) == nada["source_sha256"]
    assert nada["direction"]["source_text"] == "photo" and nada["direction"]["target_text"] == "pencil sketch"
    assert nada["settings"]["lr"] == 0.01 and nada["steps_done"] == 4
    adapted = load_generator(paths["generator"])
    for name, p in adapted.named_parameters():
        ref = dict(tr.G_train.named_parameters())[name]
        assert torch.equal(p, ref), name
        if name.startswith("mapping."):
            assert torch.equal(p, dict(G.named_parameters())[name])
    assert torch.equal(adapted.w_avg, G.w_avg)


def test_export_generator_is_independent(clip, direction, tmp_path):
    from nada_core.formats.checkpoints import load_generator, read_metadata, save_generator

    G = tiny_generator(16)
    G.source_sha256 = "ab" * 32
    tr = NadaTrainer(G, clip, direction, _cfg(steps=3), "cpu")
    tr.step()
    path = save_generator(tr.generator, tmp_path / "live.safetensors")  # the plain checkpoint API works
    meta = read_metadata(path)
    assert meta["source_sha256"] == "ab" * 32 and meta["provenance"]["nada"]["steps_done"] == 1
    assert torch.equal(load_generator(path).synthesis.convs[0].conv.weight, tr.G_train.synthesis.convs[0].conv.weight)
    exported = tr.export_generator()
    snap = _state(exported)
    tr.step()
    assert _changed(snap, _state(exported)) == set()
    assert not any(p.requires_grad for p in exported.parameters())
    assert exported.metadata["provenance"]["nada"]["steps_done"] == 1


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, word", [
    (dict(steps=0), "steps"), (dict(batch=0), "batch"), (dict(lr=11.0), "lr"), (dict(lr=-1e-3), "lr"),
    (dict(lr=float("nan")), "lr"), (dict(num_layers=0), "layers"), (dict(num_layers="some"), "layers"),
    (dict(interval=0), "interval"), (dict(falloff=-1), "falloff"), (dict(mixing=1.5), "mixing"),
    (dict(betas=(1.0, 0.9)), "betas"), (dict(truncation=0.0), "truncation"),
    (dict(directional_weight=0.0), "weights"), (dict(global_weight=-1.0), "global_weight"),
    (dict(preview_every=-1), "preview_every"), (dict(preview_seeds=""), "seeds"),
    (dict(noise_mode="wobbly"), "noise_mode"), (dict(seed=-1), "seed"), (dict(n_select_codes=0), "n_select_codes"),
    (dict(steps=2.5), "steps"), (dict(train_torgb="yes"), "train_torgb"),
])
def test_bad_settings_raise_clear_errors(bad, word):
    with pytest.raises(InputError, match=word):
        TrainConfig(**bad)


def test_layers_accepts_all_and_numbers():
    assert TrainConfig(num_layers="ALL").k is None
    assert TrainConfig(num_layers=None).num_layers == "all"
    assert TrainConfig(num_layers="12").k == 12
    assert TrainConfig(num_layers=40).k == 40  # more than exist: clipped to the generator's layers


def test_step_after_the_last_step_is_refused(clip, direction):
    tr = NadaTrainer(tiny_generator(16), clip, direction, _cfg(steps=1), "cpu")
    tr.step()
    with pytest.raises(InputError, match="raise steps"):
        tr.step()


def test_engine_never_imports_the_cli():
    """nada_core.training/guidance are the engine: the CLI imports them, never the other way round."""
    import ast

    root = Path(__file__).resolve().parents[1] / "nada_core"
    for folder in ("training", "guidance", "models", "editing", "media", "formats"):
        for path in (root / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    assert "commands" not in (node.module or "").split("."), f"{path} imports {node.module}"
                elif isinstance(node, ast.Import):
                    assert not any(".commands" in a.name for a in node.names), path
