"""Compact domains on StyleGAN3 (-T and -R): apply against the independent reference, bake, files,
training (single and several targets), ``nada sample --domain``, the nodes, and refusing a
StyleGAN2 domain (or a -T domain on an -R generator) in one line."""

from __future__ import annotations

import pytest
import torch

import checkpoint_factories_sg3 as f3
from reference_stylegan3 import ref_synthesis
from nada_core import cli
from nada_core.domains import apply_domains, bake, load_domain, save_domain, style_layers
from nada_core.errors import CheckpointError
from nada_core.formats.checkpoints import lineage_sha256, load_generator, save_generator
from nada_core.media.images import load_image
from nada_core.training.trainer import NadaTrainer, TrainConfig
from tests.clip_factory import load_tiny_clip, save_tiny_clip
from tests.factories import mixed_style_factors, random_domain, tiny_generator, tiny_sg3_generator


def _z(G, n=2, seed=5):
    return torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def nvidia3(tmp_path_factory):
    """``{kind: (G, tensors, kwargs, layers)}``: random StyleGAN3-T/-R snapshots in NVIDIA's layout."""
    root = tmp_path_factory.mktemp("sg3_domains")
    out = {}
    for kind, extra in (("t", {}), ("r", dict(conv_kernel=1, use_radial_filters=True))):
        tensors, kwargs, layers = f3.random_sg3(seed=3, **extra)
        G = load_generator(f3.write_nvidia3_pkl(root / f"stylegan3-{kind}.pkl", tensors, kwargs, layers))
        out[kind] = (G, tensors, kwargs, layers)
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_tiny_clip(tmp_path_factory.mktemp("clip"))


# ----------------------------------------------------------------------------------------------
# Applying, against the independent reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["t", "r"])
def test_strengths_and_mixing_match_the_reference_with_rewritten_affines(nvidia3, kind):
    """Two domain and two stylespace domains, strengths below 0, between 0 and 1 and above 1, against
    the float64 StyleGAN3 reference whose affines are rewritten by hand: weight * M, bias * M + A
    (the affine's bias gain is 1). The toRGB styles, which StyleGAN3 scales by 1/sqrt(fan-in) after the
    affine, are included."""
    G, tensors, kwargs, layers = nvidia3[kind]
    d1, d2 = random_domain(G, "domain", 11), random_domain(G, "domain", 12, torgb=False)
    o1, o2 = random_domain(G, "stylespace", 13), random_domain(G, "stylespace", 14)
    mix = [(d1, 1.7), (o1, -0.8), (d2, 0.4), (o2, 2.5)]
    expected_t = dict(tensors)
    table = style_layers(G)
    assert [layer.path for layer in table] == [f"synthesis.{rec['name']}.affine" for rec in layers]
    assert [layer.kind for layer in table][-1] == "torgb" and all(layer.kind == "conv" for layer in table[:-1])
    for layer in table:
        M, A = mixed_style_factors(mix, layer.path, layer.channels)
        expected_t[f"{layer.path}.weight"] = tensors[f"{layer.path}.weight"] * M[:, None]
        expected_t[f"{layer.path}.bias"] = tensors[f"{layer.path}.bias"] * M + A
    with torch.no_grad():
        ws = G.mapping(_z(G))
        got = apply_domains(G, mix).synthesis(ws)
        base = G.synthesis(ws)
        zero = apply_domains(G, [(dom, 0.0) for dom, _ in mix]).synthesis(ws)
    expected = ref_synthesis(expected_t, kwargs, layers, ws)
    tol = 1e-5 * max(1.0, float(expected.abs().max()))
    assert float((got.double() - expected).abs().max()) <= tol
    assert float((expected - ref_synthesis(tensors, kwargs, layers, ws)).abs().max()) > 0.05
    assert torch.equal(zero, base)  # strength 0: the base images bit for bit


