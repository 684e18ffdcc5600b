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
