"""Training compact domains (--adapt domain|stylespace): what trains, files, resume, stop, NaN guard."""

from __future__ import annotations

import pytest
import torch

from nada_core.domains import apply_domains, load_domain, style_layers
from nada_core.errors import InputError
from nada_core.training.run import run_training
from nada_core.training.trainer import NadaTrainer, NonFiniteLossError, TrainConfig
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
    base = dict(steps=4, batch=2, lr=0.05, num_layers=2, preview_every=0, seed=0, adapt="domain", noise_mode="const",
                adam_ratio=1.0)
    base.update(kw)
    return TrainConfig(**base)


def _base_state(G):
    return {k: v.detach().clone() for k, v in G.state_dict().items()}


def _formulation(*gens):
    for G in gens:
        for m in G.modules():
            if hasattr(m, "grouped"):
                m.grouped = False


@pytest.mark.parametrize("adapt", ["domain", "stylespace"])
def test_gradients_reach_only_the_domain_vectors_of_the_selected_layers(clip, direction, adapt):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(adapt=adapt, train_torgb=True), "cpu")
    base = _base_state(tr.G_frozen)
    assert not any(p.requires_grad for p in tr.G_train.parameters())  # no weight is trainable
    assert all(a is b for a, b in zip(tr.G_train.parameters(), tr.G_frozen.parameters()))  # shared, not copied
    seen = []

    def grads_after_backward(_):
        seen.append({n for n, p in tr.adapter.named_parameters().items() if p.grad is not None})

    original = tr.optimizer.step
    tr.optimizer.step = lambda *a, **k: (grads_after_backward(None), original(*a, **k))[1]
    vec_before = {n: p.detach().clone() for n, p in tr.adapter.named_parameters().items()}
    res = tr.step()
    selected = set(res.layer_indices)
    assert len(selected) == 2
    expected = {tr.adapter.name(0, l.path) for l in tr.adapter.layers if l.w_index in selected}
    assert seen[0] == expected and expected
    changed = {n for n, p in tr.adapter.named_parameters().items() if not torch.equal(p, vec_before[n])}
    assert changed == expected
    # The generator weights, the frozen copy and the caller's generator never move.
    assert all(torch.equal(v, base[k]) for k, v in tr.G_frozen.state_dict().items())
    assert all(torch.equal(v, base[k]) for k, v in tr.G_train.state_dict().items())


def test_training_writes_a_domain_that_renders_like_the_trained_generator(clip, direction, tmp_path):
    G = tiny_generator(16)
    G.source_sha256 = "ef" * 32
    tr = NadaTrainer(G, clip, direction, _cfg(steps=6, num_layers="all", snapshot_every=3), "cpu")
    renders = {"n": 0}
    synth = tr.G_frozen.synthesis.forward

    def counting(*a, **k):
        renders["n"] += 1
        return synth(*a, **k)

    tr.G_frozen.synthesis.forward = counting
    outcome = run_training(tr, tmp_path, eval_seeds=[1000, 1001])
    del tr.G_frozen.synthesis.forward
    assert renders["n"] == 6 + 1  # a frozen pass per step; the source of the before/after numbers once
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["domain.safetensors", "loss.png", "metrics.json", "snapshots", "train_state.safetensors"]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["domain_000003.safetensors",
                                                                           "domain_000006.safetensors"]
    d = load_domain(tmp_path / "domain.safetensors")
    assert d.kind == "domain" and d.source_sha256 == "ef" * 32 and d.architecture == G.config.to_dict()
    nada = d.metadata["nada"]
    assert nada["kind"] == "compact-domain" and nada["settings"]["adapt"] == "domain" and nada["steps_done"] == 6
    assert nada["direction"]["target_text"] == "pencil sketch"
    assert d.metadata["metrics"]["directional_similarity_after"] == outcome.metrics["directional_similarity_after"]
    assert outcome.metrics["directional_similarity_after"] > 0.05
    # Strength 1 renders exactly what the trainer's generator renders (same formulation).
    A = apply_domains(G, [(d, 1.0)])
    _formulation(A, tr.G_train)
    with torch.no_grad():
        ws = tr.G_frozen.mapping(torch.randn(3, G.z_dim))
        assert torch.equal(A.synthesis(ws), tr.G_train.synthesis(ws))
        exported = tr.export_generator()
        assert (exported.synthesis(ws) - A.synthesis(ws)).abs().max() < 1e-4


