"""The shipped workflows (workflows/*.json, workflows/api/*.api.json, thumbnails), checked without ComfyUI.

Every node type exists, links connect matching types, widget values fit the inputs, the canvas and
API files describe the same graph, and the files are what workflows/build_workflows.py produces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes import NODE_CLASS_MAPPINGS
from workflows import build_workflows as bw

WF_DIR = Path(bw.__file__).resolve().parent
NAMES = bw.WORKFLOW_NAMES


def load(name: str) -> tuple[dict, dict]:
    canvas = json.loads(bw.canvas_path(name).read_text(encoding="utf-8"))
    api = json.loads(bw.api_path(name).read_text(encoding="utf-8"))
    return canvas, api


def definition(class_type: str) -> tuple[list[tuple[str, str, dict, bool]], list[str]]:
    """(inputs as (name, type or "COMBO", options, required), output types) from the node definition
    itself: ``INPUT_TYPES()`` for our nodes, the builder's table for ComfyUI's (that table is checked
    against the real ComfyUI in test_comfy_pack.py)."""
    if class_type in NODE_CLASS_MAPPINGS:
        cls = NODE_CLASS_MAPPINGS[class_type]
        spec = cls.INPUT_TYPES()
        inputs = []
        for section in ("required", "optional"):
            for name, entry in spec.get(section, {}).items():
                kind = "COMBO" if isinstance(entry[0], list) else entry[0]
                opts = dict(entry[1]) if len(entry) > 1 else {}
                if kind == "COMBO":
                    opts["choices"] = entry[0]
                inputs.append((name, kind, opts, section == "required"))
        return inputs, list(cls.RETURN_TYPES)
    b = bw.BUILTIN_NODES[class_type]
    return [(n, t, {}, True) for n, t, _ in b["inputs"]], [t for _, t in b["outputs"]]


def is_widget(kind: str, opts: dict) -> bool:
    return (kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")) and not opts.get("forceInput")


def canvas_widget_map(node: dict) -> dict[str, object]:
    """Canvas ``widgets_values`` -> {input name: value}, following ComfyUI's front-end layout rules
    (a seed's control value follows it; LoadImage's upload button follows the file list)."""
    values = list(node["widgets_values"])
    out = {}
    inputs, _ = definition(node["type"])
    for name, kind, opts, _ in inputs:
        if not is_widget(kind, opts):
            continue
        out[name] = values.pop(0)
        if kind == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed")):
            assert values.pop(0) == "fixed", f"{node['type']}.{name}: shared workflows must not randomise seeds"
        if node["type"] == "LoadImage" and name == "image":
            assert values.pop(0) == "image"
    if node["type"] == "PreviewAny":
        assert values == [None, None, None]
        values = []
    assert values == [], f"{node['type']} #{node['id']}: {len(values)} widget values left over"
    return out


def real_nodes(canvas: dict) -> list[dict]:
    return [n for n in canvas["nodes"] if n["type"] not in bw.VIRTUAL_NODES]


def test_files_are_up_to_date():
    built = bw.build_all()
    on_disk = [p.relative_to(WF_DIR).as_posix() for p in [*WF_DIR.glob("*.json"), *WF_DIR.glob("api/*.json")]]
    assert sorted(built) == sorted(on_disk)
    for fname, text in built.items():
        assert (WF_DIR / fname).read_text(encoding="utf-8") == text, f"{fname} is stale; run workflows/build_workflows.py"
    assert bw.main(["--check"]) == 0


def test_templates_folder_holds_exactly_the_canvas_files_and_their_thumbnails():
    """ComfyUI's Templates browser lists every workflows/*.json and shows workflows/NAME.jpg as its
    thumbnail (checked against the real server in test_frontend.py): API-format files there
    would open as broken tabs."""
    from PIL import Image

    listed = sorted(p.name for p in WF_DIR.iterdir() if p.is_file() and p.suffix in (".json", ".jpg", ".jpeg", ".png"))
    assert listed == sorted([f"{n}.json" for n in NAMES] + [f"{n}.jpg" for n in NAMES])
    for name in NAMES:
        assert "version" in json.loads(bw.canvas_path(name).read_text(encoding="utf-8")), "not a canvas workflow"
        assert bw.api_path(name).parent == WF_DIR / "api" and bw.api_path(name).is_file()
        with Image.open(bw.thumbnail_path(name)) as im:
            assert im.format == "JPEG" and 200 <= im.width <= 480 and 100 <= im.height <= 320
        assert bw.thumbnail_path(name).stat().st_size < 80_000, "thumbnails stay small"


def test_check_reports_a_stale_thumbnail_and_a_missing_picture(tmp_path, monkeypatch, capsys):
    from PIL import Image

    name = NAMES[0]
    monkeypatch.setattr(bw, "HERE", tmp_path)
    monkeypatch.setattr(bw, "API_DIR", tmp_path / "api")
    monkeypatch.setattr(bw, "WORKFLOW_NAMES", (name,))
    assert bw.main([]) == 0
    assert bw.main(["--check"]) == 0
    Image.new("RGB", Image.open(bw.thumbnail_path(name)).size, "black").save(bw.thumbnail_path(name))
    (tmp_path / f"{name}.api.json").write_text("{}")  # an API file back where Templates would list it
    assert bw.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert f"{name}.jpg" in err and "does not show" in err and f"{name}.api.json" in err
    monkeypatch.setattr(bw, "PICTURES_DIR", tmp_path / "no_pictures")
    (tmp_path / f"{name}.api.json").unlink()
    assert bw.main([]) == 1
    err = capsys.readouterr().err
    assert f"no thumbnail for workflow {name!r}" in err and "render_examples.py" in err
    assert bw.canvas_path(name).is_file() and bw.api_path(name).is_file(), "the JSON files are still written"


@pytest.mark.parametrize("name", NAMES)
def test_canvas_file_structure(name):
    canvas, _ = load(name)
    assert canvas["version"] == 0.4 and isinstance(canvas["links"], list)
    ids = [n["id"] for n in canvas["nodes"]]
    assert len(ids) == len(set(ids)) and canvas["last_node_id"] == max(ids)
    assert canvas["last_link_id"] == len(canvas["links"]) == len({link[0] for link in canvas["links"]})
    assert sum(n["type"] == "MarkdownNote" for n in canvas["nodes"]) == 1, "each workflow explains itself in a note"
    for n in canvas["nodes"]:
        assert {"id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties",
                "widgets_values"} <= set(n)
        assert len(n["pos"]) == 2 and len(n["size"]) == 2 and n["mode"] == 0
    by_id = {n["id"]: n for n in canvas["nodes"]}
    for link_id, src, slot, dst, dst_slot, typ in canvas["links"]:
        assert link_id in by_id[src]["outputs"][slot]["links"]
        assert by_id[dst]["inputs"][dst_slot]["link"] == link_id
    linked_inputs = [i["link"] for n in canvas["nodes"] for i in n["inputs"] if i["link"] is not None]
    assert sorted(linked_inputs) == sorted(link[0] for link in canvas["links"])


@pytest.mark.parametrize("name", NAMES)
def test_links_connect_matching_types(name):
    canvas, _ = load(name)
    by_id = {n["id"]: n for n in canvas["nodes"]}
    for _, src, slot, dst, dst_slot, typ in canvas["links"]:
        _, outputs = definition(by_id[src]["type"])
        assert outputs[slot] == typ == by_id[src]["outputs"][slot]["type"]
        target = by_id[dst]["inputs"][dst_slot]
        inputs, _ = definition(by_id[dst]["type"])
        declared = {n: k for n, k, _, _ in inputs}[target["name"]]
        assert declared in (typ, "*"), f"{name}: {typ} linked into {by_id[dst]['type']}.{target['name']} ({declared})"
        assert target["type"] == declared


@pytest.mark.parametrize("name", NAMES)
def test_canvas_and_api_describe_the_same_graph(name):
    canvas, api = load(name)
    nodes = real_nodes(canvas)
    assert sorted(api, key=int) == sorted((str(n["id"]) for n in nodes), key=int)  # ids 10+ sort as numbers
    link_by_id = {link[0]: link for link in canvas["links"]}
    for n in nodes:
        entry = api[str(n["id"])]
        assert entry["class_type"] == n["type"]
        assert entry["_meta"]["title"] == n.get("title", entry["_meta"]["title"])
        expected = dict(canvas_widget_map(n))
        for inp in n["inputs"]:
            if inp["link"] is not None:
                _, src, slot, _, _, _ = link_by_id[inp["link"]]
                expected[inp["name"]] = [str(src), slot]
        assert entry["inputs"] == expected, f"{name} #{n['id']} {n['type']}"


@pytest.mark.parametrize("name", NAMES)
def test_api_inputs_are_complete_and_in_range(name):
    _, api = load(name)
    def is_output(class_type: str) -> bool:
        if class_type in NODE_CLASS_MAPPINGS:
            return bool(getattr(NODE_CLASS_MAPPINGS[class_type], "OUTPUT_NODE", False))
        return class_type in ("SaveImage", "SaveAnimatedWEBP", "PreviewAny", "PreviewImage")

    assert any(is_output(e["class_type"]) for e in api.values()), "ComfyUI refuses a prompt without an output node"
    for node_id, entry in api.items():
        inputs, _ = definition(entry["class_type"])
        known = {n: (k, o, r) for n, k, o, r in inputs}
        assert set(entry["inputs"]) <= set(known), f"{name} #{node_id}: unknown inputs"
        for inp, (kind, opts, required) in known.items():
            if required:
                assert inp in entry["inputs"], f"{name} #{node_id} {entry['class_type']} lacks {inp}"
            if inp not in entry["inputs"]:
                continue
            value = entry["inputs"][inp]
            if isinstance(value, list) and kind not in ("COMBO",):
                assert value[0] in api and isinstance(value[1], int)
                continue
            if kind in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and not isinstance(value, bool)
                if "min" in opts:
                    assert opts["min"] <= value <= opts["max"], f"{name} #{node_id}.{inp} = {value}"
            elif kind == "BOOLEAN":
                assert isinstance(value, bool)
            elif kind == "STRING":
                assert isinstance(value, str)
            elif kind == "COMBO" and "choices" in opts and "default" in opts:
                assert value in opts["choices"], f"{name} #{node_id}.{inp} = {value!r}"


def test_workflows_use_the_documented_model_names():
    names = set()
    for name in NAMES:
        _, api = load(name)
        for entry in api.values():
            if entry["class_type"] == "NadaLoadGenerator":
                names.add(entry["inputs"]["generator_name"])
            if entry["class_type"] == "NadaLoadCLIP":
                assert entry["inputs"]["clip_name"] == bw.CLIP_FOLDER and entry["inputs"]["model_name"] == "ViT-B-32"
                assert entry["inputs"]["clip_name_2"] == "none"
    assert names == {bw.FFHQ, bw.ADAPTED}
    _, api = load("text_to_domain")
    save = next(e for e in api.values() if e["class_type"] == "NadaSaveGenerator")
    assert "nada/" + save["inputs"]["file_name"] + ".safetensors" == bw.ADAPTED, \
        "text_to_domain saves the file the other workflows load"


def test_builder_refuses_inconsistent_descriptions():
    wf = bw.Workflow("broken", "t", "n", [bw.Node(1, "NadaLoadGenerator", (0, 0), {"generator_name": "x", "nope": 1})])
    with pytest.raises(ValueError, match="no widget named"):
        bw.build_canvas(wf)
    wf = bw.Workflow("broken", "t", "n", [bw.Node(1, "NadaLoadGenerator", (0, 0), {})])
    with pytest.raises(ValueError, match="set 'generator_name' explicitly"):
        bw.build_api(wf)
    wf = bw.Workflow("broken", "t", "n", [
        bw.Node(1, "NadaLoadGenerator", (0, 0), {"generator_name": "x"}),
        bw.Node(2, "NadaRender", (0, 0), {}, {"generator": (1, 0), "latents": (1, 0)})])
    with pytest.raises(ValueError, match="no link input 'latents'"):
        bw.build_canvas(wf)


@pytest.mark.parametrize("name", NAMES)
def test_each_workflow_has_a_picture(name):
    """docs/workflows/NAME.png shows the outputs (made by workflows/render_examples.py)."""
    from PIL import Image

    path = WF_DIR.parent / "docs" / "workflows" / f"{name}.png"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 300


@pytest.mark.parametrize("name", NAMES)
def test_canvas_layout_leaves_each_node_its_room(name):
    """From the sizes in the file: no two nodes overlap and all are visible in a 1600x1000 window
    with the minimap open at the saved zoom (measured in the real app in test_frontend.py)."""
    wf = bw.WORKFLOWS[name]
    assert bw.canvas_layout_problems(wf) == []
    canvas, _ = load(name)
    assert canvas["extra"]["ds"] == bw.canvas_view(wf) and canvas["extra"]["ds"]["scale"] >= 0.7


def test_fit_view_picks_the_largest_zoom_that_shows_everything():
    from workflows import canvas_layout as cl

    assert cl.fit_view([(0, 0, 100, 100)]) == {"scale": 1.0, "offset": [75.0, 135.0]}
    # 1300 x 700 at zoom 1 would reach under the minimap (x > 1330 and y > 730); at 0.95 it ends at x = 1310
    view = cl.fit_view([(0, 0, 1300, 700)])
    assert view["scale"] == 0.95
    x, y, w, h = cl.on_screen((0, 0, 1300, 700), view)
    assert (round(x), round(y), round(x + w), round(y + h)) == (75, 135, 1310, 800)
    assert cl.fit_view([(0, -50, 100, 100), (200, 0, 50, 50)])["offset"] == [75.0, 185.0]
    assert cl.fit_view([(0, 0, 5000, 100)])["scale"] == 0.5  # nothing fits: the smallest zoom
    assert cl.layout_problems({"a": (0, 0, 100, 100), "b": (105, 0, 10, 10)}, {"scale": 1, "offset": [75, 135]}) \
        == ["a overlaps b"]
    assert cl.screen_problem((1300, 700, 100, 100)) == "under the minimap"
    assert cl.screen_problem((10, 200, 100, 100)).startswith("outside the visible area")
