"""nada_core.json_text: every hostile JSON ends in one InputError line."""

import pytest

from nada_core.errors import CheckpointError, InputError
from nada_core.json_text import json_depth_exceeds, parse_json


def test_parses_and_checks_type():
    assert parse_json('{"a": [1, 2]}', "x.json", expect=dict) == {"a": [1, 2]}
    with pytest.raises(InputError, match=r"^x.json: expected a JSON object, got array; fix it$"):
        parse_json("[1]", "x.json", "fix it", expect=dict)


@pytest.mark.parametrize("text, needle", [
    ("{", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 64"),
    ('{"a": ' * 5000 + "1" + "}" * 5000, "nested deeper"),
    ("1" * 5000, "unreadable JSON"),  # int digits limit
])
def test_hostile_text_is_one_line(text, needle):
    with pytest.raises(InputError) as info:
        parse_json(text, "f.json", "regenerate the file")
    msg = str(info.value)
    assert needle in msg and "\n" not in msg and msg.startswith("f.json: ")


def test_error_class_and_depth_scan_ignores_strings():
    with pytest.raises(CheckpointError):
        parse_json("nope", "g.safetensors", error=CheckpointError)
    assert not json_depth_exceeds('"' + "[" * 500 + '"', 3)
    assert json_depth_exceeds("[[[[", 3)
    assert parse_json('["[[[[[[", "\\"[[["]', "s", max_depth=2) == ["[[[[[[", '"[[[']
