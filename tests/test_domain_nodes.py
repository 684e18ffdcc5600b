"""Domain nodes (Load / Apply / Save Domain, NADA Train with a compact adapt), called directly."""

from __future__ import annotations

import types

import pytest
import torch

from nada_core.domains import apply_domains, load_domain, new_domain, save_domain
from nada_core.formats.checkpoints import save_generator
from nada_core.seeds import z_from_seeds
from nodes import NODE_CLASS_MAPPINGS as NODES
from nodes.common import NadaNodeError
from tests.clip_factory import save_tiny_clip
from tests.factories import tiny_generator


def node(name):
    return NODES[name]()


def state(G):
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("nada_domain_nodes")
    (root / "models" / "stylegan" / "domains").mkdir(parents=True)
    (root / "models" / "open_clip").mkdir(parents=True)
    save_generator(tiny_generator(16, seed=0), root / "models" / "stylegan" / "tiny.safetensors")
    hf = save_tiny_clip(root / "models" / "open_clip", layout="hf", seed=0)
    mp = pytest.MonkeyPatch()
    mp.setenv("NADA_MODELS_DIR", str(root / "models"))
    mp.setenv("NADA_INPUT_DIR", str(root / "input"))
    mp.setenv("NADA_OUTPUT_DIR", str(root / "output"))
    yield types.SimpleNamespace(root=root, clip_folder=hf.rsplit("/", 1)[-1])
    mp.undo()


@pytest.fixture(scope="module")
def G(env):
    return node("NadaLoadGenerator").load("tiny.safetensors", "EMA")[0]


def _domain(G, kind, seed):
    d = new_domain(G, kind, include_torgb=True)
    g = torch.Generator().manual_seed(seed)
    for layer in d.layers:
        d.values[layer.path] = torch.randn(layer.channels, generator=g) * 0.3
    return d


def _render(G, seeds=(0, 1)):
    with torch.no_grad():
        return G(z_from_seeds(list(seeds), G.z_dim))


def test_save_load_and_apply_chain(env, G):
    before = state(G)
    d1, d2 = _domain(G, "domain", 1), _domain(G, "stylespace", 2)
    name = node("NadaSaveDomain").save(d1, "mine", False)["result"][0]
    assert name == "mine.safetensors" and (env.root / "models" / "stylegan" / "domains" / name).is_file()
    assert node("NadaSaveDomain").save(d1, "mine", False)["result"][0] == "mine_00001.safetensors"
    listed = NODES["NadaLoadDomain"].INPUT_TYPES()["required"]["domain_name"][0]
    assert listed == ["mine.safetensors", "mine_00001.safetensors"]
    # Domain files are not offered as generators.
    assert NODES["NadaLoadGenerator"].INPUT_TYPES()["required"]["generator_name"][0] == ["tiny.safetensors"]
    loaded, info = node("NadaLoadDomain").load("mine.safetensors")
    assert "domain" in info and all(torch.equal(loaded.values[k], d1.values[k]) for k in d1.values)
    a = node("NadaApplyDomain").apply(G, loaded, 0.7)[0]
    ab = node("NadaApplyDomain").apply(a, d2, -0.5, "0-3")[0]
    expected = apply_domains(G, [(d1, 0.7), (d2, -0.5, "0-3")])
    assert torch.equal(_render(ab), _render(expected))
    assert torch.equal(_render(node("NadaApplyDomain").apply(G, loaded, 0.0)[0]), _render(G))
    assert all(torch.equal(v, before[k]) for k, v in state(G).items())  # the cached input never changes


