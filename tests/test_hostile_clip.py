"""A hostile open_clip_config.json in a CLIP folder ends in one ClipError line."""

import pytest
import torch

from nada_core.errors import ClipError
from nada_core.guidance.clip import HF_CONFIG_NAME, load_clip


@pytest.mark.parametrize("text, needle", [
    ("[1, 2]", "expected a JSON object, got array"),
    ('{"model_cfg": ' * 10_000 + "{}" + "}" * 10_000, "nested deeper"),
    (b"\xff{}", "not UTF-8"),
    ("{broken", "not valid JSON"),
])
def test_hostile_config_is_one_clip_error(tmp_path, text, needle):
    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / HF_CONFIG_NAME).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ClipError) as info:
        load_clip(str(folder))
    msg = str(info.value)
    assert needle in msg and HF_CONFIG_NAME in msg and "\n" not in msg


def _openai_sd(tmp_path):
    from tests.clip_factory import save_tiny_clip

    spec = save_tiny_clip(tmp_path / "src", layout="openai_state_dict")
    path = spec.split(":")[-1] if not spec.startswith("/") else spec
    return torch.load(path, weights_only=True)


def test_weights_describing_a_larger_model_are_refused_before_building(tmp_path):
    import resource
    import time

    sd = _openai_sd(tmp_path)
    # 120 vision blocks claimed by one tiny tensor each: a real model of that depth would be built
    # (and allocated) before the old loader noticed the weights are missing.
    for i in range(2, 120):
        sd[f"visual.transformer.resblocks.{i}.ln_1.weight"] = torch.ones(64)
    path = tmp_path / "liar.pt"
    torch.save(sd, path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ClipError) as info:
        load_clip(str(path))
    assert time.perf_counter() - start < 5  # meta-device shapes only
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 200 * 1024  # KiB
    msg = str(info.value)
    assert "liar.pt" in msg and "\n" not in msg and "missing" in msg


@pytest.mark.parametrize("key, shape, needle", [
    ("visual.conv1.weight", (20480, 3, 1, 1), "width 20480"),
    ("token_embedding.weight", (2_000_000, 1), "vocab_size 2000000"),
])
def test_absurd_sizes_are_refused_from_the_bounds(tmp_path, key, shape, needle):
    sd = _openai_sd(tmp_path)
    sd[key] = torch.zeros(shape, dtype=torch.float16)
    path = tmp_path / "absurd.pt"
    torch.save(sd, path)
    with pytest.raises(ClipError, match=needle):
        load_clip(str(path))


def test_honest_openai_weights_still_load(tmp_path):
    from tests.clip_factory import save_tiny_clip

    spec = save_tiny_clip(tmp_path, layout="openai_state_dict")
    clip = load_clip(spec)
    assert clip.encode_text(["a photo"]).shape[-1] == 32
