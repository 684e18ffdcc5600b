"""Reading API workflows from JSON and ComfyUI PNGs; recognising the canvas (UI) format."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from nada_core.errors import InputError
from nada_queue.workflow_io import is_link, load_workflow, parse_workflow, workflow_sha256

API = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255},
          "_meta": {"title": "Canvas"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}
UI = {"last_node_id": 2, "last_link_id": 1, "version": 0.4,
      "nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [8, 8, 1, 255]}], "links": [[1, 1, 0, 2, 0, "IMAGE"]]}


def save_png(path, chunks: dict[str, str], itxt: bool = False):
    info = PngInfo()
    for key, text in chunks.items():
        if itxt:
            info.add_itxt(key, text, zip=True)
        else:
            info.add_text(key, text)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, format="PNG", pnginfo=info)


def test_api_json_loads(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps(API))
    assert load_workflow(p) == API


def test_request_body_wrapper_is_unwrapped(tmp_path):
    p = tmp_path / "body.json"
    p.write_text(json.dumps({"prompt": API, "client_id": "abc"}))
    assert load_workflow(p) == API


@pytest.mark.parametrize("itxt", [False, True])
def test_png_prompt_chunk_is_read(tmp_path, itxt):
    p = tmp_path / "ComfyUI_00001_.png"
    save_png(p, {"prompt": json.dumps(API), "workflow": json.dumps(UI)}, itxt=itxt)
    assert load_workflow(p) == API


def test_png_detected_by_content_not_extension(tmp_path):
    p = tmp_path / "render.json"  # misnamed
    save_png(p, {"prompt": json.dumps(API)})
    assert load_workflow(p) == API


def test_png_with_only_ui_workflow_or_nothing(tmp_path):
    only_ui = tmp_path / "ui.png"
    save_png(only_ui, {"workflow": json.dumps(UI)})
    with pytest.raises(InputError, match=r"only a canvas \(UI\) workflow.*Export \(API\)"):
        load_workflow(only_ui)
    bare = tmp_path / "bare.png"
    save_png(bare, {})
    with pytest.raises(InputError, match="no embedded ComfyUI prompt"):
        load_workflow(bare)
    broken = tmp_path / "broken.png"
    save_png(broken, {"prompt": "{not json"})
    with pytest.raises(InputError, match="not valid JSON"):
        load_workflow(broken)


def test_ui_format_json_gets_export_hint(tmp_path):
    p = tmp_path / "canvas.json"
    p.write_text(json.dumps(UI))
    with pytest.raises(InputError) as err:
        load_workflow(p)
    assert "canvas (UI) workflow" in str(err.value) and "Workflow -> Export (API)" in str(err.value)


def test_malformed_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_workflow(tmp_path / "missing.json")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="neither JSON nor a PNG"):
        load_workflow(text)
    with pytest.raises(InputError, match="node '2' has no class_type"):
        parse_workflow({"1": API["1"], "2": {"inputs": {}}})
    with pytest.raises(InputError, match="not an API-format workflow"):
        parse_workflow([1, 2, 3])
    with pytest.raises(InputError, match="inputs that are not an object"):
        parse_workflow({"1": {"class_type": "X", "inputs": [1]}})


def test_links_and_fingerprint():
    assert is_link(["1", 0]) and is_link([4, 1])
    assert not is_link(["a", "b"]) and not is_link([1.0, 0]) and not is_link(["1", True]) and not is_link("1")
    reordered = json.loads(json.dumps({"2": API["2"], "1": API["1"]}))
    assert workflow_sha256(API) == workflow_sha256(reordered)
    changed = json.loads(json.dumps(API))
    changed["1"]["inputs"]["width"] = 9
    assert workflow_sha256(changed) != workflow_sha256(API)


@pytest.mark.parametrize("text, words", [("[" * 100_000 + "]" * 100_000, "nested deeper"),
                                         ('{"1": ' + "9" * 5000 + "}", "unreadable JSON"),
                                         (b"\xff\xfe{}", "not UTF-8")])
def test_hostile_workflow_json_is_one_line(tmp_path, text, words):
    """json.loads raised RecursionError / ValueError / UnicodeDecodeError tracebacks for these."""
    p = tmp_path / "w.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(InputError, match=words) as err:
        load_workflow(p)
    assert "\n" not in str(err.value)
    png = tmp_path / "w.png"
    if isinstance(text, str):
        save_png(png, {"prompt": text})
        with pytest.raises(InputError, match=words):
            load_workflow(png)
