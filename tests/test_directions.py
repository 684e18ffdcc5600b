"""nada_core.guidance.directions: text and image CLIP directions against independent computations."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nada_core.guidance.clip import ClipEnsemble
from nada_core.guidance.directions import (DEFAULT_TEMPLATES, Direction, apply_templates, image_direction,
                                  sample_source_images, text_direction)
from nada_core.errors import InputError, Interrupted
from nada_core.seeds import z_from_seeds
from tests.factories import tiny_generator



def _np_unit(v):
    return v / np.linalg.norm(v)


_TOKENIZER = None


def _np_text_embedding(clip, text):
    """One prompt through the raw open_clip model (bypasses ClipModel and its cache)."""
    from open_clip.tokenizer import SimpleTokenizer

    global _TOKENIZER
    _TOKENIZER = _TOKENIZER or SimpleTokenizer(context_length=77)
    tok = _TOKENIZER([text])
    with torch.no_grad():
        e = clip.model.encode_text(tok).double().numpy()[0]
    return _np_unit(e)


class FakeClip:
    """A linear 'CLIP': 4x4 average-pooled RGB -> fixed random projection; text by hashing.

    Simple enough to recompute with numpy, so the direction maths is checked independently.
    """

    def __init__(self, name="fake", dim=8, seed=0, constant=False, nan=False):
        self.name, self.dim = name, dim
        self.W = torch.from_numpy(np.random.RandomState(seed).randn(48, dim))
        self.constant, self.nan = constant, nan
        self.calls = 0

    def _embed(self, unit):
        self.calls += 1
        if self.constant:
            return F.normalize(torch.ones(unit.shape[0], self.dim, dtype=torch.float64), dim=-1).float()
        feats = F.adaptive_avg_pool2d(unit.double(), 4).flatten(1) @ self.W
        if self.nan:
            feats = feats * float("nan")
        return F.normalize(feats, dim=-1).float()

    def encode_image(self, img):
        return self._embed((img + 1) / 2)

    def encode_unit_images(self, images):
        return torch.cat([self._embed(im) for im in images])

    def encode_text(self, texts):
        self.calls += 1
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "little")
            v = np.ones(self.dim) if self.constant else np.random.RandomState(seed).randn(self.dim)
            rows.append(_np_unit(v))
        return torch.tensor(np.array(rows), dtype=torch.float32)


def _np_pooled_embedding(fake, unit_hwc_list):
    """numpy: mean of 4x4 blocks per channel -> projection -> unit, for images [H, W, 3] in [0, 1]."""
    out = []
    for im in unit_hwc_list:
        h, w, _ = im.shape
        blocks = im.reshape(4, h // 4, 4, w // 4, 3).mean(axis=(1, 3))  # [4, 4, 3]
        feats = blocks.transpose(2, 0, 1).reshape(-1) @ fake.W.numpy()
        out.append(_np_unit(feats))
    return np.array(out)


# ------------------------------------------------------------------------------------------------
# Text directions
# ------------------------------------------------------------------------------------------------
def test_templates_are_well_formed():
    assert len(DEFAULT_TEMPLATES) >= 16 and len(set(DEFAULT_TEMPLATES)) == len(DEFAULT_TEMPLATES)
    assert all(t.count("{}") == 1 for t in DEFAULT_TEMPLATES)
    assert apply_templates("dog")[0] == DEFAULT_TEMPLATES[0].replace("{}", "dog")
    assert apply_templates("dog", False) == ["dog"]
    assert apply_templates("dog", ["x {} y"]) == ["x dog y"]
    with pytest.raises(InputError, match="no '\\{\\}'"):
        apply_templates("dog", ["no slot"])


def test_text_direction_with_templates_matches_numpy(tiny):
    d = text_direction(tiny, "photo", "pencil sketch")
    src = np.mean([_np_text_embedding(tiny, t.replace("{}", "photo")) for t in DEFAULT_TEMPLATES], axis=0)
    tgt = np.mean([_np_text_embedding(tiny, t.replace("{}", "pencil sketch")) for t in DEFAULT_TEMPLATES], axis=0)
    expected = _np_unit(tgt - src)
    np.testing.assert_allclose(d.vectors[tiny.name].numpy(), expected, atol=2e-5)
    np.testing.assert_allclose(d.targets[tiny.name].numpy(), _np_unit(tgt), atol=2e-5)
    np.testing.assert_allclose(d.sources[tiny.name].numpy(), _np_unit(src), atol=2e-5)
    assert d.kind == "text" and d.templates and d.num_templates == len(DEFAULT_TEMPLATES)
    assert d.source_text == "photo" and d.target_text == "pencil sketch"


def test_text_direction_without_templates_uses_bare_prompts_and_differs(tiny):
    bare = text_direction(tiny, "photo", "pencil sketch", templates=False)
    expected = _np_unit(_np_text_embedding(tiny, "pencil sketch") - _np_text_embedding(tiny, "photo"))
    np.testing.assert_allclose(bare.vectors[tiny.name].numpy(), expected, atol=2e-5)
    templated = text_direction(tiny, "photo", "pencil sketch", templates=True)
    assert float(bare.vectors[tiny.name] @ templated.vectors[tiny.name]) < 0.999
    assert not bare.templates and bare.num_templates == 1
    assert bare.to_dict()["template_list"] == "none" and templated.to_dict()["template_list"] == "default"


def test_text_direction_per_model_of_an_ensemble_skips_zero_weights(tiny, tiny_b):
    never = FakeClip("never")
    never.encode_text = lambda texts: pytest.fail("zero-weight model was asked for text embeddings")
    ens = ClipEnsemble([(tiny, 1.0), (tiny_b, 0.5), (never, 0.0)])
    d = text_direction(ens, "photo", "sketch")
    assert d.model_names == [tiny.name, tiny_b.name]
    for v in d.vectors.values():
        assert v.shape == (32,) and abs(float(v.norm()) - 1) < 1e-5
    single = text_direction(tiny_b, "photo", "sketch")
    torch.testing.assert_close(d.vectors[tiny_b.name], single.vectors[tiny_b.name])
    assert float(d.vectors[tiny.name] @ d.vectors[tiny_b.name]) < 0.99  # different models, different spaces


def test_text_direction_encodes_each_prompt_set_once_thanks_to_the_cache(tiny):
    before = tiny.text_encoder_calls
    text_direction(tiny, "cat", "lion")
    after_first = tiny.text_encoder_calls
    text_direction(tiny, "cat", "lion")
    assert after_first - before == 2 and tiny.text_encoder_calls == after_first


@pytest.mark.parametrize("source,target,match", [
    ("photo", "  Photo ", "same"),
    ("a  dog", "A DOG", "same"),
    ("", "sketch", "source prompt is empty"),
    ("photo", "   ", "target prompt is empty"),
    ("photo", None, "must be text"),
])
def test_bad_prompts_are_rejected(source, target, match):
    fake = FakeClip()
    with pytest.raises(InputError, match=match):
        text_direction(fake, source, target)
    assert fake.calls == 0  # rejected before any CLIP work


def test_zero_length_and_non_finite_directions_are_rejected():
    with pytest.raises(InputError, match="zero length"):
        text_direction(FakeClip(constant=True), "photo", "sketch")
    bad = FakeClip()
    bad.encode_text = lambda texts: torch.full((len(texts), 8), float("nan"))
    with pytest.raises(InputError, match="not finite"):
        text_direction(bad, "photo", "sketch")


def test_direction_json_round_trip(tiny):
    d = text_direction(tiny, "photo", "sketch")
    data = json.loads(json.dumps(d.to_dict(include_vectors=True)))
    back = Direction.from_dict(data)
    torch.testing.assert_close(back.vectors[tiny.name], d.vectors[tiny.name])
    torch.testing.assert_close(back.targets[tiny.name], d.targets[tiny.name])
    assert back.target_text == "sketch" and back.kind == "text" and back.model_names == [tiny.name]
    assert json.loads(json.dumps(d.to_dict()))["models"] == [tiny.name]
    with pytest.raises(InputError, match="not for CLIP model"):
        d.vector("other")


# ------------------------------------------------------------------------------------------------
# Image directions
# ------------------------------------------------------------------------------------------------
def test_image_direction_math_matches_numpy():
    fake = FakeClip(dim=8)
    rng = np.random.RandomState(3)
    targets = [torch.from_numpy(rng.rand(3, h, w)).float() for h, w in [(8, 12), (16, 16), (4, 20)]]
    sources = torch.from_numpy(rng.rand(5, 3, 8, 8) * 2 - 1).float()
    d = image_direction(fake, targets, source_images=sources)
    t = _np_pooled_embedding(fake, [im.double().numpy().transpose(1, 2, 0) for im in targets]).mean(axis=0)
    s = _np_pooled_embedding(fake, [((im.double().numpy() + 1) / 2).transpose(1, 2, 0) for im in sources]).mean(axis=0)
    np.testing.assert_allclose(d.vectors["fake"].numpy(), _np_unit(t - s), atol=1e-5)
    np.testing.assert_allclose(d.targets["fake"].numpy(), _np_unit(t), atol=1e-5)
    np.testing.assert_allclose(d.sources["fake"].numpy(), _np_unit(s), atol=1e-5)
    assert d.kind == "image" and d.target_text is None
    assert d.to_dict()["num_target_images"] == 3 and d.to_dict()["num_source_samples"] == 5


def test_source_samples_come_from_seeded_frozen_generator():
    G = tiny_generator(32, seed=0)
    imgs = sample_source_images(G, num_samples=6, seed=10, truncation_psi=0.7, batch_size=4)
    with torch.no_grad():
        z = z_from_seeds(range(10, 16), G.z_dim)
        expected = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")
    torch.testing.assert_close(imgs, expected)
    with pytest.raises(InputError):
        sample_source_images(G, num_samples=0)


def test_image_direction_with_tiny_clip_and_generator_is_reproducible(tiny):
    G = tiny_generator(32, seed=0)
    rng = np.random.RandomState(0)
    targets = [torch.from_numpy(rng.rand(3, 40, 30)).float(), torch.from_numpy(rng.rand(3, 64, 64)).float()]
    ticks = []
    d1 = image_direction(tiny, targets, G, seed=0, progress=lambda i, n: ticks.append((i, n)))
    d2 = image_direction(tiny, torch.stack([F.interpolate(t[None], size=(48, 48))[0] for t in targets]), G, seed=0)
    d3 = image_direction(tiny, targets, G, seed=100)
    again = image_direction(tiny, targets, G, seed=0)
    v1 = d1.vectors[tiny.name]
    assert v1.shape == (32,) and abs(float(v1.norm()) - 1) < 1e-5
    torch.testing.assert_close(again.vectors[tiny.name], v1)
    assert not torch.allclose(d3.vectors[tiny.name], v1)
    assert d2.vectors[tiny.name].shape == (32,)
    assert ticks[-1] == (16, 16) and d1.to_dict()["num_source_samples"] == 16
    # Check the source half independently: the mean of the 16 sample embeddings.
    src = sample_source_images(G, 16, seed=0)
    np.testing.assert_allclose(d1.sources[tiny.name].numpy(),
                               _np_unit(tiny.encode_image(src).double().mean(0).numpy()), atol=1e-5)


@pytest.mark.parametrize("images,match", [
    ([], "no target images"),
    (torch.zeros(0, 3, 8, 8), "no target images"),
    ([torch.full((3, 8, 8), float("nan"))], "NaN"),
    ([torch.rand(3, 8, 8) * 255], r"expected \[0, 1\]"),
    ([torch.rand(8, 8)], "expected"),
    (["not an image"], "not a tensor"),
])
def test_bad_target_images_are_rejected(images, match):
    fake = FakeClip()
    with pytest.raises(InputError, match=match):
        image_direction(fake, images, source_images=torch.zeros(2, 3, 8, 8))
    assert fake.calls == 0


def test_image_direction_zero_length_and_bad_sources():
    same = torch.rand(2, 3, 8, 8)
    fake = FakeClip()
    with pytest.raises(InputError, match="zero length"):  # targets identical to the source samples
        image_direction(fake, list(same), source_images=same * 2 - 1)
    with pytest.raises(InputError, match="NaN"):
        image_direction(fake, [torch.rand(3, 8, 8)], source_images=torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(InputError, match="frozen generator"):
        image_direction(fake, [torch.rand(3, 8, 8)])


def test_image_direction_can_be_stopped():
    G = tiny_generator(32, seed=0)
    with pytest.raises(Interrupted):
        image_direction(FakeClip(), [torch.rand(3, 8, 8)], G, should_stop=lambda: True)