def test_compact_resume_continues_exactly(clip, direction, tmp_path):
    G = tiny_generator(16)
    full = NadaTrainer(G, clip, direction, _cfg(steps=6, adapt="stylespace", mixing=0.9), "cpu")
    full.run()
    part = NadaTrainer(G, clip, direction, _cfg(steps=3, adapt="stylespace", mixing=0.9), "cpu")
    part.run()
    part.save(tmp_path)
    resumed = NadaTrainer(G, clip, direction, _cfg(steps=6, adapt="stylespace", mixing=0.9), "cpu")
    resumed.load_state(tmp_path)
    resumed.run()
    a, b = full.domain(), resumed.domain()
    assert all(torch.equal(a.values[k], b.values[k]) for k in a.values)
    assert full.history == resumed.history
    with pytest.raises(InputError, match="differ"):  # a full-weights run cannot continue a compact state
        NadaTrainer(G, clip, direction, _cfg(steps=6, adapt="full"), "cpu").load_state(tmp_path)


def test_stop_and_nan_guard_keep_the_last_good_vectors(clip, direction, monkeypatch, tmp_path):
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, _cfg(steps=10), "cpu")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    outcome = run_training(tr, tmp_path, should_stop=stop)
    assert outcome.interrupted and tr.step_index == 2
    saved = load_domain(tmp_path / "domain.safetensors")
    good = tr.domain()
    assert all(torch.equal(saved.values[k], good.values[k]) for k in good.values)
    original = clip.encode_image
    monkeypatch.setattr(clip, "encode_image", lambda img: original(img) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 3"):
        tr.step()
    after = tr.domain()
    assert all(torch.equal(after.values[k], good.values[k]) for k in good.values)
    assert all(p.grad is None for p in tr.adapter.named_parameters().values())


def test_compact_runs_train_only_style_vectors_whatever_the_full_only_options(clip, direction):
    """train_affine / train_const choose weights for --adapt full (the official defaults turn them on);
    a compact run trains its vectors only, and no generator weight gets a gradient."""
    tr = NadaTrainer(tiny_generator(16), clip, direction, _cfg(train_affine=True, train_const="on"), "cpu")
    weights = {k: v.detach().clone() for k, v in tr.G_train.state_dict().items()}
    tr.step()
    assert all(torch.equal(v, weights[k]) for k, v in tr.G_train.state_dict().items())  # no weight moved
    assert any(v.abs().sum() > 0 for v in tr.adapter.named_parameters().values())  # the vectors did


# ----------------------------------------------------------------------------------------------
# Several targets in one run
# ----------------------------------------------------------------------------------------------


def test_several_targets_train_like_separate_runs_in_one_batched_pass(clip, tmp_path):
    from nada_core.guidance.directions import text_direction
    from nada_core.training.multi_target import MultiTargetTrainer, run_multi_training

    dirs = [text_direction(clip, "photo", t, templates=False) for t in ("pencil sketch", "oil painting")]
    G = tiny_generator(16)
    cfg = dict(steps=4, num_layers="all", adapt="domain")
    multi = MultiTargetTrainer(G, clip, dirs, _cfg(**cfg), "cpu")
    calls = {"n": 0}
    inner = multi.G_train.synthesis.inner.forward

    def counting(*a, **k):
        calls["n"] += 1
        return inner(*a, **k)

    multi.G_train.synthesis.inner.forward = counting
    multi.run()
    assert calls["n"] == 4  # one trained pass per step for both targets
    for t, d in enumerate(dirs):
        single = NadaTrainer(G, clip, d, _cfg(**cfg), "cpu")
        single.run()
        a, b = multi.domain(t), single.domain()
        scale = max(float(v.abs().max()) for v in b.values.values())
        assert scale > 0
        assert all((a.values[k] - b.values[k]).abs().max() <= 2e-3 * scale for k in a.values)
        assert a.metadata["nada"]["direction"]["target_text"] == d.target_text
    # Files: one domain per target, previews with one row per target, resumable state.
    multi2 = MultiTargetTrainer(G, clip, dirs, _cfg(steps=2, adapt="stylespace", num_layers=2, preview_every=2),
                                "cpu")
    metrics = run_multi_training(multi2, tmp_path, eval_seeds=[1000, 1001]).metrics
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["domain_oil_painting.safetensors", "domain_pencil_sketch.safetensors", "loss.png",
                     "metrics.json", "preview_000002.png", "train_state.safetensors"]
    assert [m["direction"]["target_text"] for m in metrics["targets"]] == ["pencil sketch", "oil painting"]
    sketch = load_domain(tmp_path / "domain_pencil_sketch.safetensors")
    assert "directional_similarity_after" in sketch.metadata["metrics"]
    from PIL import Image

    with Image.open(tmp_path / "preview_000002.png") as im:
        assert im.size[1] == 3 * 16 + 2 * 2  # source row + one row per target
    resumed = MultiTargetTrainer(G, clip, dirs, _cfg(steps=3, adapt="stylespace", num_layers=2, preview_every=2),
                                 "cpu").load_state(tmp_path)
    assert resumed.step_index == 2
    with pytest.raises(InputError, match="compact"):
        MultiTargetTrainer(G, clip, dirs, _cfg(adapt="full"), "cpu")


def test_several_targets_stop_snapshot_resume_exactly_and_keep_the_last_good_vectors_on_nan(clip, monkeypatch,
                                                                                           tmp_path):
    """A multi-target run stopped after 2 of 3 steps keeps both domains, snapshots and its state; resuming
    gives the same vectors as the straight run; a NaN loss re-raises after saving the last good vectors."""
    from nada_core.guidance.directions import text_direction
    from nada_core.training.multi_target import MultiTargetTrainer, run_multi_training

    dirs = [text_direction(clip, "photo", t, templates=False) for t in ("pencil sketch", "oil painting")]
    G = tiny_generator(16)
    cfg = dict(steps=3, num_layers=2, adapt="stylespace", snapshot_every=1, mixing=0.5)
    straight = MultiTargetTrainer(G, clip, dirs, _cfg(**cfg), "cpu")
    straight.run()
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 2

    part = MultiTargetTrainer(G, clip, dirs, _cfg(**cfg), "cpu")
    outcome = run_multi_training(part, tmp_path, eval_seeds=[1000, 1001], should_stop=stop)
    assert outcome.interrupted and part.step_index == 2 and outcome.after == [None, None]
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        f"domain_{t}_00000{s}.safetensors" for t in ("oil_painting", "pencil_sketch") for s in (1, 2)]
    kept = load_domain(tmp_path / "domain_oil_painting.safetensors")
    assert all(torch.equal(kept.values[k], part.domain(1).values[k]) for k in kept.values)
    assert "directional_similarity_before" in kept.metadata["metrics"]  # "after" skipped after a stop
    resumed = MultiTargetTrainer(G, clip, dirs, _cfg(**cfg), "cpu").load_state(tmp_path)
    resumed.run()
    for t in range(2):
        a, b = resumed.domain(t), straight.domain(t)
        assert all(torch.equal(a.values[k], b.values[k]) for k in a.values)
    assert resumed.history == straight.history
    # NaN guard: the step is refused, the files hold the vectors of the last good step.
    nan_run = MultiTargetTrainer(G, clip, dirs, _cfg(**{**cfg, "snapshot_every": 0}), "cpu")
    nan_run.step()
    good = [nan_run.domain(t) for t in range(2)]
    original = clip.encode_image
    monkeypatch.setattr(clip, "encode_image", lambda img: original(img) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 2"):
        run_multi_training(nan_run, tmp_path / "nan")
    for t, name in enumerate(("pencil_sketch", "oil_painting")):
        saved = load_domain(tmp_path / "nan" / f"domain_{name}.safetensors")
        assert all(torch.equal(saved.values[k], good[t].values[k]) for k in saved.values)


def test_domain_layers_pick_the_layers_a_domain_has_and_selection_chooses_among_them(clip, direction, tmp_path):
    """--domain-layers coarse: vectors exist for the coarse layers only, adaptive selection picks among their
    W+ entries, the other layers render exactly as the source; with adapt full it is one clear line."""
    G = tiny_generator(32)  # W+ entries 0-7 (no 'fine' group at 32 px)
    tr = NadaTrainer(G, clip, direction, _cfg(num_layers=2, domain_layers="0-3", train_torgb=True), "cpu")
    assert {layer.w_index for layer in tr.adapter.layers} == {0, 1, 2, 3}
    assert [layer.path for layer in tr.adapter.layers] == [
        l.path for l in style_layers(G) if l.w_index <= 3]  # convs 0-3, toRGBs at entries 1 and 3
    assert tr.candidates == [0, 1, 2, 3]
    for _ in range(3):
        res = tr.step()
        assert set(res.layer_indices) <= {0, 1, 2, 3} and len(res.layer_indices) == 2
    tr.save(tmp_path)
    d = load_domain(tmp_path / "domain.safetensors")
    assert [l.path for l in d.layers] == [l.path for l in tr.adapter.layers]
    assert d.metadata["nada"]["settings"]["domain_layers"] == "0-3"
    w = tr.G_frozen.mapping(torch.randn(2, G.z_dim))
    A = apply_domains(G, [(d, 1.0)])
    changed = 0
    with torch.no_grad():
        for layer in style_layers(G):
            same = torch.equal(A.get_submodule(layer.path)(w), G.get_submodule(layer.path)(w))
            if layer.w_index > 3:
                assert same, layer  # not in the domain: the source's style exactly
            elif float(d.values[layer.path].abs().sum()) > 0:
                assert not same, layer
                changed += 1
    assert changed >= 2
    with pytest.raises(InputError, match="domain_layers picks the layers of a compact domain"):
        _cfg(adapt="full", domain_layers="coarse")
    with pytest.raises(InputError, match="selects no styled layer"):
        NadaTrainer(G, clip, direction, _cfg(domain_layers="7"), "cpu")  # entry 7 drives the last toRGB only


def test_several_targets_encode_the_frozen_images_once_and_every_target_in_one_clip_call(clip, monkeypatch):
    """Per step: one CLIP call on the B frozen images (no autograd), one on the T x B trained images
    (with autograd); a selection pass encodes all targets together too. The losses equal each
    target's own clip_loss on its rows."""
    from nada_core.guidance.directions import text_direction
    from nada_core.guidance.losses import LossWeights, clip_loss
    from nada_core.training.multi_target import MultiTargetTrainer

    dirs = [text_direction(clip, "photo", t, templates=False) for t in ("pencil sketch", "oil painting", "anime")]
    G = tiny_generator(16)
    multi = MultiTargetTrainer(G, clip, dirs, _cfg(steps=2, num_layers=2, n_select_codes=2, select_steps=1,
                                                   angle_weight=0.5, global_weight=0.3), "cpu")
    calls: list[tuple[int, bool]] = []
    encode = clip.encode_image

    def counting(img):
        calls.append((img.shape[0], torch.is_grad_enabled()))
        return encode(img)

    monkeypatch.setattr(clip, "encode_image", counting)
    multi.step()
    # selection pass: every target's 2 codes in one call; then the frozen batch, then all trained images
    assert calls == [(3 * 2, True), (2, False), (3 * 2, True)]

    torch.manual_seed(0)
    frozen, trained = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(6, 3, 16, 16) * 2 - 1
    weights = LossWeights(1.0, 0.3, 0.5)
    calls.clear()
    got = multi._target_losses(trained, frozen, weights)
    assert [n for n, _ in calls] == [2, 6]
    for t, g in enumerate(multi.target_guides):
        want = clip_loss(g, trained[2 * t:2 * t + 2], frozen, weights)
        torch.testing.assert_close(got[t].total, want.total, rtol=1e-5, atol=1e-6)
        assert got[t].per_guide.keys() == want.per_guide.keys()
    with pytest.raises(InputError, match="3 targets need 3 x 2"):
        multi._target_losses(trained[:4], frozen, weights)


def test_several_targets_render_the_source_images_once_for_all_before_and_after_numbers(clip, monkeypatch,
                                                                                         tmp_path):
    from nada_core.guidance.directions import text_direction
    from nada_core.training.metrics import evaluate
    from nada_core.training.multi_target import MultiTargetTrainer, run_multi_training

    dirs = [text_direction(clip, "photo", t, templates=False) for t in ("pencil sketch", "oil painting")]
    G = tiny_generator(16)
    multi = MultiTargetTrainer(G, clip, dirs, _cfg(steps=1, num_layers="all"), "cpu")
    renders = {"frozen": 0}
    synth = multi.G_frozen.synthesis.forward

    def counting(*a, **k):
        renders["frozen"] += 1
        return synth(*a, **k)

    seeds = [1000, 1001, 1002]
    monkeypatch.setattr(multi.G_frozen.synthesis, "forward", counting)
    out = run_multi_training(multi, tmp_path, eval_seeds=seeds)
    # one training step renders the frozen images once (the preview is off); the evaluation once more
    assert renders["frozen"] == 2
    monkeypatch.undo()
    for t, d in enumerate(dirs):
        alone_before = evaluate(multi.G_frozen, multi.G_frozen, clip, d, seeds)
        alone_after = evaluate(multi.G_frozen, multi.view(t), clip, d, seeds)
        for key in ("directional_similarity", "target_score", "diversity", "source_correspondence"):
            assert out.metrics["targets"][t][f"{key}_before"] == pytest.approx(alone_before[key], abs=1e-6)
            assert out.after[t][key] == pytest.approx(alone_after[key], abs=1e-6)
    assert out.after[0]["target_score"] != pytest.approx(out.after[1]["target_score"], abs=1e-6)
