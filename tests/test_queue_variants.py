"""Variant expansion, override typing and node resolution for ``nada queue`` (no server needed)."""

from __future__ import annotations

import json

import pytest

from nada_core.errors import InputError
from nada_queue.variants import (Variant, coerce_text, coerce_value, expand_variants, load_table,
                                      parse_sweep_values, resolve_node, resolve_target)


def make_workflow():
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
              "_meta": {"title": "Canvas"}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0},
              "_meta": {"title": "Blur"}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 2, "sigma": 0.5},
              "_meta": {"title": "Blur"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "out"},
              "_meta": {"title": "Save"}},
        "5": {"class_type": "Toggle", "inputs": {"enabled": False, "extra": None, "tags": ["a", "b"]}},
    }


# ----------------------------------------------------------------------------- resolution

def test_resolve_by_id_title_and_unique_class():
    wf = make_workflow()
    assert resolve_node(wf, "2") == "2"
    assert resolve_node(wf, "Canvas") == "1"
    assert resolve_node(wf, "SaveImage") == "4"  # class type used by one node only
    assert resolve_target(wf, "Canvas.width") == "1.width"


def test_ambiguous_title_lists_candidates():
    with pytest.raises(InputError) as err:
        resolve_node(make_workflow(), "Blur", "--set Blur.sigma")
    msg = str(err.value)
    assert "2, 3" in msg and "node id" in msg and msg.startswith("--set Blur.sigma:")


def test_ambiguous_class_and_unknown_node_list_nodes():
    wf = make_workflow()
    wf["3"]["_meta"]["title"] = "Second blur"
    wf["2"]["_meta"]["title"] = "First blur"
    with pytest.raises(InputError, match=r"several ImageBlur nodes: 2 'First blur', 3 'Second blur'"):
        resolve_node(wf, "ImageBlur")
    with pytest.raises(InputError) as err:
        resolve_node(wf, "Nope")
    assert "no node 'Nope'" in str(err.value) and "1 'Canvas' (EmptyImage)" in str(err.value)


def test_unknown_input_and_link_are_refused():
    wf = make_workflow()
    with pytest.raises(InputError, match=r"has no input 'widht'; its inputs: width, height, batch_size, color"):
        resolve_target(wf, "Canvas.widht")
    with pytest.raises(InputError, match=r"2\.image is connected to node 1 output 0"):
        resolve_target(wf, "2.image")
    with pytest.raises(InputError, match="NODE.INPUT"):
        resolve_target(wf, "Canvas")


def test_title_with_dots_uses_last_dot():
    wf = make_workflow()
    wf["1"]["_meta"]["title"] = "v1.5 canvas"
    assert resolve_target(wf, "v1.5 canvas.height") == "1.height"


# ----------------------------------------------------------------------------- typing

@pytest.mark.parametrize("text,existing,expected", [
    ("42", 7, 42), (" -5 ", 7, -5), ("64.0", 7, 64), ("1e2", 7, 100),
    ("0.25", 1.0, 0.25), ("3", 1.0, 3.0),
    ("true", False, True), ("No", True, False), ("1", False, True),
    ("  keep spaces ", "x", "  keep spaces "),
    ('{"a": 1}', None, {"a": 1}), ("plain", None, "plain"),
])
def test_coerce_text_follows_existing_type(text, existing, expected):
    value = coerce_text(text, existing, "w")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text,existing,fragment", [
    ("abc", 7, "not an integer"), ("0.5", 7, "not an integer"), ("x", 1.0, "not a number"),
    ("inf", 1.0, "not a finite number"), ("maybe", True, "not a boolean"), ("[1,", ["a"], "not valid JSON"),
])
def test_coerce_text_rejects_wrong_kind(text, existing, fragment):
    with pytest.raises(InputError, match=fragment):
        coerce_text(text, existing, "--set 1.width")


def test_coerce_decoded_values():
    assert coerce_value(3, 1.5, "w") == 3.0 and isinstance(coerce_value(3, 1.5, "w"), float)
    assert coerce_value(8.0, 1, "w") == 8 and isinstance(coerce_value(8.0, 1, "w"), int)
    assert coerce_value("12", 1, "w") == 12
    assert coerce_value(12, "text", "w") == "12"
    for bad, existing in ((True, 1), (2.5, 1), ("x", 2.0), ([1], "t"), (5, True)):
        with pytest.raises(InputError):
            coerce_value(bad, existing, "w")


def test_sweep_values_ranges_lists_and_json():
    assert parse_sweep_values("0-3,7", 1, "w") == [0, 1, 2, 3, 7]
    assert parse_sweep_values("2..4", 1, "w") == [2, 3, 4]
    assert parse_sweep_values("-5, 3", 1, "w") == [-5, 3]
    assert parse_sweep_values("0.5,1", 1.0, "w") == [0.5, 1.0]
    assert parse_sweep_values("cat, dog", "x", "w") == ["cat", "dog"]
    assert parse_sweep_values('["a, b", "c"]', "x", "w") == ["a, b", "c"]
    assert parse_sweep_values("1-3", "x", "w") == ["1-3"]  # ranges only for integer inputs
    with pytest.raises(InputError, match="backwards"):
        parse_sweep_values("5-2", 1, "w")
    with pytest.raises(InputError, match="no values"):
        parse_sweep_values(" , ", 1, "w")