def test_bad_inputs_are_one_line_node_errors(env, G):
    with pytest.raises(NadaNodeError, match="NADA Load Domain"):
        node("NadaLoadDomain").load("missing.safetensors")
    other = tiny_generator(16, seed=4)
    other.source_sha256 = "99" * 32
    d = _domain(other, "domain", 3)
    with pytest.raises(NadaNodeError, match="NADA Apply Domain: .*trained on generator"):
        node("NadaApplyDomain").apply(G, d, 1.0)
    with pytest.raises(NadaNodeError, match="no domain connected"):
        node("NadaApplyDomain").apply(G, None, 1.0)
    with pytest.raises(NadaNodeError, match="cannot save"):
        node("NadaSaveDomain").save(d, "../escape", False)
    bad = env.root / "models" / "stylegan" / "domains" / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(NadaNodeError) as err:
        node("NadaLoadDomain").load("broken.safetensors")
    assert "\n" not in str(err.value)
    bad.unlink()


def test_nada_train_outputs_the_domain_with_a_compact_adapt(env, G):
    clip = node("NadaLoadCLIP").load(env.clip_folder, "ViT-B-32", 1.0, "fp32")[0]
    direction = node("NadaTextDirection").direction(clip, "photo", "pencil sketch", True)[0]
    before = state(G)
    with torch.inference_mode():
        adapted, comparison, _plot, metrics, domain = node("NadaTrain").train(
            G, clip, direction, steps=3, batch=2, lr=0.05, layers="all", interval=1, falloff=0, mixing=0.9,
            global_weight=0.0, angle_weight=0.0, seed=7, preview_every=0, preview_seeds="0-1", adapt="stylespace")
    assert domain is not None and domain.kind == "stylespace" and domain.metadata["nada"]["steps_done"] == 3
    assert "directional_similarity_after" in domain.metadata["metrics"]
    assert all(torch.equal(v, before[k]) for k, v in state(G).items())
    # The generator output is the input generator with the domain applied (shared weights).
    assert all(a is b for a, b in zip(adapted.parameters(), G.parameters()))
    assert torch.equal(_render(adapted), _render(apply_domains(G, [(domain, 1.0)])))
    assert not torch.equal(_render(adapted), _render(G))
    name = node("NadaSaveDomain").save(domain, "trained", True)["result"][0]
    back = load_domain(env.root / "models" / "stylegan" / "domains" / name)
    assert all(torch.equal(back.values[k], domain.values[k]) for k in domain.values)


# ----------------------------------------------------------------------------------------------
# Several targets on the nodes, and the learning rate of compact kinds
# ----------------------------------------------------------------------------------------------


def _train(G, clip, direction, **kw):
    args = dict(steps=2, batch=2, lr=0.0, layers="all", interval=1, falloff=0, mixing=0.0, global_weight=0.0,
                angle_weight=0.0, seed=3, preview_every=0, preview_seeds="0-1", adapt="domain")
    args.update(kw)
    with torch.inference_mode():
        return node("NadaTrain").train(G, clip, direction, **args)


@pytest.fixture(scope="module")
def clip(env):
    return node("NadaLoadCLIP").load(env.clip_folder, "ViT-B-32", 1.0, "fp32")[0]


def test_text_direction_takes_one_target_per_line(clip):
    from nada_core.guidance.directions import DirectionSet, text_direction

    one = node("NadaTextDirection").direction(clip, "photo", "pencil sketch", False)[0]
    assert not isinstance(one, DirectionSet)  # a single line: the direction as it always was
    ref = text_direction(clip, "photo", "pencil sketch", templates=False)
    assert all(torch.equal(one.vectors[k], ref.vectors[k]) for k in ref.vectors)
    several = node("NadaTextDirection").direction(clip, "photo", "pencil sketch\n\n  oil painting \n", False)[0]
    assert isinstance(several, DirectionSet) and several.target_texts == ["pencil sketch", "oil painting"]
    oil = text_direction(clip, "photo", "oil painting", templates=False)
    assert all(torch.equal(several[1].vectors[k], oil.vectors[k]) for k in oil.vectors)
    with pytest.raises(NadaNodeError, match="given twice") as err:
        node("NadaTextDirection").direction(clip, "photo", "sketch\nSketch", False)
    assert "\n" not in str(err.value)
    with pytest.raises(NadaNodeError, match="NADA Metrics: the direction holds 2 targets"):
        node("NadaMetrics").measure(clip, several, None, None, "1000-1001", 0.7)


