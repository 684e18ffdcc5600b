"""Build the shareable ComfyUI workflows from one description, in both of ComfyUI's formats.

Each workflow is written twice from the same Python description below, so the two can never drift:

- ``NAME.json``: the canvas ("UI") format you drag onto ComfyUI (litegraph nodes with positions,
  widget values and a links table, version 0.4);
- ``NAME.api.json``: the API format for ``POST /prompt`` (``{id: {class_type, inputs, _meta}}``).

Run ``python workflows/build_workflows.py`` after changing a node's inputs or a workflow; the tests
check that the files on disk equal what this script builds. Widget order follows ComfyUI's front
end: the node's inputs in definition order (required, then optional), a seed's "control after
generate" value right after the seed, and front-end-only widgets (the image upload button) where
the front end puts them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKFLOW_NAMES = ("text_to_domain", "images_to_domain", "invert_and_translate", "domain_morph",
                  "sample_saved_domain", "domain_mixer")

# Model file names as a user would have them (see the README for where they come from).
FFHQ = "stylegan2-ffhq-config-f.pt"
ADAPTED = "nada/ffhq_sketch.safetensors"
# Compact domain files (models/stylegan/domains/), from NADA Train with adapt 'domain' + NADA Save Domain.
DOMAIN_A = "ffhq_sketch.safetensors"
DOMAIN_B = "ffhq_oil_painting.safetensors"
CLIP_FOLDER = "vit_base_patch32_clip_224.openai"
EXAMPLES_FOLDER = "nada_examples"
PORTRAIT = "portrait.png"

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
VIRTUAL_NODES = ("MarkdownNote", "Note")  # canvas-only: never sent to the server

# ComfyUI built-in nodes used by the workflows: inputs in definition order as
# (name, type or "COMBO", default), plus outputs. ``None`` defaults have no widget value of their own.
BUILTIN_NODES: dict[str, dict[str, Any]] = {
    "SaveImage": {
        "display": "Save Image",
        "inputs": [("images", "IMAGE", None), ("filename_prefix", "STRING", "ComfyUI")],
        "outputs": [],
    },
    "PreviewImage": {
        "display": "Preview Image",
        "inputs": [("images", "IMAGE", None)],
        "outputs": [],
    },
    "LoadImage": {
        "display": "Load Image",
        "inputs": [("image", "COMBO", "example.png")],
        # the front end adds an upload button widget after the file list; its value is "image"
        "frontend_widgets_after": {"image": ("upload", "image")},
        "outputs": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    },
    "SaveAnimatedWEBP": {
        "display": "SaveAnimatedWEBP",
        "inputs": [("images", "IMAGE", None), ("filename_prefix", "STRING", "ComfyUI"), ("fps", "FLOAT", 6.0),
                   ("lossless", "BOOLEAN", True), ("quality", "INT", 80), ("method", "COMBO", "default")],
        "outputs": [],
    },
    "PreviewAny": {
        "display": "Preview as Text",
        "inputs": [("source", "*", None)],
        # the front end adds a read-only text preview (3 widgets, not sent to the server)
        "frontend_widgets_tail": [None, None, None],
        "outputs": [],
    },
}


# ----------------------------------------------------------------------------------------- schemas


@dataclasses.dataclass
class Widget:
    name: str
    type: str
    default: Any
    control: bool = False  # followed by a "control after generate" widget
    explicit: bool = False  # a file list without a default: the workflow must name the file


@dataclasses.dataclass
class Schema:
    """What the builder needs to know about a node type."""

    display: str
    sockets: list[tuple[str, str]]  # link inputs (name, type), definition order
    widgets: list[Widget]  # widget inputs, definition order
    outputs: list[tuple[str, str]]  # (name, type)
    frontend_after: dict[str, tuple[str, Any]] = dataclasses.field(default_factory=dict)
    frontend_tail: list[Any] = dataclasses.field(default_factory=list)


def _pack_mappings():
    """The pack's node mappings (imports the ``nodes`` package of this repository; no torch needed)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    return NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS


def schema_from_input_types(display: str, input_types: dict, return_types, return_names) -> Schema:
    """Schema of a classic (V1) ComfyUI node from its ``INPUT_TYPES()`` and outputs."""
    sockets, widgets = [], []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind = spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(kind, list):
                widgets.append(Widget(name, "COMBO", opts.get("default"), explicit="default" not in opts))
            elif kind in WIDGET_TYPES and not opts.get("forceInput"):
                # ComfyUI's front end: `control_after_generate ?? name in ("seed", "noise_seed")` for INT
                control = kind == "INT" and bool(opts.get("control_after_generate", name in ("seed", "noise_seed")))
                widgets.append(Widget(name, kind, opts.get("default"), control))
            else:
                sockets.append((name, kind))
    names = list(return_names or return_types)
    return Schema(display, sockets, widgets, list(zip(names, return_types)))


