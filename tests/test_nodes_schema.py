"""The node pack's ComfyUI schema, checked without ComfyUI: every node is well formed and documented."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes.common import NadaNodeError

REPO = Path(__file__).resolve().parents[1]

# The node list promised to users (README); extra nodes may exist but these must.
REQUIRED_NODES = {
    "NadaLoadGenerator", "NadaLoadCLIP", "NadaTextDirection", "NadaImageDirection", "NadaTrain",
    "NadaSaveGenerator", "NadaLatentFromSeeds", "NadaRender", "NadaSample", "NadaInterpolateLatents",
    "NadaStyleMix", "NadaBlendGenerators", "NadaInvertImage", "NadaSaveLatent", "NadaLoadLatent", "NadaMetrics",
    "NadaBlendFrames", "NadaLoadImageFolder", "NadaLoadDomain", "NadaApplyDomain", "NadaSaveDomain", "NadaPickDomain",
}
OUTPUT_NODES = {"NadaSaveGenerator", "NadaSaveLatent", "NadaMetrics", "NadaSaveDomain"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
SOCKET_TYPES = {"STYLEGAN_GENERATOR", "NADA_LATENT", "NADA_CLIP", "NADA_DIRECTION", "NADA_DIRECTIONS", "NADA_ENCODER",
                "NADA_DOMAIN",                 "IMAGE", "STYLEGAN", "STYLEGAN_LATENT"}  # the last two: the other StyleGAN packs' types (interop nodes)


def all_inputs(cls) -> dict[str, tuple]:
    spec = cls.INPUT_TYPES()
    return {**spec.get("required", {}), **spec.get("optional", {})}


def test_every_promised_node_is_exported_with_a_readable_name():
    assert REQUIRED_NODES <= set(NODE_CLASS_MAPPINGS)
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert name.startswith("Nada") and cls.__name__ == name
        display = NODE_DISPLAY_NAME_MAPPINGS[name]
        assert display.startswith("NADA ") and "_" not in display, display
    assert NODE_DISPLAY_NAME_MAPPINGS["NadaLoadGenerator"] == "NADA Load Generator"
    assert len(set(NODE_DISPLAY_NAME_MAPPINGS.values())) == len(NODE_DISPLAY_NAME_MAPPINGS)


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_node_class_attributes(name):
    cls = NODE_CLASS_MAPPINGS[name]
    assert cls.CATEGORY.split("/")[0] == "NADA" and cls.CATEGORY.count("/") == 1
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 40
    assert isinstance(cls.RETURN_TYPES, tuple)
    if cls.RETURN_TYPES:
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
        assert all(isinstance(t, str) and t for t in cls.OUTPUT_TOOLTIPS)
        assert len(set(cls.RETURN_NAMES)) == len(cls.RETURN_NAMES)
    else:
        assert getattr(cls, "OUTPUT_NODE", False), "a node without outputs must be an output node"
    assert bool(getattr(cls, "OUTPUT_NODE", False)) == (name in OUTPUT_NODES)
    assert callable(getattr(cls, cls.FUNCTION))


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_inputs_have_tooltips_and_sane_ranges(name):
    cls = NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"}, "hidden inputs are not used by this pack"
    assert spec.get("required"), f"{name} has no required inputs"
    for inp, entry in all_inputs(cls).items():
        assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, f"{name}.{inp}"
        kind, opts = entry[0], entry[1]
        assert isinstance(opts.get("tooltip"), str) and len(opts["tooltip"]) > 10, f"{name}.{inp} needs a tooltip"
        if isinstance(kind, list):
            assert all(isinstance(c, str) for c in kind)
            if "default" in opts:
                assert opts["default"] in kind, f"{name}.{inp}: default {opts['default']!r} not among {kind}"
        elif kind in ("INT", "FLOAT"):
            lo, hi, step, default = opts["min"], opts["max"], opts["step"], opts["default"]
            assert lo <= default <= hi and step > 0, f"{name}.{inp}"
            if kind == "INT":
                assert all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step, default))
        elif kind == "STRING":
            assert isinstance(opts["default"], str)
        elif kind == "BOOLEAN":
            assert isinstance(opts["default"], bool)
        else:
            assert kind in SOCKET_TYPES, f"{name}.{inp}: unexpected type {kind}"


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_function_signature_matches_inputs(name):
    """ComfyUI calls FUNCTION(**inputs): every input is a parameter, optional ones have defaults."""
    cls = NODE_CLASS_MAPPINGS[name]
    spec = cls.INPUT_TYPES()
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    names = [p for p in params if p != "self"]
    assert set(names) == set(all_inputs(cls)), f"{name}: {names}"
    for opt in spec.get("optional", {}):
        assert params[opt].default is not inspect.Parameter.empty, f"{name}.{opt} is optional but has no default"
    if hasattr(cls, "VALIDATE_INPUTS"):
        vparams = inspect.signature(cls.VALIDATE_INPUTS).parameters
        # **kwargs would make ComfyUI skip its own min/max checks for every input
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in vparams.values())
        assert set(vparams) <= set(all_inputs(cls))
    if hasattr(cls, "IS_CHANGED"):
        iparams = inspect.signature(cls.IS_CHANGED).parameters
        # ComfyUI passes every widget input; a missing parameter makes it re-run the node every time
        assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in iparams.values())


def test_paper_defaults():
    train = NODE_CLASS_MAPPINGS["NadaTrain"].INPUT_TYPES()["required"]
    from nada_core.training.config import TrainConfig

    # lr 0 = auto: with the default adapt (full) the paper's 0.002, Adam at 0.0016 as the official code.
    assert train["lr"][1]["default"] == 0.0 and TrainConfig(lr=train["lr"][1]["default"]).adam_lr == 0.002 * 0.8
    assert train["batch"][1]["default"] == 2
    assert train["steps"][1]["default"] == 300
    assert train["mixing"][1]["default"] == 0.0  # the official code's default (0.9 only for shape changes)
    assert train["layers"][1]["default"] == "all"
    assert train["seed"][1]["control_after_generate"] is False, "a training seed must not randomise itself"
    for node in ("NadaLatentFromSeeds", "NadaSample"):
        assert NODE_CLASS_MAPPINGS[node].INPUT_TYPES()["required"]["truncation"][1]["default"] == 0.7
    assert NODE_CLASS_MAPPINGS["NadaImageDirection"].INPUT_TYPES()["required"]["num_samples"][1]["default"] == 16


def test_seeded_nodes_are_cacheable():
    """No node declares itself always-changed: ComfyUI's cache must skip a re-queued identical graph."""
    for name, cls in NODE_CLASS_MAPPINGS.items():
        if hasattr(cls, "IS_CHANGED"):
            assert name in {"NadaLoadGenerator", "NadaLoadCLIP", "NadaLoadLatent", "NadaLoadImageFolder",
                            "NadaLoadDirection", "NadaLoadEncoder", "NadaLoadDomain"}, name
    for name in ("NadaTrain", "NadaSample", "NadaInvertImage", "NadaRender", "NadaBlendFrames"):
        assert not hasattr(NODE_CLASS_MAPPINGS[name], "IS_CHANGED")