@pytest.mark.parametrize("kind", ["t", "r"])
def test_strength_one_equals_the_baked_generator_which_saves_and_reloads(nvidia3, kind, tmp_path):
    G = nvidia3[kind][0]
    d, s = random_domain(G, "domain", 3), random_domain(G, "stylespace", 4)
    z = _z(G)
    with torch.no_grad():
        applied = apply_domains(G, [(d, 1.0), (s, 1.0)])(z)
        baked = bake(G, [(d, 1.0), (s, 1.0)])
        assert float((baked(z) - applied).abs().max()) <= 1e-5 * float(applied.abs().max())
        assert float((applied - G(z)).abs().max()) > 0.05
    back = load_generator(save_generator(baked, tmp_path / "baked.safetensors"))
    assert type(back) is type(G) and back.config == G.config
    assert back.metadata["source_sha256"] == G.metadata["source_sha256"]
    assert back.metadata["provenance"]["nada"]["kind"] == "baked-domains"
    with torch.no_grad():
        assert torch.equal(back(z), baked(z))
    # The domain file records the StyleGAN3 architecture and reads back bit for bit.
    path = save_domain(d, tmp_path / "d.safetensors")
    again = load_domain(path)
    assert again.architecture == G.config.to_dict() and again.architecture["architecture"] == "stylegan3"
    assert again.layers == d.layers and all(torch.equal(again.values[k], d.values[k]) for k in d.values)
    with torch.no_grad():
        assert torch.equal(apply_domains(G, [(again, 0.6)])(z), apply_domains(G, [(d, 0.6)])(z))


def test_a_domain_of_another_architecture_is_refused_in_one_line(nvidia3):
    t, r = nvidia3["t"][0], nvidia3["r"][0]
    sg2 = random_domain(tiny_generator(16), "domain", 1)
    sg2.source_sha256 = None  # no lineage to compare: the architecture alone must refuse it
    for G, label in ((t, "StyleGAN3-T"), (r, "StyleGAN3-R")):
        with pytest.raises(CheckpointError) as err:
            apply_domains(G, [(sg2, 1.0)])
        text = str(err.value)
        assert f"trained on a StyleGAN2 generator, this one is {label}" in text and "\n" not in text
    on_t = random_domain(t, "stylespace", 2)
    on_t.source_sha256 = None
    with pytest.raises(CheckpointError, match="trained on a StyleGAN3-T generator, this one is StyleGAN3-R"):
        apply_domains(r, [(on_t, 1.0)])
    with pytest.raises(CheckpointError, match="this one is StyleGAN2"):
        apply_domains(tiny_generator(16), [(on_t, 1.0)])


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, adapt", [("t", "domain"), ("r", "stylespace")])
def test_training_a_domain_on_stylegan3(clip, kind, adapt, tmp_path):
    """Before the first update the trained generator renders the frozen one bit for bit; only the
    selected layers' vectors get gradients (toRGB included on request); the saved domain at strength 1
    renders what the trainer renders, and resuming continues exactly."""
    from nada_core.guidance.directions import text_direction

    direction = text_direction(clip, "photo", "pencil sketch", templates=False)
    G = tiny_sg3_generator(kind)
    cfg = dict(steps=2, batch=2, lr=0.0, num_layers=2, preview_every=0, seed=1, adapt=adapt, noise_mode="const",
               train_torgb=True)
    tr = NadaTrainer(G, clip, direction, TrainConfig(**cfg), "cpu")
    assert tr.optimizer.param_groups[0]["lr"] == (0.1 if adapt == "domain" else 0.05)  # lr 0 = the recipe
    with torch.no_grad():
        ws = tr.G_frozen.mapping(_z(G, 3))
        assert torch.equal(tr.G_train.synthesis(ws), tr.G_frozen.synthesis(ws))
    weights = {k: v.detach().clone() for k, v in tr.G_train.state_dict().items()}
    res = tr.step()
    trained = {tr.adapter.name(0, layer.path) for layer in tr.adapter.layers if layer.w_index in res.layer_indices}
    moved = {n for n, p in tr.adapter.named_parameters().items() if p.abs().sum() > 0}
    assert moved == trained and len(res.layer_indices) == 2
    assert all(torch.equal(v, weights[k]) for k, v in tr.G_train.state_dict().items())  # no weight moved
    tr.step()
    tr.save(tmp_path)
    d = load_domain(tmp_path / "domain.safetensors")
    assert d.kind == adapt and any(layer.kind == "torgb" for layer in d.layers)
    with torch.no_grad():
        assert torch.equal(apply_domains(G, [(d, 1.0)]).synthesis(ws), tr.G_train.synthesis(ws))
        assert not torch.equal(tr.G_train.synthesis(ws), tr.G_frozen.synthesis(ws))
    longer = NadaTrainer(G, clip, direction, TrainConfig(**{**cfg, "steps": 3}), "cpu").load_state(tmp_path)
    longer.run()
    straight = NadaTrainer(G, clip, direction, TrainConfig(**{**cfg, "steps": 3}), "cpu")
    straight.run()
    assert all(torch.equal(longer.domain().values[k], straight.domain().values[k]) for k in d.values)