def node_schema(node_type: str) -> Schema:
    if node_type in BUILTIN_NODES:
        b = BUILTIN_NODES[node_type]
        sockets = [(n, t) for n, t, _ in b["inputs"] if t not in WIDGET_TYPES and t != "COMBO"]
        widgets = [Widget(n, t, d) for n, t, d in b["inputs"] if t in WIDGET_TYPES or t == "COMBO"]
        return Schema(b["display"], sockets, widgets, list(b["outputs"]), dict(b.get("frontend_widgets_after", {})),
                      list(b.get("frontend_widgets_tail", [])))
    classes, displays = _pack_mappings()
    cls = classes[node_type]
    return schema_from_input_types(displays[node_type], cls.INPUT_TYPES(), cls.RETURN_TYPES,
                                   getattr(cls, "RETURN_NAMES", None))


# ------------------------------------------------------------------------------------- description


@dataclasses.dataclass
class Node:
    id: int
    type: str
    pos: tuple[int, int]
    widgets: dict[str, Any] = dataclasses.field(default_factory=dict)
    links: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # input -> (node id, output)
    title: str | None = None
    size: tuple[int, int] | None = None


@dataclasses.dataclass
class Workflow:
    name: str
    title: str
    note: str  # Markdown shown in a note on the canvas
    nodes: list[Node]
    note_pos: tuple[int, int] = (40, -330)


def _note(text: str) -> str:
    return text.strip() + "\n\nModel files: see the ComfyUI-NADA README, section *Model files*."


