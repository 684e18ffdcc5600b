"""A hostile open_clip_config.json in a CLIP folder ends in one ClipError line."""

import pytest

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
