"""The pack inside the real ComfyUI (v0.8): loading, model folders, every shipped workflow validated
and executed by ComfyUI's own executor, Cancel, the output cache, and how errors reach the user.

ComfyUI runs in one worker process for the module (see tests/comfy_harness.py), on the CPU, with a
temporary base directory holding tiny models under the names the workflows use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.comfy_harness import (PACK_DIR_NAME, PACK_PATH_MARK, REPO, ComfyWorker, comfy_root, load_api_workflow,
                                 make_model_tree, prepare_base, tiny_overrides, unavailable_reason)
from workflows.build_workflows import BUILTIN_NODES, FFHQ, WORKFLOW_NAMES

REASON = unavailable_reason()
pytestmark = [pytest.mark.comfyui, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    user_stylegan = base / "nas" / "stylegan"
    prepare_base(base, user_stylegan=user_stylegan)
    make_model_tree(base)
    worker = ComfyWorker(base)
    worker.user_stylegan = user_stylegan
    yield worker
    worker.close()


def run(comfy, prompt, **kw) -> dict:
    return comfy.call("execute", prompt=prompt, prompt_id=str(uuid.uuid4()), timeout=300, **kw)


def message(result, event):
    return next((data for e, data in result["messages"] if e == event), None)


def assert_success(result):
    assert result["valid"], json.dumps(result.get("node_errors") or result.get("error"), indent=1)[:3000]
    err = message(result, "execution_error")
    assert err is None, f"{err['node_type']}: {err['exception_message']}\n{''.join(err['traceback'])}"
    assert result["success"] and message(result, "execution_success") is not None


# ------------------------------------------------------------------------------------------ loading


def test_pack_loads_without_import_failure(comfy):
    boot = comfy.boot
    ours = [p for p in boot["import_problems"] if PACK_PATH_MARK in p]
    assert ours == [], ours
    assert any(d.endswith(PACK_DIR_NAME) or Path(d) == REPO for d in boot["loaded_module_dirs"].values())
    from nodes import NODE_CLASS_MAPPINGS

    assert set(boot["nada_nodes"]) == set(NODE_CLASS_MAPPINGS)


def test_model_folders_are_registered_and_merged_with_extra_model_paths(comfy):
    folders = comfy.call("folders", names=["stylegan", "open_clip"])
    stylegan = folders["stylegan"]
    assert stylegan["paths"][0] == str(comfy.user_stylegan), "the folder from extra_model_paths.yaml stays first"
    assert stylegan["paths"][1] == str(comfy.base / "models" / "stylegan")
    assert {".pt", ".pkl", ".safetensors"} <= set(stylegan["extensions"])
    assert {".pth", ".bin", ".safetensors"} <= set(folders["open_clip"]["extensions"])


def test_save_generator_writes_where_its_tooltip_and_the_readme_say(comfy):
    """With a stylegan: folder in extra_model_paths.yaml, that folder comes first and Save Generator
    writes into its nada/; the tooltip names that folder and the README states the rule."""
    from tests.comfy_harness import TINY_FFHQ

    info = comfy.call("input_types", classes=["NadaSaveGenerator"])["NadaSaveGenerator"]
    tip = info["input_types"]["required"]["file_name"][1]["tooltip"]
    assert f"(here: {comfy.user_stylegan / 'nada'})" in tip
    prompt = {"1": {"class_type": "NadaLoadGenerator", "inputs": {"generator_name": TINY_FFHQ, "weights": "EMA"}},
              "2": {"class_type": "NadaSaveGenerator",
                    "inputs": {"generator": ["1", 0], "file_name": "where_test", "overwrite": True}}}
    result = run(comfy, prompt)
    assert_success(result)
    assert result["history"]["outputs"]["2"]["text"] == ["nada/where_test.safetensors"]
    assert (comfy.user_stylegan / "nada" / "where_test.safetensors").is_file()
    assert not (comfy.base / "models" / "stylegan" / "nada" / "where_test.safetensors").exists()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "that folder's `nada/`" in readme and "extra_model_paths.yaml" in readme


def test_loader_dropdowns_list_models_from_every_folder(comfy):
    (comfy.user_stylegan / "on_nas.pkl").write_bytes(b"not loaded, only listed")
    info = comfy.call("input_types", classes=["NadaLoadGenerator", "NadaLoadCLIP"])
    names = info["NadaLoadGenerator"]["input_types"]["required"]["generator_name"][0]
    assert {"on_nas.pkl", "tiny_ffhq.safetensors", "nada/ffhq_sketch.safetensors"} <= set(names)
    clips = info["NadaLoadCLIP"]["input_types"]["required"]["clip_name"][0]
    assert "vit_base_patch32_clip_224.openai" in clips  # a Hugging Face folder, listed as one entry
    assert info["NadaLoadGenerator"]["display"] == "NADA Load Generator"


def test_builtin_node_table_matches_comfyui(comfy):
    """The workflow builder's description of ComfyUI's own nodes must be what ComfyUI defines."""
    info = comfy.call("input_types", classes=sorted(BUILTIN_NODES))
    for name, spec in BUILTIN_NODES.items():
        real = info[name]["input_types"]
        real_inputs = {**real.get("required", {}), **real.get("optional", {})}
        assert [n for n, _, _ in spec["inputs"]] == list(real_inputs), name
        for n, typ, default in spec["inputs"]:
            kind = real_inputs[n][0]
            if typ == "COMBO":
                assert isinstance(kind, list) or kind == "COMBO", (name, n)
            else:
                assert kind == typ, (name, n, kind)
            opts = real_inputs[n][1] if len(real_inputs[n]) > 1 else {}
            if default is not None and typ != "COMBO":
                assert opts.get("default") == default, (name, n)
        assert [t for _, t in spec["outputs"]] == info[name]["return_types"], name


# ---------------------------------------------------------------------------------------- workflows


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_shipped_workflow_validates_and_runs(comfy, name):
    result = run(comfy, load_api_workflow(name, tiny_overrides(name)))
    assert_success(result)
    outputs = result["history"]["outputs"]
    out_dir = comfy.base / "output"
    for node_id, ui in outputs.items():
        for img in ui.get("images", []):
            folder = out_dir if img["type"] == "output" else comfy.base / "temp"
            assert (folder / img["subfolder"] / img["filename"]).is_file()
    api = load_api_workflow(name)
    saving = [i for i, n in api.items() if n["class_type"] in ("SaveImage", "SaveAnimatedWEBP")]
    assert saving and all(i in outputs for i in saving), f"outputs: {sorted(outputs)}"
    if name in ("text_to_domain", "images_to_domain", "several_domains"):
        train_id = next(i for i, n in api.items() if n["class_type"] == "NadaTrain")
        steps = [p for p in result["progress"] if p["node"] == train_id]
        assert [p["value"] for p in steps] == [1, 2, 3]
        previews = [p["preview"] for p in steps if p["preview"]]
        assert previews and previews[0]["format"] == "JPEG" and previews[0]["mode"] == "RGB"
        text_id = next(i for i, n in api.items() if n["class_type"] == "PreviewAny")
        assert "directional similarity" in outputs[text_id]["text"][0]
    if name in ("text_to_domain", "images_to_domain"):
        save_id = next(i for i, n in api.items() if n["class_type"] == "NadaSaveGenerator")
        saved = outputs[save_id]["text"][0]
        assert (comfy.user_stylegan / saved).is_file() or (comfy.base / "models" / "stylegan" / saved).is_file()
    if name == "several_domains":  # one file per target line, then the second one picked and rendered
        save_id = next(i for i, n in api.items() if n["class_type"] == "NadaSaveDomain")
        saved = outputs[save_id]["text"][0].splitlines()
        assert [s.split(".")[0].split("_0")[0] for s in saved] == ["ffhq_pencil_sketch", "ffhq_oil_painting",
                                                                  "ffhq_watercolor_painting"]
        folders = [comfy.base / "models" / "stylegan" / "domains", comfy.user_stylegan / "domains"]
        assert all(any((f / s).is_file() for f in folders) for s in saved), saved
    if name == "domain_morph":
        from PIL import Image

        webp = outputs["5"]["images"][0]
        with Image.open(out_dir / webp["subfolder"] / webp["filename"]) as im:
            assert im.n_frames == 4 and im.size == (66, 66)
    if name == "invert_and_translate":
        assert list((out_dir / "nada").glob("portrait_*.safetensors"))
    if name == "encode_and_translate":
        from nada_core.editing.latents import load_latents

        saved = sorted((out_dir / "nada").glob("encoded_portrait_*.safetensors"))
        assert saved and load_latents(saved[-1]).provenance["encoder_type"] == "Encoder4Editing"


def test_saved_images_do_not_reveal_where_comfyui_lives(comfy):
    """ComfyUI embeds the prompt, with every node's IS_CHANGED value, in each PNG it saves; the
    loaders' change markers must not carry the model folders' absolute paths (a home folder)."""
    import os

    from PIL import Image

    overrides = tiny_overrides("images_to_domain")
    overrides["5"]["seed"] = 4242  # not cached from another test: every loader fingerprints its files
    result = run(comfy, load_api_workflow("images_to_domain", overrides))
    assert_success(result)
    saved = result["history"]["outputs"]["7"]["images"][0]
    with Image.open(comfy.base / "output" / saved["subfolder"] / saved["filename"]) as im:
        text = im.text["prompt"]
    embedded = json.loads(text)
    for loader in ("1", "2", "3"):  # generator, CLIP folder, example images
        marker = embedded[loader]["is_changed"]
        assert isinstance(marker, list) and marker[0].startswith("sha256:"), (loader, marker)
    home = os.path.expanduser("~")
    for private in (str(comfy.base), str(comfy.user_stylegan), str(comfy_root()), home + os.sep):
        assert private not in text, f"{private} in the saved image's metadata"
    assert "models/stylegan" not in text and "models/open_clip" not in text


def test_workflow_naming_a_missing_model_explains_where_to_put_it(comfy):
    result = comfy.call("validate", prompt=load_api_workflow("sample_saved_domain",
                                                             {"1": {"generator_name": FFHQ}}), prompt_id="x")
    assert not result["valid"]
    details = " ".join(e["details"] for e in result["node_errors"]["1"]["errors"])
    assert f"stylegan file '{FFHQ}' not found; put it in {comfy.user_stylegan}" in details
    assert str(comfy.base / "models" / "stylegan") in details


def test_node_errors_reach_the_user_as_one_clear_message(comfy):
    prompt = load_api_workflow("text_to_domain", tiny_overrides("text_to_domain"))
    prompt["3"]["inputs"]["target_text"] = "Photo"  # same as the source text
    result = run(comfy, prompt)
    err = message(result, "execution_error")
    assert err is not None and err["node_type"] == "NadaTextDirection"
    first_line = err["exception_message"].strip().splitlines()[0]
    assert first_line.startswith("NADA Text Direction: source and target prompts are the same")
    assert err["exception_type"].endswith("NadaNodeError")
    # ComfyUI shows "<module>.<class>": no folder path glued to it (it loads the pack under its path)
    assert err["exception_type"] == "ComfyUI-NADA.NadaNodeError", err["exception_type"]
    # ComfyUI itself formats the message as "{error}\n{tips}": our part is exactly one line
    assert err["exception_message"] == first_line + "\n"


def test_validation_messages_land_on_their_own_inputs(comfy):
    """ComfyUI attaches a VALIDATE_INPUTS message to every input that function takes: each of ours
    takes only the input it checks, so a problem is shown on that input alone."""
    from workflows.build_workflows import CLIP_FOLDER

    def errors_of(changes):
        prompt = load_api_workflow("text_to_domain", {**tiny_overrides("text_to_domain"), **changes})
        result = comfy.call("validate", prompt=prompt, prompt_id="v")
        return {node: sorted(e["extra_info"]["input_name"] for e in entry["errors"])
                for node, entry in result["node_errors"].items()}, result

    found, result = errors_of({"2": {"clip_name": "missing_clip", "clip_name_2": "none"}})
    assert found == {"2": ["clip_name"]}, found
    details = result["node_errors"]["2"]["errors"][0]["details"]
    assert details.startswith("clip_name - NADA Load CLIP: open_clip file 'missing_clip' not found; put it in ")
    found, _ = errors_of({"2": {"clip_name": CLIP_FOLDER, "clip_name_2": "missing_second"}})
    assert found == {"2": ["clip_name_2"]}, found  # ComfyUI's own list check, on the second input
    found, result = errors_of({"4": {"layers": "most", "preview_seeds": "0-3"}})
    assert found == {"4": ["layers"]}, found
    assert "NADA Train: layers must be" in result["node_errors"]["4"]["errors"][0]["details"]
    found, _ = errors_of({"4": {"layers": "all", "preview_seeds": "a-b"}})
    assert found == {}, "a bad preview_seeds is reported when the node starts, never on layers"


def test_run_time_problems_of_one_input_are_one_clean_line(comfy):
    from workflows.build_workflows import CLIP_FOLDER

    overrides = tiny_overrides("text_to_domain")
    overrides["4"].update(preview_seeds="a-b")
    err = message(run(comfy, load_api_workflow("text_to_domain", overrides)), "execution_error")
    assert err is not None and err["node_type"] == "NadaTrain"
    assert err["exception_message"].startswith("NADA Train: cannot read seed")
    overrides = {**tiny_overrides("text_to_domain"), "2": {"clip_name_2": CLIP_FOLDER}}
    err = message(run(comfy, load_api_workflow("text_to_domain", overrides)), "execution_error")
    assert err is not None and err["node_type"] == "NadaLoadCLIP"
    assert err["exception_message"].startswith(f"NADA Load CLIP: clip_name_2 is the same model as clip_name "
                                               f"({CLIP_FOLDER}); pick a different second model")


# ------------------------------------------------------------------------------------ cancel, cache


def test_cancel_stops_training_promptly(comfy):
    overrides = tiny_overrides("text_to_domain")
    overrides["4"].update(steps=400, preview_every=0, seed=123)
    result = run(comfy, load_api_workflow("text_to_domain", overrides), interrupt_at={"node": "4", "value": 2})
    interrupted = message(result, "execution_interrupted")
    assert interrupted is not None and interrupted["node_type"] == "NadaTrain", result["messages"]
    assert message(result, "execution_success") is None and message(result, "execution_error") is None
    steps = [p["value"] for p in result["progress"] if p["node"] == "4"]
    assert max(steps) == 2, f"no step may run after Cancel, got progress {steps}"
    assert result["interrupt_to_end"] < 5.0
    assert "5" not in result["executing"], "nodes after the cancelled one must not run"


def test_cancel_keeps_what_was_trained_as_a_snapshot(comfy):
    """With snapshot_every on, Cancel still ends the node promptly and leaves the weights trained so
    far in <first stylegan folder>/nada/snapshots/ (here the extra_model_paths.yaml folder), listed
    by NADA Load Generator and carrying the run's settings."""
    from nada_core.formats.checkpoints import read_metadata

    overrides = tiny_overrides("text_to_domain")
    overrides["4"].update(steps=400, preview_every=0, seed=321, snapshot_every=100)
    result = run(comfy, load_api_workflow("text_to_domain", overrides), interrupt_at={"node": "4", "value": 2})
    assert message(result, "execution_interrupted") is not None, result["messages"]
    assert result["interrupt_to_end"] < 5.0
    runs = sorted((comfy.user_stylegan / "nada" / "snapshots").glob("pencil_sketch_*"))
    assert runs, "no snapshot folder in the first stylegan folder"
    kept = runs[-1] / "step_000002.safetensors"
    assert kept.is_file(), sorted(p.name for p in runs[-1].iterdir())
    meta = read_metadata(kept)["provenance"]
    assert meta["nada"]["settings"]["seed"] == 321 and meta["nada"]["steps_done"] == 2
    assert meta["snapshot"] == {"step": 2, "of": 400}
    info = comfy.call("input_types", classes=["NadaLoadGenerator", "NadaTrain", "NadaSaveGenerator"])
    names = info["NadaLoadGenerator"]["input_types"]["required"]["generator_name"][0]
    assert f"nada/snapshots/{runs[-1].name}/step_000002.safetensors" in names
    tip = info["NadaTrain"]["input_types"]["optional"]["snapshot_every"][1]["tooltip"]
    assert str(comfy.user_stylegan / "nada") in tip


