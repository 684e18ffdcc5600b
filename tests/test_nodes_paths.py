"""Model folders: registration with ComfyUI's folder registry (merged, never replacing), listing, lookups."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from nodes import comfy_bridge, paths
from nodes.generator_nodes import NadaLoadGenerator
from nodes.clip_nodes import NadaLoadCLIP


def fake_folder_paths(base: Path) -> types.ModuleType:
    """A stand-in with the parts of ComfyUI's ``folder_paths`` the pack uses (the real one is
    exercised in test_comfy_pack.py)."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(base / "models")
    fp.folder_names_and_paths = {"checkpoints": ([str(base / "models" / "checkpoints")], {".safetensors"})}
    fp.get_folder_paths = lambda name: fp.folder_names_and_paths[name][0][:]

    def get_filename_list(name):
        folders, exts = fp.folder_names_and_paths[name]
        out = set()
        for folder in folders:
            for root, _, files in os.walk(folder):
                for f in files:
                    if not exts or os.path.splitext(f)[1].lower() in exts:
                        out.add(os.path.relpath(os.path.join(root, f), folder))
        return sorted(out)

    fp.get_filename_list = get_filename_list
    fp.get_output_directory = lambda: str(base / "output")
    fp.get_input_directory = lambda: str(base / "input")
    return fp


@pytest.fixture
def comfy_folders(tmp_path, monkeypatch):
    fp = fake_folder_paths(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "folder_paths", fp)
    return fp


