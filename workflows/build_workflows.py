"""Build the shareable ComfyUI workflows from one description, in both of ComfyUI's formats.

Each workflow is written twice from the same Python description below, so the two can never drift:

- ``workflows/NAME.json``: the canvas ("UI") format you drag onto ComfyUI (litegraph nodes with
  positions, widget values and a links table, version 0.4);
- ``workflows/api/NAME.api.json``: the API format for ``POST /prompt`` and ``nada queue``
  (``{id: {class_type, inputs, _meta}}``).

``workflows/`` is also the folder ComfyUI's Templates browser reads (every ``workflows/*.json`` of a
pack is listed under Templates -> Extensions, with ``workflows/NAME.jpg`` as its thumbnail), so it
holds exactly the canvas files and their thumbnails; the API files live in ``api/``, which the
browser does not scan. The thumbnails are small JPEGs made from ``docs/workflows/NAME.png`` (the
pictures ``workflows/render_examples.py`` renders).

Run ``python workflows/build_workflows.py`` after changing a node's inputs or a workflow (``--check``
only reports stale or missing files); the tests check that the files on disk equal what this
script builds. Widget order follows ComfyUI's front
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
if str(REPO) not in sys.path:  # run as a script: make this repository's packages importable
    sys.path.insert(0, str(REPO))
from workflows.canvas_layout import fit_view, layout_problems, node_box  # noqa: E402
API_DIR = HERE / "api"  # not scanned by ComfyUI's Templates browser (it reads workflows/*.json only)
PICTURES_DIR = REPO / "docs" / "workflows"
THUMBNAIL_MAX = (480, 320)  # px; the Templates browser shows small cards
THUMBNAIL_QUALITY = 82
WORKFLOW_NAMES = ("text_to_domain", "images_to_domain", "invert_and_translate", "encode_and_translate",
                  "domain_morph", "sample_saved_domain", "edit_in_domain", "domain_mixer", "several_domains")

# Model file names as a user would have them (see the README for where they come from).
FFHQ = "stylegan2-ffhq-config-f.pt"
ADAPTED = "nada/ffhq_sketch.safetensors"
# Compact domain files (models/stylegan/domains/), from NADA Train with adapt 'domain' + NADA Save Domain.
DOMAIN_A = "ffhq_sketch.safetensors"
DOMAIN_B = "ffhq_oil_painting.safetensors"
CLIP_FOLDER = "vit_base_patch32_clip_224.openai"
EXAMPLES_FOLDER = "nada_examples"
PORTRAIT = "portrait.png"
ENCODER_FILE = "e4e_ffhq_encode.pt"

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
    note_size: tuple[int, int] = (560, 300)


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
            Node(1, "NadaLoadGenerator", (0, 300), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadCLIP", (0, 480), {"clip_name": CLIP_FOLDER, "model_name": "ViT-B-32"}),
            Node(3, "NadaTextDirection", (350, 480), {"source_text": "photo", "target_text": "pencil sketch",
                                                      "templates": True}, {"clip": (2, 0)}),
            # tall enough for the live preview it shows while and after training
            Node(4, "NadaTrain", (700, 30), {"steps": 300, "batch": 2, "lr": 0.002, "layers": "all", "seed": 0,
                                             "preview_every": 20, "preview_seeds": "0-3"},
                 {"generator": (1, 0), "clip": (2, 0), "direction": (3, 0)}, size=(340, 700)),
            Node(5, "NadaSaveGenerator", (1080, 30), {"file_name": "ffhq_sketch", "overwrite": False},
                 {"generator": (4, 0)}),
            Node(6, "SaveImage", (1080, 240), {"filename_prefix": "nada/ffhq_sketch_comparison"}, {"images": (4, 1)},
                 title="Source (top) vs adapted (bottom)", size=(460, 300)),
            Node(7, "SaveImage", (1580, 240), {"filename_prefix": "nada/ffhq_sketch_loss"}, {"images": (4, 2)},
                 title="Training loss", size=(400, 300)),
            Node(8, "PreviewAny", (1080, 610), {}, {"source": (4, 3)}, title="Metrics", size=(460, 280)),
        ],
        note_pos=(0, 30), note_size=(660, 230),
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
            Node(1, "NadaLoadGenerator", (0, 300), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadCLIP", (0, 480), {"clip_name": CLIP_FOLDER, "model_name": "ViT-B-32"}),
            Node(3, "NadaLoadImageFolder", (0, 790), {"folder": EXAMPLES_FOLDER, "size": 256, "fit": "crop",
                                                      "max_images": 0}),
            Node(4, "NadaImageDirection", (350, 300), {"num_samples": 16, "seed": 0, "truncation": 1.0},
                 {"clip": (2, 0), "generator": (1, 0), "images": (3, 0)}),
            Node(5, "NadaTrain", (700, 30), {"steps": 300, "batch": 2, "lr": 0.002, "layers": "all", "seed": 0,
                                             "preview_every": 20, "preview_seeds": "0-3"},
                 {"generator": (1, 0), "clip": (2, 0), "direction": (4, 0)}, size=(340, 700)),
            Node(6, "NadaSaveGenerator", (1080, 30), {"file_name": "ffhq_examples", "overwrite": False},
                 {"generator": (5, 0)}),
            Node(7, "SaveImage", (1080, 240), {"filename_prefix": "nada/ffhq_examples_comparison"},
                 {"images": (5, 1)}, title="Source (top) vs adapted (bottom)", size=(460, 300)),
            Node(8, "PreviewImage", (350, 570), {}, {"images": (3, 0)}, title="Examples", size=(320, 300)),
            Node(9, "PreviewAny", (1080, 610), {}, {"source": (5, 3)}, title="Metrics", size=(460, 280)),
        ],
        note_pos=(0, 30), note_size=(660, 230),
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
            Node(1, "NadaLoadGenerator", (0, 290), {"generator_name": FFHQ, "weights": "EMA"}, title="Source generator"),
            Node(2, "NadaLoadGenerator", (0, 470), {"generator_name": ADAPTED, "weights": "EMA"},
                 title="Adapted generator"),
            Node(3, "LoadImage", (0, 650), {"image": PORTRAIT}, size=(320, 340)),
            # tall enough for the live preview it shows while and after inverting
            Node(4, "NadaInvertImage", (350, 290), {"space": "w+", "steps": 300, "fit": "crop", "seed": 0},
                 {"generator": (1, 0), "image": (3, 0)}, size=(320, 480)),
            Node(8, "NadaSaveLatent", (350, 830), {"filename_prefix": "nada/portrait"}, {"latent": (4, 0)}),
            Node(5, "NadaRender", (700, 30), {"noise_mode": "const"}, {"generator": (2, 0), "latent": (4, 0)}),
            Node(7, "SaveImage", (700, 300), {"filename_prefix": "nada/portrait_reconstruction"}, {"images": (4, 1)},
                 title="Reconstruction (source)", size=(340, 380)),
            Node(6, "SaveImage", (1070, 30), {"filename_prefix": "nada/portrait_sketch"}, {"images": (5, 0)},
                 title="Photo in the adapted domain", size=(340, 380)),
        ],
        note_pos=(0, 30), note_size=(660, 220),
    ),
    "encode_and_translate": Workflow(
        "encode_and_translate",
        "Encode a photo in one pass and translate it to the adapted domain",
        _note(f"""