WORKFLOWS: dict[str, Workflow] = {
    "text_to_domain": Workflow(
        "text_to_domain",
        "Text to domain: photo -> pencil sketch",
        _note(f"""
### Text to domain (StyleGAN-NADA)
Adapts the FFHQ face generator to **pencil sketches** described in words, then saves the new generator as
`models/stylegan/{ADAPTED}`.

- Needs `models/stylegan/{FFHQ}` and the CLIP folder `models/open_clip/{CLIP_FOLDER}`.
- Change *target_text* in **NADA Text Direction** for another domain (e.g. "Pixar character", "werewolf").
- The preview on **NADA Train** updates while it trains; Cancel stops it within a step.
- About 300 steps on a GPU take a few minutes; photo -> sketch often looks right after 50-100."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadCLIP", (40, 200), {"clip_name": CLIP_FOLDER, "model_name": "ViT-B-32"}),
            Node(3, "NadaTextDirection", (420, 200), {"source_text": "photo", "target_text": "pencil sketch",
                                                      "templates": True}, {"clip": (2, 0)}),
            Node(4, "NadaTrain", (800, 40), {"steps": 300, "batch": 2, "lr": 0.002, "layers": "all", "seed": 0,
                                             "preview_every": 20, "preview_seeds": "0-3"},
                 {"generator": (1, 0), "clip": (2, 0), "direction": (3, 0)}),
            Node(5, "NadaSaveGenerator", (1200, 40), {"file_name": "ffhq_sketch", "overwrite": False},
                 {"generator": (4, 0)}),
            Node(6, "SaveImage", (1200, 220), {"filename_prefix": "nada/ffhq_sketch_comparison"}, {"images": (4, 1)},
                 title="Source (top) vs adapted (bottom)", size=(520, 330)),
            Node(7, "SaveImage", (1740, 220), {"filename_prefix": "nada/ffhq_sketch_loss"}, {"images": (4, 2)},
                 title="Training loss", size=(420, 330)),
            Node(8, "PreviewAny", (1200, 590), {}, {"source": (4, 3)}, title="Metrics", size=(520, 220)),
        ],
    ),
    "images_to_domain": Workflow(
        "images_to_domain",
        "Images to domain: adapt to the style of a few examples",
        _note(f"""
### Images to domain (few-shot StyleGAN-NADA)
Adapts the FFHQ face generator towards the style of **a few example images** instead of words.

- Put 3-10 example images of the target style in `ComfyUI/input/{EXAMPLES_FOLDER}/` (any size; they are centre-cropped).
- Needs `models/stylegan/{FFHQ}` and the CLIP folder `models/open_clip/{CLIP_FOLDER}`.
- The adapted generator is saved as `models/stylegan/nada/ffhq_examples.safetensors`."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadCLIP", (40, 200), {"clip_name": CLIP_FOLDER, "model_name": "ViT-B-32"}),
            Node(3, "NadaLoadImageFolder", (40, 480), {"folder": EXAMPLES_FOLDER, "size": 256, "fit": "crop",
                                                       "max_images": 0}),
            Node(4, "NadaImageDirection", (420, 200), {"num_samples": 16, "seed": 0, "truncation": 1.0},
                 {"clip": (2, 0), "generator": (1, 0), "images": (3, 0)}),
            Node(5, "NadaTrain", (800, 40), {"steps": 300, "batch": 2, "lr": 0.002, "layers": "all", "seed": 0,
                                             "preview_every": 20, "preview_seeds": "0-3"},
                 {"generator": (1, 0), "clip": (2, 0), "direction": (4, 0)}),
            Node(6, "NadaSaveGenerator", (1200, 40), {"file_name": "ffhq_examples", "overwrite": False},
                 {"generator": (5, 0)}),
            Node(7, "SaveImage", (1200, 220), {"filename_prefix": "nada/ffhq_examples_comparison"},
                 {"images": (5, 1)}, title="Source (top) vs adapted (bottom)", size=(520, 330)),
            Node(8, "PreviewImage", (420, 480), {}, {"images": (3, 0)}, title="Examples", size=(340, 300)),
            Node(9, "PreviewAny", (1200, 590), {}, {"source": (5, 3)}, title="Metrics", size=(520, 220)),
        ],
    ),
    "invert_and_translate": Workflow(
        "invert_and_translate",
        "Invert a photo and translate it to the adapted domain",
        _note(f"""
### Invert a photo, render it in the new domain
Finds the latent code of your photo in the **source** generator, then renders that code with the **adapted**
generator: the same person, as a pencil sketch.

- Upload a portrait in **Load Image** (aligned, centred faces work best).
- Needs `models/stylegan/{FFHQ}` and the adapted `models/stylegan/{ADAPTED}` (from *text_to_domain*).
- The code is also saved to `output/nada/portrait_00001.safetensors`, for NADA Load Latent."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": FFHQ, "weights": "EMA"}, title="Source generator"),
            Node(2, "NadaLoadGenerator", (40, 200), {"generator_name": ADAPTED, "weights": "EMA"},
                 title="Adapted generator"),
            Node(3, "LoadImage", (40, 360), {"image": PORTRAIT}, size=(320, 360)),
            Node(4, "NadaInvertImage", (420, 40), {"space": "w+", "steps": 300, "fit": "crop", "seed": 0},
                 {"generator": (1, 0), "image": (3, 0)}),
            Node(5, "NadaRender", (800, 40), {"noise_mode": "const"}, {"generator": (2, 0), "latent": (4, 0)}),
            Node(6, "SaveImage", (1180, 40), {"filename_prefix": "nada/portrait_sketch"}, {"images": (5, 0)},
                 title="Photo in the adapted domain", size=(340, 380)),
            Node(7, "SaveImage", (800, 300), {"filename_prefix": "nada/portrait_reconstruction"}, {"images": (4, 1)},
                 title="Reconstruction (source)", size=(340, 380)),
            Node(8, "NadaSaveLatent", (420, 360), {"filename_prefix": "nada/portrait"}, {"latent": (4, 0)}),
        ],
    ),
    "domain_morph": Workflow(
        "domain_morph",
        "Domain morph: blend from photo to sketch",
        _note(f"""
### Domain morph (cross-model interpolation)
Blends the weights of the source and the adapted generator frame by frame and renders the same faces
through the morph, saved as an animated WebP (paper appendix F).

- Needs `models/stylegan/{FFHQ}` and `models/stylegan/{ADAPTED}` (two generators of the same source).
- *layers* on **NADA Blend Frames** morphs only some layers (e.g. `fine` for colour and texture only)."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": FFHQ, "weights": "EMA"}, title="Generator A"),
            Node(2, "NadaLoadGenerator", (40, 200), {"generator_name": ADAPTED, "weights": "EMA"}, title="Generator B"),
            Node(3, "NadaLatentFromSeeds", (40, 360), {"seeds": "0-3", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(4, "NadaBlendFrames", (420, 40), {"frames": 24, "easing": "ease-in-out", "loop": True, "layers": "",
                                                   "noise_mode": "const"},
                 {"generator_a": (1, 0), "generator_b": (2, 0), "latent": (3, 0)}),
            Node(5, "SaveAnimatedWEBP", (800, 40), {"filename_prefix": "nada/ffhq_to_sketch", "fps": 12.0,
                                                    "lossless": False, "quality": 90, "method": "default"},
                 {"images": (4, 0)}, size=(420, 460)),
        ],
    ),
    "sample_saved_domain": Workflow(
        "sample_saved_domain",
        "Sample a saved domain",
        _note(f"""
### Sample a saved domain
Loads an adapted generator someone saved (or shared) and draws a grid of seeds.

- Needs `models/stylegan/{ADAPTED}` (any file in `models/stylegan/nada/` works).
- The same seed shows the same person in every domain adapted from the same source."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": ADAPTED, "weights": "EMA"}),
            Node(2, "NadaLatentFromSeeds", (420, 40), {"seeds": "0-15", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(3, "NadaRender", (800, 40), {"noise_mode": "const"}, {"generator": (1, 0), "latent": (2, 0)}),
            Node(4, "SaveImage", (1180, 40), {"filename_prefix": "nada/ffhq_sketch_samples"}, {"images": (3, 0)},
                 size=(480, 520)),
        ],
    ),
    "domain_mixer": Workflow(
        "domain_mixer",
        "Domain mixer: two compact domains, two strength sliders",
        _note(f"""
### Domain mixer (compact domains)
Applies two **domain files** (a few kilobytes each) to the FFHQ generator on one grid of seeds. Each
**NADA Apply Domain** has its own *strength*: 0 = off, 1 = as trained, in between a partial change, outside
0-1 an exaggeration. Domain modulations multiply, StyleSpace offsets add.

- Needs `models/stylegan/{FFHQ}` and `models/stylegan/domains/{DOMAIN_A}` and `{DOMAIN_B}`: train them with
  **NADA Train** (adapt `domain` or `stylespace`) + **NADA Save Domain**, or `nada train --adapt domain`.
- *layers* on an Apply Domain limits it to some W+ entries (e.g. `fine` for colour and texture only).
- Nothing is copied: the domains ride on the loaded generator's weights."""),
        [
            Node(1, "NadaLoadGenerator", (40, 40), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadDomain", (40, 200), {"domain_name": DOMAIN_A}, title="Domain A"),
            Node(3, "NadaLoadDomain", (40, 340), {"domain_name": DOMAIN_B}, title="Domain B"),
            Node(4, "NadaApplyDomain", (420, 40), {"strength": 1.0, "layers": ""},
                 {"generator": (1, 0), "domain": (2, 0)}, title="Strength of domain A"),
            Node(5, "NadaApplyDomain", (420, 240), {"strength": 0.5, "layers": ""},
                 {"generator": (4, 0), "domain": (3, 0)}, title="Strength of domain B"),
            Node(6, "NadaLatentFromSeeds", (420, 440), {"seeds": "0-7", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(7, "NadaRender", (800, 40), {"noise_mode": "const"}, {"generator": (5, 0), "latent": (6, 0)}),
            Node(8, "SaveImage", (1180, 40), {"filename_prefix": "nada/domain_mix"}, {"images": (7, 0)},
                 size=(480, 300)),
            Node(9, "PreviewAny", (800, 300), {}, {"source": (2, 1)}, title="Domain A", size=(340, 160)),
        ],
    ),
}


# ----------------------------------------------------------------------------------------- builders


def widget_value(node: Node, w: Widget) -> Any:
    if w.name in node.widgets:
        return node.widgets[w.name]
    if w.explicit:  # never let a file name from this machine's folders leak into a shared workflow
        raise ValueError(f"{node.type} #{node.id}: set {w.name!r} explicitly (it lists local files)")
    return w.default


def widget_values(node: Node, schema: Schema) -> list[Any]:
    """The node's ``widgets_values`` list in the front end's order."""
    unknown = set(node.widgets) - {w.name for w in schema.widgets}
    if unknown:
        raise ValueError(f"{node.type} #{node.id}: no widget named {sorted(unknown)}")
    values: list[Any] = []
    for w in schema.widgets:
        values.append(widget_value(node, w))
        if w.control:
            values.append("fixed")  # shared workflows must be repeatable: never "randomize"
        if w.name in schema.frontend_after:
            values.append(schema.frontend_after[w.name][1])
    values.extend(schema.frontend_tail)
    return values


def _topological_order(nodes: list[Node]) -> dict[int, int]:
    done: dict[int, int] = {}
    remaining = {n.id: n for n in nodes}
    while remaining:
        ready = [n for n in remaining.values() if all(src in done for src, _ in n.links.values())]
        if not ready:
            raise ValueError("workflow has a cycle")
        for n in sorted(ready, key=lambda n: n.id):
            done[n.id] = len(done)
            del remaining[n.id]
    return done


def _estimated_size(schema: Schema) -> list[int]:
    rows = max(len(schema.sockets), len(schema.outputs))
    return [320, 46 + 22 * rows + 26 * len(schema.widgets)]


def build_canvas(wf: Workflow) -> dict:
    """The canvas (UI) JSON of ``wf``."""
    schemas = {n.id: node_schema(n.type) for n in wf.nodes}
    order = _topological_order(wf.nodes)
    links: list[list[Any]] = []
    out_links: dict[tuple[int, int], list[int]] = {}
    in_links: dict[tuple[int, str], int] = {}
    for n in sorted(wf.nodes, key=lambda n: n.id):
        sockets = dict(schemas[n.id].sockets)
        for inp, (src, slot) in n.links.items():
            if inp not in sockets:
                raise ValueError(f"{n.type} #{n.id} has no link input {inp!r}")
            src_schema = schemas[src]
            out_type = src_schema.outputs[slot][1]
            link_id = len(links) + 1
            target_slot = [s for s, _ in schemas[n.id].sockets].index(inp)
            links.append([link_id, src, slot, n.id, target_slot, out_type])
            out_links.setdefault((src, slot), []).append(link_id)
            in_links[(n.id, inp)] = link_id
    nodes_json = []
    for n in wf.nodes:
        s = schemas[n.id]
        entry: dict[str, Any] = {
            "id": n.id,
            "type": n.type,
            "pos": list(n.pos),
            "size": list(n.size) if n.size else _estimated_size(s),
            "flags": {},
            "order": order[n.id] + 1,
            "mode": 0,
            "inputs": [{"name": name, "type": typ, "link": in_links.get((n.id, name))} for name, typ in s.sockets],
            "outputs": [{"name": name, "type": typ, "slot_index": i, "links": out_links.get((n.id, i))}
                        for i, (name, typ) in enumerate(s.outputs)],
            "properties": {"Node name for S&R": n.type},
            "widgets_values": widget_values(n, s),
        }
        if n.title:
            entry["title"] = n.title
        nodes_json.append(entry)
    note_id = max(n.id for n in wf.nodes) + 1
    nodes_json.append({
        "id": note_id, "type": "MarkdownNote", "pos": list(wf.note_pos), "size": [560, 300], "flags": {},
        "order": 0, "mode": 0, "inputs": [], "outputs": [], "title": wf.title, "properties": {},
        "widgets_values": [wf.note],
    })
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-nada/workflows/{wf.name}")),
        "revision": 0,
        "last_node_id": note_id,
        "last_link_id": len(links),
        "nodes": nodes_json,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [80, 380]}, "nada_workflow": wf.name},
        "version": 0.4,
    }