def test_same_graph_twice_is_served_from_the_cache(comfy):
    overrides = tiny_overrides("text_to_domain")
    overrides["4"]["seed"] = 77  # a graph not run by other tests
    prompt = load_api_workflow("text_to_domain", overrides)
    first = run(comfy, prompt)
    assert_success(first)
    assert "4" in first["executing"]
    second = run(comfy, prompt)
    assert_success(second)
    assert "4" not in second["executing"], "NadaTrain must not retrain an unchanged graph"
    assert "4" in message(second, "execution_cached")["nodes"]
    assert [p for p in second["progress"] if p["node"] == "4"] == []
    prompt["4"]["inputs"]["seed"] = 78  # a real change retrains
    third = run(comfy, prompt)
    assert_success(third)
    assert "4" in third["executing"] and "1" not in third["executing"]


def test_comfyui_startup_reports_no_import_failure_for_the_pack(tmp_path):
    """ComfyUI's own start-up path (main.py --quick-test-for-ci exits 0 even when a pack fails, so read its log)."""
    prepare_base(tmp_path)
    proc = subprocess.run([sys.executable, "main.py", "--quick-test-for-ci", "--cpu", "--base-directory", str(tmp_path),
                           "--disable-auto-launch", "--disable-api-nodes", "--database-url", "sqlite:///:memory:"],
                          cwd=comfy_root(), capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    lines = [ln for ln in log.splitlines() if PACK_PATH_MARK in ln]
    assert any("seconds" in ln for ln in lines), "the pack should appear in ComfyUI's import times:\n" + log[-3000:]
    assert not any("IMPORT FAILED" in ln or "Cannot import" in ln for ln in lines), "\n".join(lines)
    assert (tmp_path / "models" / "stylegan").is_dir() and (tmp_path / "models" / "open_clip").is_dir()


# ------------------------------------------------------------------------------------ hostile files


def test_hostile_generator_files_fail_their_node_and_the_server_survives(comfy):
    """Files that crashed or flooded the process before: each ends its node with one line, and the
    same ComfyUI process then runs a normal workflow."""
    from tests.test_hostile_loaders import EXTENT_CASES, _deflate_bomb, _numpy_file, _pt_with_tensor, _small_safetensors

    folder = comfy.base / "models" / "stylegan"
    hostile = [
        _numpy_file("object_array", "pkl")(folder),
        _numpy_file("dtype_setstate", "pt")(folder),
        _pt_with_tensor(folder / "extent_too_long.pt", *EXTENT_CASES["too_long"]),
        _small_safetensors(folder, {"channels": {"4": 8192, "8": 8192}}, "huge_channels"),
        _deflate_bomb(folder),
    ]
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(hostile[3].read_bytes()[:100])
    hostile.append(truncated)
    for path in hostile:
        prompt = load_api_workflow("sample_saved_domain", {"1": {"generator_name": path.name}})
        result = run(comfy, prompt)
        assert result["valid"], (path.name, result.get("node_errors"))
        err = message(result, "execution_error")
        assert err is not None and err["node_type"] == "NadaLoadGenerator", (path.name, result["messages"])
        text = err["exception_message"].strip()
        assert "\n" not in text and path.name in text, text
        assert err["exception_type"].endswith("NadaNodeError"), err["exception_type"]
    assert_success(run(comfy, load_api_workflow("sample_saved_domain", tiny_overrides("sample_saved_domain"))))
