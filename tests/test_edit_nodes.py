"""Editing-direction nodes called directly (no ComfyUI), against the engine functions they wrap."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from nada_core.editing.direction_files import save_direction
from nada_core.editing.latents import latents_from_seeds, render
from nada_core.editing.semantic import edit, ganspace_directions, sefa_directions, sweep
from nada_core.formats.checkpoints import save_generator
from nada_core.media.images import to_comfy
from nodes import NODE_CLASS_MAPPINGS as NODES
from nodes import paths
from nodes import types as T
from nodes.common import NadaNodeError
from tests import checkpoint_factories as cf
from tests.comfy_harness import save_adapted_copy
from tests.factories import tiny_generator


def node(name):
    return NODES[name]()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("nada_edit_nodes")
    sg = root / "models" / "stylegan"
    (sg / "directions").mkdir(parents=True)
    save_generator(tiny_generator(16, seed=0), sg / "tiny.safetensors")
    save_adapted_copy(sg / "tiny.safetensors", sg / "adapted.safetensors")
    save_generator(tiny_generator(16, seed=5), sg / "unrelated.safetensors")
    np.save(sg / "directions" / "smile.npy", np.random.RandomState(0).standard_normal((1, 32)))
    cf.write_malicious_pt(sg / "directions" / "evil.pt", root / "pwned")
    mp = pytest.MonkeyPatch()
    mp.setenv("NADA_MODELS_DIR", str(root / "models"))
    mp.setenv("NADA_INPUT_DIR", str(root / "input"))
    mp.setenv("NADA_OUTPUT_DIR", str(root / "output"))
    yield types.SimpleNamespace(root=root)
    mp.undo()


@pytest.fixture(scope="module")
def gens(env):
    load = node("NadaLoadGenerator").load
    return types.SimpleNamespace(src=load("tiny.safetensors", "EMA")[0], adapted=load("adapted.safetensors", "EMA")[0],
                                 unrelated=load("unrelated.safetensors", "EMA")[0])


def test_socket_type_is_the_latent_edit_directions_constant():
    assert T.EDIT_DIRECTIONS == "NADA_DIRECTIONS" and T.EDIT_DIRECTIONS != T.DIRECTION
    assert NODES["NadaFindDirections"].RETURN_TYPES[0] == T.EDIT_DIRECTIONS
    for name in ("NadaApplyDirection", "NadaDirectionSweep"):
        assert NODES[name].INPUT_TYPES()["required"]["directions"][0] == T.EDIT_DIRECTIONS


def test_find_directions_matches_the_engine(gens):
    with torch.inference_mode():
        dirs, summary = node("NadaFindDirections").find(gens.src, "sefa", 4, "0-3", "none", 2000, 0)
    ref = sefa_directions(gens.src, layers="0-3", k=4)
    assert torch.equal(dirs.vectors, ref.vectors) and dirs.layers == [0, 1, 2, 3]
    assert summary.startswith("4 sefa direction(s), layers 0,1,2,3; eigenvalues: sefa:0=")
    with torch.inference_mode():
        gs, summary = node("NadaFindDirections").find(gens.src, "ganspace", 3, "all", "none", 2000, 9)
    torch.testing.assert_close(gs.vectors, ganspace_directions(gens.src, 2000, 3, 9).vectors)
    assert "std of W" in summary
    with pytest.raises(NadaNodeError, match="^NADA Find Directions: number of directions"):
        node("NadaFindDirections").find(gens.src, "sefa", 999, "all", "none", 2000, 0)


def test_load_direction_lists_the_directions_folder_only(env, gens):
    choices = NODES["NadaLoadDirection"].INPUT_TYPES()["required"]["direction_file"][0]
    assert choices == ["evil.pt", "smile.npy"]
    generators = NODES["NadaLoadGenerator"].INPUT_TYPES()["required"]
    names = next(v[0] for v in generators.values() if isinstance(v[0], list))
    assert not any(n.startswith("directions/") for n in names) and "tiny.safetensors" in names
    dirs, summary = node("NadaLoadDirection").load("smile.npy")
    assert dirs.names == ["smile"] and summary.startswith("1 file direction(s)")
    assert NODES["NadaLoadDirection"].VALIDATE_INPUTS("missing.npy").startswith("NADA Load Direction: direction file")
    assert NODES["NadaLoadDirection"].VALIDATE_INPUTS("smile.npy") is True
    with pytest.raises(NadaNodeError, match="^NADA Load Direction: .*refused") as info:
        node("NadaLoadDirection").load("evil.pt")
    assert "\n" not in str(info.value) and not (env.root / "pwned").exists()
    with pytest.raises(NadaNodeError, match="^NADA Load Direction: .*not found"):
        node("NadaLoadDirection").load("../tiny.safetensors")  # cannot escape the folder


def test_apply_direction_edits_and_carries_over_to_the_adapted_generator(gens):
    lat = latents_from_seeds(gens.src, "0-1", truncation_psi=0.7)
    dirs = sefa_directions(gens.src, k=3)
    with torch.inference_mode():
        out = node("NadaApplyDirection").apply(lat, dirs, 1, 2.5, "0-2", gens.adapted)[0]
    assert torch.equal(out.ws, edit(lat, dirs, 2.5, layers="0-2", index=1).ws)
    assert torch.equal(out.ws[:, 3:], lat.ws[:, 3:])
    same = node("NadaApplyDirection").apply(lat, dirs, 1, 2.5, "", None)[0]  # empty = the set's layers (all)
    assert torch.equal(same.ws, edit(lat, dirs, 2.5, index=1).ws)
    with pytest.raises(NadaNodeError, match="^NADA Apply Direction: .*lineage"):
        node("NadaApplyDirection").apply(lat, dirs, 0, 1.0, "", gens.unrelated)
    with pytest.raises(NadaNodeError, match="^NADA Apply Direction: direction index 7 is out of range"):
        node("NadaApplyDirection").apply(lat, dirs, 7, 1.0, "", None)


def test_direction_sweep_renders_codes_by_strength_with_progress(gens, monkeypatch):
    updates = []
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            updates.append((value, total))

    utils.ProgressBar = ProgressBar
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    lat = latents_from_seeds(gens.src, "3-4", truncation_psi=0.7)
    dirs = sefa_directions(gens.src, k=2)
    with torch.inference_mode():
        imgs, codes = node("NadaDirectionSweep").sweep(gens.adapted, lat, dirs, 0, "-3:3:5", "all", "const")
    assert imgs.shape == (10, 16, 16, 3) and imgs.dtype == torch.float32
    ref = sweep(lat, dirs, [-3, -1.5, 0, 1.5, 3], layers="all", index=0)
    assert torch.equal(codes.ws, ref.ws)
    torch.testing.assert_close(imgs, to_comfy(render(gens.adapted, ref)))
    torch.testing.assert_close(imgs[2], to_comfy(render(gens.adapted, lat.select(0)))[0])  # strength 0
    assert updates and updates[-1] == (10, 10)
    with pytest.raises(NadaNodeError, match="^NADA Direction Sweep: cannot read strengths"):
        node("NadaDirectionSweep").sweep(gens.src, lat, dirs, 0, "x", "all", "const")


def test_ganspace_node_stops_on_cancel(gens, monkeypatch):
    class FakeInterrupt(Exception):
        pass

    mm = types.ModuleType("comfy.model_management")
    calls = {"n": 0, "flag": None}

    def interrupted():
        calls["n"] += 1
        return calls["n"] > 1

    mm.processing_interrupted = interrupted
    mm.InterruptProcessingException = FakeInterrupt
    mm.interrupt_current_processing = lambda value=True: calls.update(flag=value)
    monkeypatch.setitem(sys.modules, "comfy.model_management", mm)
    with pytest.raises(FakeInterrupt):  # ComfyUI's own "interrupted", not an error
        node("NadaFindDirections").find(gens.src, "ganspace", 2, "all", "none", 100_000, 0)
    assert calls["n"] == 2 and calls["flag"] is False  # stopped after one batch of 4096, not 25


def test_saved_directions_load_back_through_the_node(env, gens):
    dirs = sefa_directions(gens.src, layers="coarse", k=2)
    save_direction(dirs, paths.model_folders(paths.DIRECTIONS)[0] / "sub" / "coarse.safetensors")
    back, _ = node("NadaLoadDirection").load("sub/coarse.safetensors")
    assert torch.equal(back.vectors, dirs.vectors) and back.layers == dirs.layers