def test_node_errors_are_short_and_name_the_node():
    from nada_core.errors import InputError

    from nodes.common import register

    @register("NADA Test Failing Node")
    class NadaTestFailing:  # noqa: N801 - registered only for this test
        FUNCTION = "run"

        def run(self):
            try:
                raise KeyError("internal detail")
            except KeyError:
                raise InputError("the seed list is empty; use e.g. '0-7'")

    try:
        with pytest.raises(NadaNodeError) as info:
            NadaTestFailing().run()
        assert str(info.value) == "NADA Test Failing Node: the seed list is empty; use e.g. '0-7'"
        assert info.value.__cause__ is None and info.value.__suppress_context__
    finally:
        NODE_CLASS_MAPPINGS.pop("NadaTestFailing", None)
        NODE_DISPLAY_NAME_MAPPINGS.pop("NadaTestFailing", None)


def test_pack_imports_light_without_comfyui(tmp_path):
    """ComfyUI imports the repository root as a package: it must work without ComfyUI and torch."""
    script = textwrap.dedent(f"""
        import importlib.util, json, sys, time
        t0 = time.perf_counter()
        spec = importlib.util.spec_from_file_location("ComfyUI_NADA_under_test", {str(REPO / '__init__.py')!r},
                                                      submodule_search_locations=[{str(REPO)!r}])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        seconds = time.perf_counter() - t0
        heavy = sorted(m for m in ("torch", "open_clip", "numpy", "PIL", "comfy", "folder_paths") if m in sys.modules)
        print(json.dumps({{"nodes": sorted(mod.NODE_CLASS_MAPPINGS), "heavy": heavy, "seconds": seconds}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(info["nodes"]) == set(NODE_CLASS_MAPPINGS)
    assert info["heavy"] == [], f"importing the pack pulled in {info['heavy']}"
    assert info["seconds"] < 2.0
    assert not (tmp_path / "models").exists(), "outside ComfyUI, importing must not create folders"