def test_nada_train_with_several_targets_trains_one_domain_each(env, G, clip):
    """One run, one domain per target line: the same vectors as the multi-target trainer given the config
    the node must build (lr 0 = auto: HyperDomainNet's 0.1 with plain Adam; stored noise), saved as one file
    per target, picked one by one; adapt full with several targets is one clear line."""
    from nada_core.domains import DomainSet
    from nada_core.training.config import TrainConfig
    from nada_core.training.multi_target import MultiTargetTrainer

    targets = node("NadaTextDirection").direction(clip, "photo", "pencil sketch\noil painting", False)[0]
    before = state(G)
    adapted, comparison, _plot, metrics, domains = _train(G, clip, targets, steps=3)
    assert isinstance(domains, DomainSet) and domains.names == ["pencil_sketch", "oil_painting"]
    assert all(torch.equal(v, before[k]) for k, v in state(G).items())
    ref = MultiTargetTrainer(G, clip, list(targets), TrainConfig(steps=3, batch=2, num_layers="all", mixing=0.0,
                                                                 seed=3, preview_every=0, preview_seeds=(0, 1),
                                                                 adapt="domain", lr=0.1, betas=(0.9, 0.999),
                                                                 adam_ratio=1.0, noise_mode="const"), "cpu")
    ref.run()
    for t, d in enumerate(domains):
        assert all(torch.equal(d.values[k], ref.domain(t).values[k]) for k in d.values)
        settings = d.metadata["nada"]["settings"]
        assert (settings["lr"], settings["adam_ratio"], settings["noise_mode"]) == (0.1, 1.0, "const")
        assert d.metadata["nada"]["direction"]["target_text"] == targets.target_texts[t]
        assert {"directional_similarity_before", "directional_similarity_after"} <= set(d.metadata["metrics"])
    assert not torch.equal(domains[0].values[domains[0].layers[0].path], domains[1].values[domains[1].layers[0].path])
    # Outputs: the first target's domain applied, one preview row per target, metrics per target.
    assert torch.equal(_render(adapted), _render(apply_domains(G, [(domains[0], 1.0)])))
    assert comparison.shape[1] == 3 * 16 + 2 * 2
    assert "'pencil sketch': NADA metrics" in metrics and "'oil painting': NADA metrics" in metrics
    # Save: <name>_<target>.safetensors each, bit exact; Pick: one by index; Apply wants one.
    saved = node("NadaSaveDomain").save(domains, "duo", False)["result"][0]
    assert saved.splitlines() == ["duo_pencil_sketch.safetensors", "duo_oil_painting.safetensors"]
    folder = env.root / "models" / "stylegan" / "domains"
    for name, d in zip(saved.splitlines(), domains):
        back = load_domain(folder / name)
        assert all(torch.equal(back.values[k], d.values[k]) for k in d.values)
    again = node("NadaSaveDomain").save(domains, "duo", False)["result"][0]
    assert again.splitlines() == ["duo_pencil_sketch_00001.safetensors", "duo_oil_painting_00001.safetensors"]
    picked, name = node("NadaPickDomain").pick(domains, 1)
    assert picked is domains[1] and name == "oil_painting"
    assert node("NadaPickDomain").pick(picked, 0)[0] is picked  # a single domain picks itself
    with pytest.raises(NadaNodeError, match=r"NADA Pick Domain: index 2 .*0 = pencil_sketch, 1 = oil_painting"):
        node("NadaPickDomain").pick(domains, 2)
    with pytest.raises(NadaNodeError, match="holds 2 domains.*NADA Pick Domain"):
        node("NadaApplyDomain").apply(G, domains, 1.0)
    one = node("NadaApplyDomain").apply(G, picked, 0.5)[0]
    assert torch.equal(_render(one), _render(apply_domains(G, [(domains[1], 0.5)])))
    with pytest.raises(NadaNodeError, match="NADA Train: the direction holds 2 targets.*'domain' or 'stylespace'") as err:
        _train(G, clip, targets, adapt="full")
    assert "\n" not in str(err.value)