def test_several_targets_on_stylegan3_match_separate_runs(clip):
    from nada_core.guidance.directions import text_direction
    from nada_core.training.multi_target import MultiTargetTrainer

    dirs = [text_direction(clip, "photo", t, templates=False) for t in ("pencil sketch", "oil painting")]
    G = tiny_sg3_generator("t")
    cfg = dict(steps=2, batch=2, lr=0.0, num_layers="all", preview_every=0, seed=2, adapt="domain",
               noise_mode="const")
    multi = MultiTargetTrainer(G, clip, dirs, TrainConfig(**cfg), "cpu")
    multi.run()
    for t, d in enumerate(dirs):
        single = NadaTrainer(G, clip, d, TrainConfig(**cfg), "cpu")
        single.run()
        a, b = multi.domain(t), single.domain()
        scale = max(float(v.abs().max()) for v in b.values.values())
        assert scale > 0 and all(float((a.values[k] - b.values[k]).abs().max()) <= 2e-3 * scale for k in a.values)


# ----------------------------------------------------------------------------------------------
# CLI and nodes
# ----------------------------------------------------------------------------------------------


def test_cli_train_sample_and_bake_a_stylegan3_domain(nvidia3, tmp_path):
    root = tmp_path
    gen = save_generator(nvidia3["r"][0], root / "sg3r.safetensors")
    clip = save_tiny_clip(root / "clip", layout="safetensors")
    out = root / "run"
    assert cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "sketch",
                     "--adapt", "domain", "--steps", "2", "--layers", "all", "--device", "cpu", "--out", str(out),
                     "--quiet", "--eval-seeds", "none", "--preview-every", "0"]) == 0
    dom = out / "domain.safetensors"
    d = load_domain(dom)
    # The lineage is the original NVIDIA snapshot's sha256, which the converted file carries.
    assert d.source_sha256 == lineage_sha256(load_generator(gen)) == nvidia3["r"][0].metadata["source_sha256"]
    assert d.architecture["use_radial_filters"] is True
    base = ["sample", "--generator", str(gen), "--seeds", "0-1", "--device", "cpu"]
    plain, zero, one = root / "plain.png", root / "zero.png", root / "one.png"
    assert cli.main([*base, "--out", str(plain)]) == 0
    assert cli.main([*base, "--domain", f"{dom}@0", "--out", str(zero)]) == 0
    assert cli.main([*base, "--domain", f"{dom}@1", "--out", str(one)]) == 0
    assert plain.read_bytes() == zero.read_bytes()
    assert not torch.equal(load_image(one), load_image(plain))
    baked = root / "baked.safetensors"
    assert cli.main(["bake", "--generator", str(gen), "--domain", f"{dom}@1", "--out", str(baked)]) == 0
    via_baked = root / "via_baked.png"
    assert cli.main(["sample", "--generator", str(baked), "--seeds", "0-1", "--device", "cpu",
                     "--out", str(via_baked)]) == 0
    # The baked generator equals strength 1 up to float rounding: the 8-bit pictures agree within a level.
    assert float((load_image(via_baked) - load_image(one)).abs().max()) <= 1 / 255 + 1e-6


def test_nodes_train_and_apply_a_stylegan3_domain(nvidia3, clip):
    from nodes import NODE_CLASS_MAPPINGS as NODES

    G = nvidia3["t"][0]
    direction = NODES["NadaTextDirection"]().direction(clip, "photo", "pencil sketch", False)[0]
    with torch.inference_mode():
        adapted, comparison, _plot, _metrics, domain = NODES["NadaTrain"]().train(
            G, clip, direction, steps=2, batch=2, lr=0.0, layers="all", interval=1, falloff=0, mixing=0.0,
            global_weight=0.0, angle_weight=0.0, seed=4, preview_every=0, preview_seeds="0-1", adapt="stylespace")
    assert domain.kind == "stylespace" and domain.architecture["architecture"] == "stylegan3"
    assert comparison.shape[1] == 2 * 16 + 2  # source row above adapted row
    z = _z(G)
    with torch.no_grad():
        half = NODES["NadaApplyDomain"]().apply(G, domain, 0.5)[0]
        assert torch.equal(half(z), apply_domains(G, [(domain, 0.5)])(z))
        assert torch.equal(adapted(z), apply_domains(G, [(domain, 1.0)])(z))
        assert torch.equal(NODES["NadaApplyDomain"]().apply(G, domain, 0.0)[0](z), G(z))