### Encode a photo (e4e / pSp / ReStyle), render it in the new domain
The same as *invert_and_translate*, in about a second instead of minutes: an **encoder** trained for the FFHQ
generator turns your photo into its latent code in one pass, and the **adapted** generator renders that code.

- Put `{ENCODER_FILE}` (or a pSp / ReStyle checkpoint) in `models/encoders/`.
- The photo must be a face **aligned like FFHQ** (eyes level, centred, as the encoders were trained; see the README).
- Needs `models/stylegan/{FFHQ}` and the adapted `models/stylegan/{ADAPTED}` (from *text_to_domain*).
- For a closer match, feed the encoder into **NADA Invert Image** (its optional *encoder* input) instead."""),
        [
            Node(1, "NadaLoadGenerator", (0, 300), {"generator_name": FFHQ, "weights": "EMA"}, title="Source generator"),
            Node(2, "NadaLoadGenerator", (0, 480), {"generator_name": ADAPTED, "weights": "EMA"},
                 title="Adapted generator"),
            Node(3, "NadaLoadEncoder", (0, 660), {"encoder_name": ENCODER_FILE}),
            Node(4, "LoadImage", (0, 820), {"image": PORTRAIT}, size=(320, 360)),
            Node(5, "NadaEncodeImage", (350, 300), {"fit": "crop", "iterations": 5},
                 {"generator": (1, 0), "encoder": (3, 0), "image": (4, 0)}),
            Node(6, "NadaRender", (700, 30), {"noise_mode": "const"}, {"generator": (2, 0), "latent": (5, 0)}),
            Node(7, "SaveImage", (1070, 30), {"filename_prefix": "nada/encoded_sketch"}, {"images": (6, 0)},
                 title="Photo in the adapted domain", size=(340, 380)),
            Node(8, "SaveImage", (700, 300), {"filename_prefix": "nada/encoded_reconstruction"}, {"images": (5, 1)},
                 title="Reconstruction (source)", size=(340, 380)),
            Node(9, "NadaSaveLatent", (350, 540), {"filename_prefix": "nada/encoded_portrait"}, {"latent": (5, 0)}),
        ],
        note_pos=(0, 30), note_size=(660, 230),
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
            Node(1, "NadaLoadGenerator", (0, 280), {"generator_name": FFHQ, "weights": "EMA"}, title="Generator A"),
            Node(2, "NadaLoadGenerator", (0, 460), {"generator_name": ADAPTED, "weights": "EMA"}, title="Generator B"),
            Node(3, "NadaLatentFromSeeds", (0, 640), {"seeds": "0-3", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(4, "NadaBlendFrames", (350, 280), {"frames": 24, "easing": "ease-in-out", "loop": True, "layers": "",
                                                    "noise_mode": "const"},
                 {"generator_a": (1, 0), "generator_b": (2, 0), "latent": (3, 0)}),
            Node(5, "SaveAnimatedWEBP", (700, 30), {"filename_prefix": "nada/ffhq_to_sketch", "fps": 12.0,
                                                    "lossless": False, "quality": 90, "method": "default"},
                 {"images": (4, 0)}, size=(420, 460)),
        ],
        note_pos=(0, 30), note_size=(660, 210),
    ),
    "edit_in_domain": Workflow(
        "edit_in_domain",
        "Edit in the domain: one latent direction, source and adapted side by side",
        _note(f"""