def test_nada_train_lr_auto_follows_the_adapt_kind_and_explicit_values_stay(G, clip):
    direction = node("NadaTextDirection").direction(clip, "photo", "pencil sketch", False)[0]
    spec = NODES["NadaTrain"].INPUT_TYPES()["required"]["lr"][1]
    assert spec["default"] == 0.0 and "0 = auto" in spec["tooltip"] and "0.1" in spec["tooltip"]
    auto = _train(G, clip, direction, steps=1, adapt="stylespace")[4]
    assert (auto.metadata["nada"]["settings"]["lr"], auto.metadata["nada"]["settings"]["adam_ratio"]) == (0.05, 1.0)
    given = _train(G, clip, direction, steps=1, adapt="stylespace", lr=0.01, domain_layers="middle")[4]
    assert {layer.w_index for layer in given.layers} == {4}  # 16 px: "middle" is entries 4-5 (5: toRGB only)
    assert (given.metadata["nada"]["settings"]["lr"], given.metadata["nada"]["settings"]["betas"]) == (0.01, [0.9, 0.999])
    # A saved workflow's lr 0.002 with adapt full trains exactly as before: Adam at 0.0016, betas (0, 0.99 ** 0.8).
    from nada_core.training.config import TrainConfig
    from nada_core.training.trainer import NadaTrainer

    full = _train(G, clip, direction, steps=2, adapt="full", lr=0.002)[0]
    ref = NadaTrainer(G, clip, direction, TrainConfig(steps=2, batch=2, lr=0.002, num_layers="all", mixing=0.0,
                                                      seed=3, preview_every=0, preview_seeds=(0, 1)), "cpu")
    assert ref.optimizer.param_groups[0]["lr"] == pytest.approx(0.0016)
    ref.run()
    assert torch.equal(_render(full), _render(ref.export_generator()))


def test_compact_snapshots_and_cancel_keep_domains_listed_by_load_domain(env, G, clip, monkeypatch):
    """Compact runs snapshot their domains (a few kB each, one per target) where NADA Load Domain finds
    them; Cancel still keeps the last step (it used to save the untrained source generator)."""
    from nada_core.errors import Interrupted
    from nodes import comfy_bridge

    targets = node("NadaTextDirection").direction(clip, "photo", "pencil sketch\noil painting", False)[0]
    calls = {"n": 0}

    def cancel_after_three_steps():
        calls["n"] += 1
        return calls["n"] > 3

    monkeypatch.setattr(comfy_bridge, "interrupt_requested", cancel_after_three_steps)
    with pytest.raises(Interrupted, match=r"stopped at step 3 of 10; kept as snapshots/pencil_sketch_and_1_more_"):
        _train(G, clip, targets, steps=10, snapshot_every=2)
    runs = sorted((env.root / "models" / "stylegan" / "domains" / "snapshots").glob("pencil_sketch_and_1_more_*"))
    files = sorted(p.name for p in runs[-1].iterdir())
    assert files == ["step_000002_oil_painting.safetensors", "step_000002_pencil_sketch.safetensors",
                     "step_000003_oil_painting.safetensors", "step_000003_pencil_sketch.safetensors"]
    listed = NODES["NadaLoadDomain"].INPUT_TYPES()["required"]["domain_name"][0]
    assert f"snapshots/{runs[-1].name}/step_000003_oil_painting.safetensors" in listed
    d = load_domain(runs[-1] / "step_000003_oil_painting.safetensors")
    assert d.metadata["snapshot"] == {"step": 3, "of": 10} and d.metadata["nada"]["steps_done"] == 3
    assert d.metadata["nada"]["direction"]["target_text"] == "oil painting"
    assert any(float(v.abs().max()) > 0 for v in d.values.values())