def build_api(wf: Workflow) -> dict:
    """The API (``POST /prompt``) JSON of ``wf``."""
    out: dict[str, Any] = {}
    for n in sorted(wf.nodes, key=lambda n: n.id):
        s = node_schema(n.type)
        inputs: dict[str, Any] = {}
        for w in s.widgets:
            inputs[w.name] = widget_value(n, w)
        for inp, (src, slot) in n.links.items():
            inputs[inp] = [str(src), slot]
        # keep the node definition's input order (what the front end produces)
        order = [name for name, _ in s.sockets] + [w.name for w in s.widgets]
        inputs = {k: inputs[k] for k in sorted(inputs, key=order.index)}
        out[str(n.id)] = {"inputs": inputs, "class_type": n.type, "_meta": {"title": n.title or s.display}}
    return out


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build_all() -> dict[str, str]:
    """``{file name: text}`` for every workflow file."""
    files = {}
    for name in WORKFLOW_NAMES:
        wf = WORKFLOWS[name]
        files[f"{name}.json"] = dumps(build_canvas(wf))
        files[f"{name}.api.json"] = dumps(build_api(wf))
    return files


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    stale = []
    for fname, text in build_all().items():
        path = HERE / fname
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(fname)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("out of date: " + ", ".join(stale) + "; run python workflows/build_workflows.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