### Edit in the adapted domain (SeFa directions)
Finds semantic directions (pose, age, smile... unlabelled, strongest first) on the **source** generator,
moves four faces along one of them and renders the same edited codes with the source and the **adapted**
generator: the edit carries over, because adaptation keeps the source's latent space.

- Needs `models/stylegan/{FFHQ}` and the adapted `models/stylegan/{ADAPTED}` (from *text_to_domain*).
- *index* picks the direction (0 = strongest); *strength* how far (about 3 is clear; negative walks the other way);
  *layers* `0-5` keeps the edit to pose and shape.
- For a real photo: replace **NADA Latent From Seeds** with **NADA Invert Image** (see *invert_and_translate*).
- For InterFaceGAN boundaries (age.npy, smile.pt...): put them in `models/stylegan/directions/` and use
  **NADA Load Direction** instead of **NADA Find Directions**.
- **NADA Direction Sweep** renders each face at strengths -3..3 in the adapted domain."""),
        [
            Node(1, "NadaLoadGenerator", (0, 400), {"generator_name": FFHQ, "weights": "EMA"}, title="Source generator"),
            Node(2, "NadaLoadGenerator", (0, 580), {"generator_name": ADAPTED, "weights": "EMA"},
                 title="Adapted generator"),
            Node(3, "NadaLatentFromSeeds", (0, 760), {"seeds": "0-3", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(4, "NadaFindDirections", (350, 400), {"method": "sefa", "count": 10, "layers": "all", "torgb": "none",
                                                      "samples": 50000, "seed": 0}, {"generator": (1, 0)}),
            Node(5, "NadaApplyDirection", (700, 30), {"index": 0, "strength": 3.0, "layers": ""},
                 {"latent": (3, 0), "directions": (4, 0), "generator": (1, 0)}),
            Node(6, "NadaRender", (1050, 30), {"noise_mode": "const"}, {"generator": (1, 0), "latent": (5, 0)},
                 title="Render (source)"),
            Node(7, "NadaRender", (1050, 300), {"noise_mode": "const"}, {"generator": (2, 0), "latent": (5, 0)},
                 title="Render (adapted)"),
            Node(8, "SaveImage", (1400, 30), {"filename_prefix": "nada/edit_source"}, {"images": (6, 0)},
                 title="Edited, source domain", size=(340, 380)),
            Node(9, "SaveImage", (1770, 30), {"filename_prefix": "nada/edit_adapted"}, {"images": (7, 0)},
                 title="Edited, adapted domain", size=(340, 380)),
            Node(10, "NadaDirectionSweep", (700, 300), {"index": 0, "strengths": "-3:3:5", "layers": "",
                                                        "noise_mode": "const"},
                 {"generator": (2, 0), "latent": (3, 0), "directions": (4, 0)}),
            Node(11, "SaveImage", (1050, 580), {"filename_prefix": "nada/edit_sweep_adapted"}, {"images": (10, 0)},
                 title="Sweep -3..3, adapted domain (5 per face)", size=(520, 380)),
            Node(12, "PreviewAny", (350, 730), {}, {"source": (4, 1)}, title="Directions found", size=(320, 200)),
        ],
        note_pos=(0, 30), note_size=(660, 330),
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
            Node(1, "NadaLoadGenerator", (0, 270), {"generator_name": ADAPTED, "weights": "EMA"}),
            Node(2, "NadaLatentFromSeeds", (350, 270), {"seeds": "0-15", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(3, "NadaRender", (700, 270), {"noise_mode": "const"}, {"generator": (1, 0), "latent": (2, 0)}),
            Node(4, "SaveImage", (1050, 30), {"filename_prefix": "nada/ffhq_sketch_samples"}, {"images": (3, 0)},
                 size=(480, 520)),
        ],
        note_pos=(0, 30), note_size=(660, 200),
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
            Node(1, "NadaLoadGenerator", (0, 300), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadDomain", (0, 480), {"domain_name": DOMAIN_A}, title="Domain A"),
            Node(3, "NadaLoadDomain", (0, 660), {"domain_name": DOMAIN_B}, title="Domain B"),
            Node(4, "NadaApplyDomain", (350, 300), {"strength": 1.0, "layers": ""},
                 {"generator": (1, 0), "domain": (2, 0)}, title="Strength of domain A"),
            Node(5, "NadaApplyDomain", (350, 510), {"strength": 0.5, "layers": ""},
                 {"generator": (4, 0), "domain": (3, 0)}, title="Strength of domain B"),
            Node(6, "NadaLatentFromSeeds", (350, 720), {"seeds": "0-7", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(7, "NadaRender", (700, 30), {"noise_mode": "const"}, {"generator": (5, 0), "latent": (6, 0)}),
            Node(8, "SaveImage", (1070, 30), {"filename_prefix": "nada/domain_mix"}, {"images": (7, 0)},
                 size=(480, 300)),
            Node(9, "PreviewAny", (700, 330), {}, {"source": (2, 1)}, title="Domain A", size=(340, 160)),
        ],
        note_pos=(0, 30), note_size=(660, 230),
    ),
    "several_domains": Workflow(
        "several_domains",
        "Several domains in one run: one compact domain per target line",
        _note(f"""
