"""CLIP metrics: pure functions against an independent numpy computation, and evaluate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nada_core.errors import InputError
from nada_core.training.metrics import (DEFAULT_EVAL_SEEDS, directional_similarity, diversity, evaluate,
                               metrics_from_embeddings, source_correspondence, target_score)
from tests.factories import tiny_generator



def _np_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _unit_rows(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (x / x.norm(dim=-1, keepdim=True)).float()


def test_pure_metrics_match_numpy():
    e_src, e_adp = _unit_rows(6, 16, 0), _unit_rows(6, 16, 1)
    dT, tgt = _unit_rows(1, 16, 2)[0], _unit_rows(1, 16, 3)[0]
    s, a, d, t = (x.double().numpy() for x in (e_src, e_adp, dT, tgt))

    assert directional_similarity(e_src, e_adp, dT) == pytest.approx(_np_cos(a - s, d[None]).mean(), abs=1e-6)
    assert target_score(e_adp, tgt) == pytest.approx(_np_cos(a, t[None]).mean(), abs=1e-6)
    pairs = [1 - _np_cos(a[i], a[j]) for i in range(6) for j in range(i + 1, 6)]
    assert len(pairs) == 15
    assert diversity(e_adp) == pytest.approx(np.mean(pairs), abs=1e-6)
    assert source_correspondence(e_src, e_adp) == pytest.approx(_np_cos(s, a).mean(), abs=1e-6)
    all4 = metrics_from_embeddings(e_src, e_adp, dT, tgt)
    assert all4["diversity"] == diversity(e_adp)


def test_metric_edge_cases():
    e = _unit_rows(4, 8, 0)
    d = _unit_rows(1, 8, 1)[0]
    assert directional_similarity(e, e, d) == 0.0  # no change: 0, not NaN
    assert diversity(e[:1].expand(5, -1)) == pytest.approx(0.0, abs=1e-6)  # collapse
    eye = torch.eye(3)
    assert diversity(eye) == pytest.approx(1.0)  # orthogonal samples
    assert source_correspondence(e, e) == pytest.approx(1.0, abs=1e-6)
    # A change exactly along dT scores 1 whatever its length; against dT scores -1.
    assert directional_similarity(e, e + 0.3 * d, d) == pytest.approx(1.0, abs=1e-5)
    assert directional_similarity(e, e - 0.01 * d, d) == pytest.approx(-1.0, abs=1e-4)
    with pytest.raises(ValueError):
        diversity(e[:1])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from tests.clip_factory import load_tiny_clip

    root = tmp_path_factory.mktemp("clips")
    return load_tiny_clip(root / "a", seed=0), load_tiny_clip(root / "b", seed=1)


def test_evaluate_matches_an_independent_computation(clips):
    from nada_core.guidance.directions import text_direction
    from nada_core.seeds import z_from_seeds

    clip = clips[0]
    G_frozen = tiny_generator(16, seed=0)
    G_adapted = tiny_generator(16, seed=0)
    with torch.no_grad():  # a different synthesis, the SAME mapping (as after training)
        for p in G_adapted.synthesis.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = text_direction(clip, "photo", "pencil sketch", templates=False)
    seeds = [1000, 1003, 1007, 1010]
    got = evaluate(G_frozen, G_adapted, clip, d, seeds=seeds, batch_size=3)

    with torch.no_grad():
        ws = G_frozen.mapping(z_from_seeds(seeds, G_frozen.z_dim), truncation_psi=0.7)
        s = clip.encode_image(G_frozen.synthesis(ws)).double().numpy()
        a = clip.encode_image(G_adapted.synthesis(ws)).double().numpy()
    dT = d.vector(clip.name).double().numpy()
    tgt = d.target(clip.name).double().numpy()
    assert got["directional_similarity"] == pytest.approx(_np_cos(a - s, dT[None]).mean(), abs=1e-5)
    assert got["target_score"] == pytest.approx(_np_cos(a, tgt[None]).mean(), abs=1e-5)
    pairs = [1 - _np_cos(a[i], a[j]) for i in range(4) for j in range(i + 1, 4)]
    assert got["diversity"] == pytest.approx(np.mean(pairs), abs=1e-5)
    assert got["source_correspondence"] == pytest.approx(_np_cos(s, a).mean(), abs=1e-5)
    assert got["num_samples"] == 4 and got["seeds"] == seeds and got["truncation"] == 0.7

    same = evaluate(G_frozen, G_frozen, clip, d, seeds=seeds)
    assert same["directional_similarity"] == 0.0
    assert same["source_correspondence"] == pytest.approx(1.0, abs=1e-6)


def test_evaluate_with_an_ensemble_weights_the_models(clips):
    from nada_core.guidance.clip import ClipEnsemble
    from nada_core.guidance.directions import text_direction

    ens = ClipEnsemble([(clips[0], 1.0), (clips[1], 3.0)])
    d = text_direction(ens, "photo", "pencil sketch", templates=False)
    G_frozen = tiny_generator(16, seed=0)
    G_adapted = tiny_generator(16, seed=0)
    with torch.no_grad():
        for p in G_adapted.synthesis.parameters():
            p.add_(0.05 * torch.randn_like(p))
    got = evaluate(G_frozen, G_adapted, ens, d, seeds=range(1000, 1004))
    per = {m["clip"]: m for m in got["per_model"]}
    assert set(per) == {clips[0].name, clips[1].name}
    for key in ("directional_similarity", "target_score", "diversity", "source_correspondence"):
        expected = (per[clips[0].name][key] * 1.0 + per[clips[1].name][key] * 3.0) / 4.0
        assert got[key] == pytest.approx(expected, abs=1e-6)
    single = evaluate(G_frozen, G_adapted, clips[1], d, seeds=range(1000, 1004))
    assert per[clips[1].name]["target_score"] == pytest.approx(single["target_score"], abs=1e-6)


def test_evaluate_defaults_and_bad_input(clips):
    from nada_core.guidance.directions import text_direction

    assert DEFAULT_EVAL_SEEDS == tuple(range(1000, 1016))
    d = text_direction(clips[0], "photo", "sketch", templates=False)
    G = tiny_generator(16)
    with pytest.raises(InputError, match="two seeds"):
        evaluate(G, G, clips[0], d, seeds=[1000])
    with torch.inference_mode():  # ComfyUI context
        out = evaluate(G, G, clips[0], d, seeds=[1000, 1001])
    assert out["diversity"] > 0


def test_a_reference_renders_the_source_once_and_gives_the_same_numbers(clips, monkeypatch):
    from nada_core.guidance.clip import ClipEnsemble
    from nada_core.guidance.directions import text_direction
    from nada_core.training.metrics import reference

    ens = ClipEnsemble([(clips[0], 1.0), (clips[1], 2.0)])
    dirs = [text_direction(ens, "photo", t, templates=False) for t in ("pencil sketch", "oil painting")]
    G_frozen, G_adapted = tiny_generator(16, seed=0), tiny_generator(16, seed=0)
    with torch.no_grad():
        for p in G_adapted.synthesis.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seeds = [1000, 1002, 1005]
    plain = [evaluate(G_frozen, G_adapted, ens, d, seeds=seeds, truncation=0.5) for d in dirs]

    renders = {"n": 0}
    synth = G_frozen.synthesis.forward

    def counting(*a, **k):
        renders["n"] += 1
        return synth(*a, **k)

    monkeypatch.setattr(G_frozen.synthesis, "forward", counting)
    ref = reference(G_frozen, ens, seeds, truncation=0.5, batch_size=2)
    assert renders["n"] == 2  # two chunks of at most 2 codes
    assert ref.seeds == tuple(seeds) and set(ref.embeddings) == {clips[0].name, clips[1].name}
    assert ref.ws.shape == (3, G_frozen.num_ws, G_frozen.w_dim)
    reused = [evaluate(G_frozen, G_adapted, ens, d, ref=ref) for d in dirs]
    before = evaluate(G_frozen, G_frozen, ens, dirs[0], ref=ref)
    assert renders["n"] == 2  # nothing of the source rendered again
    for p, r in zip(plain, reused):
        assert r["seeds"] == seeds and r["truncation"] == 0.5
        for key in ("directional_similarity", "target_score", "diversity", "source_correspondence"):
            assert r[key] == pytest.approx(p[key], abs=1e-6)
    assert before["directional_similarity"] == 0.0
    assert reused[0]["target_score"] != pytest.approx(reused[1]["target_score"], abs=1e-6)
    with pytest.raises(ValueError, match="no embeddings for CLIP model"):
        evaluate(G_frozen, G_adapted, clips[1], text_direction(clips[1], "a", "b", templates=False),
                 ref=reference(G_frozen, clips[0], seeds))
