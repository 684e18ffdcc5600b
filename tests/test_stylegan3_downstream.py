"""Everything downstream of the generator on StyleGAN3: training + freezing, latents, blending,
inversion, metrics."""

from __future__ import annotations

import pytest
import torch

from nada_core.training.freezing import FreezeOptions, candidate_w_indices, parameter_names_for_w_index, \
    trainable_parameter_names
from nada_core.training.trainer import NadaTrainer, TrainConfig
from tests.clip_factory import load_tiny_clip
from tests.factories import tiny_sg3_generator


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return load_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def direction(clip):
    from nada_core.guidance.directions import text_direction

    return text_direction(clip, "photo", "pencil sketch", templates=False)


def _state(module):
    return {k: v.detach().clone() for k, v in list(module.named_parameters()) + list(module.named_buffers())}


def _changed(a, b):
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_freezing_map_over_stylegan3_layers():
    G = tiny_sg3_generator("t")
    syn = G.synthesis
    last = G.num_ws - 1
    assert candidate_w_indices(G) == list(range(1, last))  # input and toRGB frozen by default
    assert candidate_w_indices(G, FreezeOptions(train_torgb=True)) == list(range(1, last + 1))
    name = syn.layer_names[2]
    assert parameter_names_for_w_index(G, 3) == [f"synthesis.{name}.weight", f"synthesis.{name}.bias"]
    assert parameter_names_for_w_index(G, 3, FreezeOptions(train_affine=True)) == [
        f"synthesis.{name}.weight", f"synthesis.{name}.bias", f"synthesis.{name}.affine.weight",
        f"synthesis.{name}.affine.bias"]
    torgb = syn.layer_names[-1]
    assert parameter_names_for_w_index(G, last, FreezeOptions(train_torgb=True)) == [
        f"synthesis.{torgb}.weight", f"synthesis.{torgb}.bias"]
    assert parameter_names_for_w_index(G, 0, FreezeOptions(train_const=True)) == ["synthesis.input.weight"]


@pytest.mark.parametrize("kind", ["t", "r"])
def test_training_steps_change_only_the_selected_layers(clip, direction, kind):
    G = tiny_sg3_generator(kind)
    cfg = TrainConfig(steps=3, batch=2, lr=0.01, num_layers=2, preview_every=0, seed=0)
    tr = NadaTrainer(G, clip, direction, cfg, "cpu")
    frozen_before = _state(tr.G_frozen)
    before = _state(tr.G_train)
    res = tr.step()
    assert res.selected and len(res.layer_indices) == 2 and 0 not in res.layer_indices
    assert all(torch.isfinite(torch.tensor(v)) for v in tr.history[-1].values())
    expected = set(trainable_parameter_names(tr.G_train, res.layer_indices, cfg.freeze_options))
    assert any(k.endswith(".affine.weight") for k in expected)  # the official default: a layer trains with its affine
    assert _changed(before, _state(tr.G_train)) == expected
    assert all(not k.endswith(("magnitude_ema", "_filter", "transform", "freqs", "phases")) for k in expected)
    for _ in range(2):
        tr.step()
    assert _changed(frozen_before, _state(tr.G_frozen)) == set()
    assert tr.G_train.mapping is tr.G_frozen.mapping
    out = tr.export_generator()
    assert type(out).__name__ == "StyleGAN3Generator" and out.config == G.config


def test_latents_render_and_blend_on_stylegan3():
    from nada_core.editing.interpolate import blend_generators, w_index_of_tensor
    from nada_core.editing.latents import latents_from_seeds, render

    G = tiny_sg3_generator("t")
    lat = latents_from_seeds(G, [1, 2], truncation_psi=0.7, truncation_cutoff=3)
    img = render(G, lat)
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    with torch.no_grad():
        direct = G(lat.z, truncation_psi=0.7, truncation_cutoff=3)
    assert torch.allclose(img, direct, atol=1e-6)
    syn = G.synthesis
    assert w_index_of_tensor(f"synthesis.{syn.layer_names[0]}.weight") == 1
    assert w_index_of_tensor(f"synthesis.{syn.layer_names[-1]}.affine.bias") == G.num_ws - 1
    assert w_index_of_tensor("synthesis.input.freqs") == 0
    # Per-layer blend: entry 2 from B only changes layer L1.
    B = tiny_sg3_generator("t", seed=5)
    B.source_sha256 = G.source_sha256 = None
    alphas = [0.0] * G.num_ws
    alphas[2] = 1.0
    mixed = blend_generators(G, B, alphas)
    sa, sb, sm = G.state_dict(), B.state_dict(), mixed.state_dict()
    for k in sm:
        want = sb[k] if k.startswith(f"synthesis.{syn.layer_names[1]}.") else sa[k]
        assert torch.equal(sm[k], want), k


def test_inversion_runs_on_stylegan3(tmp_path):
    from nada_core.editing.invert import InvertConfig, invert

    G = tiny_sg3_generator("t")
    with torch.no_grad():
        target = G(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)))
    images = (target.clamp(-1, 1) + 1) / 2  # [0, 1]
    cfg = InvertConfig(steps=4, space="w+", optimize_noise=True, w_avg_samples=64)
    res = invert(G, images, cfg)
    assert res.latents.ws.shape == (1, G.num_ws, G.w_dim) and torch.isfinite(res.latents.ws).all()
    assert res.latents.noise is None or len(res.latents.noise) == 0


def test_metrics_on_stylegan3(clip, direction):
    from nada_core.training.metrics import evaluate

    G = tiny_sg3_generator("r")
    out = evaluate(G, G, clip, direction)
    assert out["directional_similarity"] == 0.0 and out["source_correspondence"] == pytest.approx(1.0, abs=1e-5)


def test_render_node_translates_and_rotates_stylegan3_and_refuses_it_on_stylegan2():
    from nada_core.editing.latents import latents_from_seeds
    from nada_core.editing.transforms import input_transform
    from nada_core.media.images import to_unit
    from nodes import NODE_CLASS_MAPPINGS as NODES
    from nodes.common import NadaNodeError
    from tests.factories import tiny_generator

    spec = NODES["NadaRender"].INPUT_TYPES()["optional"]
    assert set(spec) == {"translate_x", "translate_y", "rotate"}
    assert all("StyleGAN" in opts["tooltip"] for _, opts in spec.values())
    G = tiny_sg3_generator("r")
    lat = latents_from_seeds(G, [2, 3], truncation_psi=0.7)
    images = NODES["NadaRender"]().render(G, lat, "const", translate_x=0.1, translate_y=0.0, rotate=45.0)[0]
    with torch.no_grad():
        expected = to_unit(G.synthesis(lat.ws, input_transform=input_transform((0.1, 0.0), 45.0)))
    torch.testing.assert_close(images, expected.permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    G2 = tiny_generator(16)
    lat2 = latents_from_seeds(G2, [1])
    assert NODES["NadaRender"]().render(G2, lat2, "const")[0].shape == (1, 16, 16, 3)  # defaults: fine on SG2
    with pytest.raises(NadaNodeError, match="StyleGAN3"):
        NODES["NadaRender"]().render(G2, lat2, "const", rotate=10.0)