def test_outside_comfyui_folders_come_from_the_environment(tmp_path, monkeypatch):
    assert comfy_bridge.folder_paths() is None
    monkeypatch.setenv("NADA_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("NADA_OUTPUT_DIR", str(tmp_path / "o"))
    monkeypatch.setenv("NADA_INPUT_DIR", str(tmp_path / "i"))
    assert paths.model_folders(paths.STYLEGAN) == [tmp_path / "m" / "stylegan"]
    assert paths.model_folders(paths.OPEN_CLIP) == [tmp_path / "m" / "open_clip"]
    assert paths.output_dir() == tmp_path / "o" and paths.input_dir() == tmp_path / "i"
    assert paths.generator_save_dir() == tmp_path / "m" / "stylegan" / "nada"
    monkeypatch.delenv("NADA_MODELS_DIR")
    assert paths.model_folders(paths.STYLEGAN) == [Path("models") / "stylegan"]


def test_registration_adds_our_folders(comfy_folders, tmp_path):
    paths.register_model_folders()
    folders, exts = comfy_folders.folder_names_and_paths["stylegan"]
    assert folders == [str(tmp_path / "models" / "stylegan")]
    assert exts == {".pt", ".pkl", ".safetensors"}
    folders, exts = comfy_folders.folder_names_and_paths["open_clip"]
    assert folders == [str(tmp_path / "models" / "open_clip")]
    assert {".pth", ".bin", ".safetensors"} <= exts
    assert (tmp_path / "models" / "stylegan").is_dir(), "the default folder is created so users see where files go"
    assert comfy_folders.folder_names_and_paths["checkpoints"][0] == [str(tmp_path / "models" / "checkpoints")]


def test_registration_keeps_folders_from_extra_model_paths(comfy_folders, tmp_path):
    """extra_model_paths.yaml is read before packs load: a user's folder must survive, in front."""
    user = str(tmp_path / "nas" / "stylegan")
    comfy_folders.folder_names_and_paths["stylegan"] = ([user], set())  # what add_model_folder_path creates
    paths.register_model_folders()
    paths.register_model_folders()  # idempotent
    folders, exts = comfy_folders.folder_names_and_paths["stylegan"]
    assert folders == [user, str(tmp_path / "models" / "stylegan")]
    assert exts == {".pt", ".pkl", ".safetensors"}
    assert paths.model_folders(paths.STYLEGAN) == [Path(user), tmp_path / "models" / "stylegan"]


def test_listing_and_lookup_across_folders(comfy_folders, tmp_path):
    user = tmp_path / "nas" / "stylegan"
    comfy_folders.folder_names_and_paths["stylegan"] = ([str(user)], {".ckpt"})
    paths.register_model_folders()
    default = tmp_path / "models" / "stylegan"
    (user).mkdir(parents=True)
    (user / "ffhq.pkl").write_bytes(b"x")
    (default / "nada").mkdir(parents=True)
    (default / "nada" / "sketch.safetensors").write_bytes(b"x")
    (default / "notes.txt").write_text("not a model")
    assert paths.list_models(paths.STYLEGAN) == ["ffhq.pkl", "nada/sketch.safetensors"]
    assert NadaLoadGenerator.INPUT_TYPES()["required"]["generator_name"][0] == ["ffhq.pkl", "nada/sketch.safetensors"]
    assert paths.resolve_model("ffhq.pkl", paths.STYLEGAN) == user / "ffhq.pkl"
    assert paths.resolve_model("nada/sketch.safetensors", paths.STYLEGAN) == default / "nada" / "sketch.safetensors"


def test_open_clip_lists_hugging_face_folders(comfy_folders, tmp_path):
    paths.register_model_folders()
    root = tmp_path / "models" / "open_clip"
    (root / "vit_base_patch32_clip_224.openai").mkdir(parents=True)
    (root / "vit_base_patch32_clip_224.openai" / "open_clip_config.json").write_text("{}")
    (root / "vit_base_patch32_clip_224.openai" / "open_clip_model.safetensors").write_bytes(b"x")
    (root / "ViT-B-16.bin").write_bytes(b"x")
    (root / "empty_folder").mkdir()
    names = NadaLoadCLIP.INPUT_TYPES()["required"]["clip_name"][0]
    # the folder is one choice; its weights file is not listed again on its own (issue 10)
    assert names == ["ViT-B-16.bin", "vit_base_patch32_clip_224.openai"]
    assert NadaLoadCLIP.INPUT_TYPES()["optional"]["clip_name_2"][0] == ["none"] + names
    assert paths.resolve_model("vit_base_patch32_clip_224.openai", paths.OPEN_CLIP, allow_dir=True).is_dir()
    with pytest.raises(paths.ModelNotFound):
        paths.resolve_model("vit_base_patch32_clip_224.openai", paths.OPEN_CLIP)  # a folder is not a file


def test_missing_model_message_says_which_file_and_where(comfy_folders, tmp_path):
    comfy_folders.folder_names_and_paths["stylegan"] = ([str(tmp_path / "nas")], set())
    paths.register_model_folders()
    msg = NadaLoadGenerator.VALIDATE_INPUTS("stylegan2-ffhq-config-f.pt")
    assert isinstance(msg, str)
    assert msg.startswith("NADA Load Generator: stylegan file 'stylegan2-ffhq-config-f.pt' not found; put it in ")
    assert str(tmp_path / "nas") in msg and str(tmp_path / "models" / "stylegan") in msg
    assert NadaLoadCLIP.VALIDATE_INPUTS("ViT-B-32.safetensors").startswith(
        "NADA Load CLIP: open_clip file 'ViT-B-32.safetensors' not found; put it in ")


def test_names_cannot_escape_the_model_folders(comfy_folders, tmp_path):
    paths.register_model_folders()
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"x")
    (tmp_path / "models" / "stylegan" / "secret.pt").write_bytes(b"inside")
    assert paths.safe_join(tmp_path / "a", "../../etc/passwd") == tmp_path / "a" / "etc" / "passwd"
    found = paths.resolve_model("../secret.pt", paths.STYLEGAN)
    assert found.read_bytes() == b"inside"
    with pytest.raises(paths.ModelNotFound):
        paths.resolve_model(str(secret), paths.STYLEGAN)  # an absolute path outside is not looked up


def test_free_stem_never_names_an_existing_file_for_any_suffix(tmp_path):
    assert paths.free_stem(tmp_path, "g") == "g"
    assert paths.free_stem(tmp_path, "g", numbered=True) == "g_00001"
    (tmp_path / "g.pt").write_bytes(b"x")  # the other format of a pair counts as taken
    assert paths.free_stem(tmp_path, "g", (".safetensors",)) == "g"
    assert paths.free_stem(tmp_path, "g", (".safetensors", ".pt")) == "g_00001"
    (tmp_path / "g_00001.safetensors").write_bytes(b"x")
    assert paths.free_stem(tmp_path, "g", (".safetensors", ".pt")) == "g_00002"
    assert paths.free_stem(tmp_path, "g", numbered=True) == "g_00002"