# ----------------------------------------------------------------------------- expansion

def test_product_of_sweeps_with_sets_applied_to_all():
    wf = make_workflow()
    variants = expand_variants(wf, sets=["Save.filename_prefix=batch"],
                               sweeps=["Canvas.width=16,32", "1.color=1-3"])
    assert [v.index for v in variants] == list(range(6))
    combos = [(v.overrides["1.width"], v.overrides["1.color"]) for v in variants]
    assert combos == [(16, 1), (16, 2), (16, 3), (32, 1), (32, 2), (32, 3)]  # first sweep varies slowest
    assert all(v.overrides["4.filename_prefix"] == "batch" for v in variants)
    assert len({v.key for v in variants}) == 6


def test_no_options_gives_one_plain_variant():
    variants = expand_variants(make_workflow())
    assert len(variants) == 1 and variants[0].overrides == {}
    assert variants[0].describe() == "(workflow as saved)"


def test_apply_writes_inputs_without_touching_base():
    wf = make_workflow()
    before = json.dumps(wf, sort_keys=True)
    v = expand_variants(wf, sweeps=["5.enabled=true", "1.width=8"])[0]
    applied = v.apply(wf)
    assert applied["5"]["inputs"]["enabled"] is True and applied["1"]["inputs"]["width"] == 8
    assert applied["2"]["inputs"]["image"] == ["1", 0]
    assert json.dumps(wf, sort_keys=True) == before


def test_key_ignores_order():
    a = Variant(0, {"1.width": 8, "2.sigma": 1.0})
    b = Variant(5, {"2.sigma": 1.0, "1.width": 8})
    assert a.key == b.key and a.key != Variant(0, {"1.width": 8, "2.sigma": 2.0}).key


def test_same_input_twice_is_refused():
    with pytest.raises(InputError, match="already given by --set"):
        expand_variants(make_workflow(), sets=["1.width=8"], sweeps=["Canvas.width=1,2"])
    with pytest.raises(InputError, match="NODE.INPUT=VALUE"):
        expand_variants(make_workflow(), sets=["1.width"])


def test_csv_table_rows_times_sweep(tmp_path):
    table = tmp_path / "rows.csv"
    table.write_text("Canvas.width,2.sigma,# note\n16,0.5,first\n24,,second (keeps sigma)\n", encoding="utf-8")
    rows = load_table(table)
    assert rows == [{"Canvas.width": "16", "2.sigma": "0.5"}, {"Canvas.width": "24"}]
    variants = expand_variants(make_workflow(), sets=["1.height=9"], sweeps=["1.color=1,2"], table_rows=rows)
    assert [v.overrides for v in variants] == [
        {"1.height": 9, "1.width": 16, "2.sigma": 0.5, "1.color": 1},
        {"1.height": 9, "1.width": 16, "2.sigma": 0.5, "1.color": 2},
        {"1.height": 9, "1.width": 24, "1.color": 1},
        {"1.height": 9, "1.width": 24, "1.color": 2},
    ]


def test_jsonl_table_types_values(tmp_path):
    table = tmp_path / "rows.jsonl"
    table.write_text('{"1.width": 16, "5.enabled": true}\n\n{"1.width": "20", "Save.filename_prefix": 7}\n')
    variants = expand_variants(make_workflow(), table_rows=load_table(table), table_name="rows.jsonl")
    assert variants[0].overrides == {"1.width": 16, "5.enabled": True}
    assert variants[1].overrides == {"1.width": 20, "4.filename_prefix": "7"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"1.width": 2.5}\n')
    with pytest.raises(InputError, match=r"bad.jsonl row 1, column 1.width: 2.5 is not an integer"):
        expand_variants(make_workflow(), table_rows=load_table(bad), table_name="bad.jsonl")


def test_table_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_table(tmp_path / "missing.csv")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(InputError, match="unknown type"):
        load_table(tmp_path / "t.txt")
    (tmp_path / "e.csv").write_text("1.width\n")
    with pytest.raises(InputError, match="no rows"):
        load_table(tmp_path / "e.csv")
    (tmp_path / "x.csv").write_text("1.width\n1,2\n")
    with pytest.raises(InputError, match="more cells than the header"):
        load_table(tmp_path / "x.csv")
    (tmp_path / "l.jsonl").write_text('[1, 2]\n')
    with pytest.raises(InputError, match="line 1 is not an object"):
        load_table(tmp_path / "l.jsonl")


def test_hostile_tables_and_sweeps_are_one_line(tmp_path):
    deep = "[" * 50_000 + "]" * 50_000
    (tmp_path / "d.json").write_text(deep)
    with pytest.raises(InputError, match="nested deeper"):
        load_table(tmp_path / "d.json")
    (tmp_path / "d.jsonl").write_text('{"a": ' * 50_000 + "1" + "}" * 50_000 + "\n")
    with pytest.raises(InputError, match="line 1: JSON nested deeper"):
        load_table(tmp_path / "d.jsonl")