### Several domains in one run (compact domains)
**NADA Text Direction** takes one target per line; **NADA Train** with *adapt* `domain` trains one domain file
(a few kilobytes) per line in the same run, sharing each step's source pass.

- Needs `models/stylegan/{FFHQ}` and the CLIP folder `models/open_clip/{CLIP_FOLDER}`.
- *lr* 0 = auto: 0.1 for `domain`, 0.05 for `stylespace` (the reference recipes), 0.002 for `full`.
- **NADA Save Domain** writes `models/stylegan/domains/ffhq_<target>.safetensors`, one per line.
- **NADA Pick Domain** selects one (*index* 0 = first line) for **NADA Apply Domain**."""),
        [
            Node(1, "NadaLoadGenerator", (0, 300), {"generator_name": FFHQ, "weights": "EMA"}),
            Node(2, "NadaLoadCLIP", (0, 480), {"clip_name": CLIP_FOLDER, "model_name": "ViT-B-32"}),
            Node(3, "NadaTextDirection", (350, 480), {"source_text": "photo",
                                                      "target_text": "pencil sketch\noil painting\nwatercolor painting",
                                                      "templates": True}, {"clip": (2, 0)}, size=(320, 260)),
            # tall enough for the live preview (one row per target) it shows while and after training
            Node(4, "NadaTrain", (700, 30), {"steps": 300, "batch": 2, "lr": 0.0, "layers": "all", "seed": 0,
                                             "preview_every": 20, "preview_seeds": "0-3", "adapt": "domain"},
                 {"generator": (1, 0), "clip": (2, 0), "direction": (3, 0)}, size=(340, 760)),
            Node(5, "NadaSaveDomain", (1080, 30), {"file_name": "ffhq", "overwrite": False}, {"domain": (4, 4)}),
            Node(6, "SaveImage", (1080, 240), {"filename_prefix": "nada/several_domains_comparison"},
                 {"images": (4, 1)}, title="Source (top), one row per target", size=(460, 360)),
            Node(7, "PreviewAny", (1080, 640), {}, {"source": (4, 3)}, title="Metrics per target", size=(460, 420)),
            Node(8, "NadaPickDomain", (1580, 30), {"index": 1}, {"domains": (4, 4)}, title="Second target"),
            Node(9, "NadaApplyDomain", (1580, 240), {"strength": 0.8, "layers": ""},
                 {"generator": (1, 0), "domain": (8, 0)}),
            Node(10, "NadaLatentFromSeeds", (1580, 450), {"seeds": "0-7", "truncation": 0.7}, {"generator": (1, 0)}),
            Node(11, "NadaRender", (1580, 640), {"noise_mode": "const"}, {"generator": (9, 0), "latent": (10, 0)}),
            Node(12, "SaveImage", (0, 800), {"filename_prefix": "nada/several_domains_picked"}, {"images": (11, 0)},
                 title="Seeds 0-7, second domain at 0.8", size=(660, 300)),
        ],
        note_pos=(0, 30), note_size=(660, 230),
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


def node_size(n: Node, schema: Schema) -> list[int]:
    return list(n.size) if n.size else _estimated_size(schema)


def canvas_boxes(wf: Workflow) -> dict[str, tuple]:
    """``{"#id type": box}`` of every node and the note, as the canvas file places them (see canvas_layout)."""
    boxes = {f"#{n.id} {n.type}": node_box(n.pos, node_size(n, node_schema(n.type))) for n in wf.nodes}
    boxes["note"] = node_box(wf.note_pos, wf.note_size)
    return boxes


def canvas_view(wf: Workflow) -> dict:
    """The saved view (``extra.ds``): the largest zoom showing every node in a 1600x1000 window."""
    return fit_view(list(canvas_boxes(wf).values()))


def canvas_layout_problems(wf: Workflow) -> list[str]:
    """Overlapping or hidden nodes of ``wf`` at its saved view, from the sizes in the file."""
    return layout_problems(canvas_boxes(wf), canvas_view(wf))


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
            "size": node_size(n, s),
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
        "id": note_id, "type": "MarkdownNote", "pos": list(wf.note_pos), "size": list(wf.note_size), "flags": {},
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
        "extra": {"ds": canvas_view(wf), "nada_workflow": wf.name},
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


# ------------------------------------------------------------------------------------------- files


def canvas_path(name: str) -> Path:
    """``workflows/NAME.json``: the canvas file (listed by ComfyUI's Templates browser)."""
    return HERE / f"{name}.json"


def api_path(name: str) -> Path:
    """``workflows/api/NAME.api.json``: the API-format file for ``POST /prompt`` and ``nada queue``."""
    return API_DIR / f"{name}.api.json"


def thumbnail_path(name: str) -> Path:
    """``workflows/NAME.jpg``: the Templates browser asks for ``<template name>.jpg`` next to the JSON."""
    return HERE / f"{name}.jpg"


def picture_path(name: str) -> Path:
    """``docs/workflows/NAME.png``: the README's picture of the workflow's outputs (render_examples.py)."""
    return PICTURES_DIR / f"{name}.png"


def build_all() -> dict[str, str]:
    """``{path relative to workflows/: text}`` for every workflow JSON file (canvas and API)."""
    files = {}
    for name in WORKFLOW_NAMES:
        wf = WORKFLOWS[name]
        files[canvas_path(name).relative_to(HERE).as_posix()] = dumps(build_canvas(wf))
        files[api_path(name).relative_to(HERE).as_posix()] = dumps(build_api(wf))
    return files


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (for messages)."""
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


class MissingPicture(Exception):
    """docs/workflows/NAME.png does not exist, so no thumbnail can be made."""


def make_thumbnail(name: str):
    """The Templates thumbnail of ``name`` as a Pillow RGB image, at most :data:`THUMBNAIL_MAX`."""
    from PIL import Image

    src = picture_path(name)
    if not src.is_file():
        raise MissingPicture(
            f"no thumbnail for workflow {name!r}: {_shown(src)} is missing; add {name!r} to the pictures "
            "in workflows/render_examples.py and run it (needs ComfyUI), then run this script again")
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail(THUMBNAIL_MAX, Image.LANCZOS)
        return im.copy()


def write_thumbnail(name: str) -> Path:
    """Write ``workflows/NAME.jpg`` from ``docs/workflows/NAME.png``; returns its path."""
    path = thumbnail_path(name)
    make_thumbnail(name).save(path, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return path


def thumbnail_problem(name: str) -> str | None:
    """Why ``workflows/NAME.jpg`` is not the thumbnail this script would write, or ``None``.

    JPEG bytes differ between Pillow versions, so the check compares pictures: same size, and on
    average within 10 grey levels of a freshly made thumbnail (JPEG noise on the pictures' pixel
    grids is up to ~7; two different pictures differ by 30 and more).
    """
    from PIL import Image, ImageChops, ImageStat

    want = make_thumbnail(name)
    path = thumbnail_path(name)
    if not path.is_file():
        return f"{_shown(path)} is missing"
    with Image.open(path) as im:
        if im.format != "JPEG":
            return f"{_shown(path)} is not a JPEG"
        got = im.convert("RGB")
    if got.size != want.size:
        return f"{_shown(path)} is {got.size[0]}x{got.size[1]}, expected {want.size[0]}x{want.size[1]}"
    if max(ImageStat.Stat(ImageChops.difference(got, want)).mean) > 10.0:
        return f"{_shown(path)} does not show {_shown(picture_path(name))}"
    return None


def stray_files() -> list[str]:
    """Files in ``workflows/`` or ``workflows/api/`` this script does not make (Templates would list a JSON)."""
    expected = {canvas_path(n) for n in WORKFLOW_NAMES} | {thumbnail_path(n) for n in WORKFLOW_NAMES}
    expected |= {api_path(n) for n in WORKFLOW_NAMES}
    found = [p for p in HERE.glob("*.json")] + [p for p in HERE.glob("*.jpg")]
    found += [p for p in API_DIR.glob("*.json")] if API_DIR.is_dir() else []
    return sorted(_shown(p) for p in found if p not in expected)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    stale, problems = [], []
    for fname, text in build_all().items():
        path = HERE / fname
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(fname)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {_shown(path)}")
    for name in WORKFLOW_NAMES:
        try:
            if check:
                why = thumbnail_problem(name)
                if why:
                    stale.append(f"{name}.jpg ({why})")
            else:
                print(f"wrote {_shown(write_thumbnail(name))}")
        except MissingPicture as err:
            problems.append(str(err))
    strays = stray_files()
    if strays:  # e.g. an old NAME.api.json left in workflows/: the Templates browser would list it
        problems.append("not made by this script (delete or move them): " + ", ".join(strays))
    for line in problems:
        print(line, file=sys.stderr)
    if stale:
        print("out of date: " + ", ".join(stale) + "; run python workflows/build_workflows.py", file=sys.stderr)
    return 1 if stale or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
