"""Make docs/workflows/NAME.png: what each shipped workflow outputs, by running it in ComfyUI.

Every workflow's API file runs through the real ComfyUI (the test harness's in-process worker) on
TINY RANDOM MODELS (a 32 px StyleGAN2 and an untrained 32 px CLIP, built on the spot), so the
pictures show the layout of each workflow's outputs, never the quality of real models; every
picture says so in its caption. Needs ComfyUI (COMFYUI_ROOT, default ~/ComfyUI) and its requirements.

    python workflows/render_examples.py            # writes docs/workflows/*.png and workflows/*.jpg
    python workflows/render_examples.py NAME ...   # only these workflows' pictures

It also writes each workflow's Templates thumbnail (``workflows/NAME.jpg``, via build_workflows.py).
A workflow added to build_workflows.py needs an entry in ``makers`` below (which outputs to show);
until then this script names it and exits with 1.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "workflows"
SCALE = 4  # 32 px outputs are enlarged (nearest neighbour) to stay visible
CAPTION = ("Made by running workflows/{name}.json in ComfyUI with TINY RANDOM test models (32 px generator, "
           "untrained CLIP):\nit shows what the workflow outputs and where, not what real models produce.")

# Longer runs than the tests use, so curves and morphs have something to show.
EXTRA = {"NadaTrain": {"steps": 30, "preview_every": 10}, "NadaInvertImage": {"steps": 60},
         "NadaBlendFrames": {"frames": 8}}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _enlarge(img, scale: int = SCALE):
    from PIL import Image

    if max(img.size) >= 400:
        return img.convert("RGB")
    return img.convert("RGB").resize((img.width * scale, img.height * scale), Image.NEAREST)


def compose(title: str, panels: list[tuple[str, object]], caption: str, text: str | None = None):
    """A white picture: title, labelled images side by side, optional text, caption."""
    from PIL import Image, ImageDraw

    pad, label_h = 16, 24
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    imgs = [(label, _enlarge(img)) for label, img in panels]
    cols = [max(i.width, int(measure.textlength(label, font=_font(15))) + 8) for label, i in imgs]
    caption_w = max(int(measure.textlength(line, font=_font(14))) for line in caption.splitlines())
    title_w = int(measure.textlength(title, font=_font(22)))
    width = max(sum(cols) + pad * (len(imgs) + 1), caption_w + 2 * pad, title_w + 2 * pad)
    row_h = max(i.height for _, i in imgs) + label_h
    text_lines = text.splitlines() if text else []
    height = 48 + row_h + pad + 20 * len(text_lines) + 60
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 12), title, fill="black", font=_font(22))
    x, y = pad, 48
    for (label, img), col in zip(imgs, cols):
        draw.text((x, y), label, fill=(60, 60, 60), font=_font(15))
        canvas.paste(img, (x, y + label_h))
        x += col + pad
    y = 48 + row_h + pad
    for line in text_lines:
        draw.text((pad, y), line, fill=(30, 30, 30), font=_font(14))
        y += 20
    draw.text((pad, height - 48), caption, fill=(170, 0, 0), font=_font(14))
    return canvas


def grid(images: list, cols: int, gap: int = 2):
    from PIL import Image

    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), "white")
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out.paste(im.convert("RGB"), (c * (w + gap), r * (h + gap)))
    return out


def main(argv: list[str] | None = None) -> int:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.comfy_harness import (ComfyWorker, load_api_workflow, make_model_tree, prepare_base, tiny_overrides,
                                     unavailable_reason)
    from workflows.build_workflows import WORKFLOWS

    wanted = list(sys.argv[1:] if argv is None else argv) or list(WORKFLOWS)
    unknown = [w for w in wanted if w not in WORKFLOWS]
    if unknown:
        print(f"unknown workflow(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    reason = unavailable_reason()
    if reason:
        print(f"cannot render: {reason}", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="nada-examples-"))
    try:
        prepare_base(base)
        make_model_tree(base)
        worker = ComfyWorker(base)
        results = {}
        try:
            for name, wf in WORKFLOWS.items():
                if name not in wanted:
                    continue
                overrides = tiny_overrides(name)
                for n in wf.nodes:
                    if n.type in EXTRA:
                        overrides.setdefault(str(n.id), {}).update(EXTRA[n.type])
                res = worker.call("execute", prompt=load_api_workflow(name, overrides), prompt_id=str(uuid.uuid4()),
                                  timeout=600)
                if not res.get("success"):
                    print(json.dumps(res.get("messages") or res, default=str)[:2000], file=sys.stderr)
                    return 1
                results[name] = res["history"]["outputs"]
        finally:
            worker.close()
        return _write_pictures(base, results)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # unlinks the custom_nodes symlink, never follows it


def _write_pictures(base: Path, results: dict) -> int:
    from PIL import Image

    from workflows.build_workflows import PORTRAIT

    def images(name: str, node_id: int) -> list:
        out = []
        for item in results[name][str(node_id)]["images"]:
            folder = base / ("output" if item["type"] == "output" else "temp") / item["subfolder"]
            with Image.open(folder / item["filename"]) as im:
                frames = getattr(im, "n_frames", 1)
                for f in range(frames):
                    im.seek(f)
                    out.append(im.convert("RGB").copy())
        return out

    def text(name: str, node_id: int) -> str:
        return results[name][str(node_id)]["text"][0]

    OUT.mkdir(parents=True, exist_ok=True)
    with Image.open(base / "input" / PORTRAIT) as portrait:
        portrait = portrait.convert("RGB").copy()
    makers = {
        "text_to_domain": lambda: compose(
            "text_to_domain: photo -> pencil sketch, trained from words",
            [("NADA Train: source (top) vs adapted (bottom)", images("text_to_domain", 6)[0]),
             ("NADA Train: loss plot", images("text_to_domain", 7)[0])],
            CAPTION.format(name="text_to_domain"), text=text("text_to_domain", 8)),
        "images_to_domain": lambda: compose(
            "images_to_domain: adapted towards a folder of example images",
            [("examples (input/nada_examples)", grid(images("images_to_domain", 8), 3)),
             ("source (top) vs adapted (bottom)", images("images_to_domain", 7)[0])],
            CAPTION.format(name="images_to_domain"), text=text("images_to_domain", 9)),
        "invert_and_translate": lambda: compose(
            "invert_and_translate: a photo inverted in the source generator, rendered by the adapted one",
            [("input photo (Load Image)", portrait), ("reconstruction (source)", images("invert_and_translate", 7)[0]),
             ("same code, adapted generator", images("invert_and_translate", 6)[0])],
            CAPTION.format(name="invert_and_translate")),
        "encode_and_translate": lambda: compose(
            "encode_and_translate: a photo encoded in one pass (e4e), rendered by the adapted generator",
            [("input photo (Load Image)", portrait), ("reconstruction (source)", images("encode_and_translate", 8)[0]),
             ("same code, adapted generator", images("encode_and_translate", 7)[0])],
            CAPTION.format(name="encode_and_translate") + " (encoder: random weights too)"),
        "domain_morph": lambda: compose(
            "domain_morph: the frames of the animated WebP, generator A -> B and back (loop)",
            [("frames 1-8 of the animation (each frame: seeds 0-3 as a 2x2 grid)",
              grid(images("domain_morph", 5), 4, gap=4))],
            CAPTION.format(name="domain_morph")),
        "sample_saved_domain": lambda: compose(
            "sample_saved_domain: seeds 0-15 from a saved adapted generator",
            [("16 seeds", grid(images("sample_saved_domain", 4), 8))],
            CAPTION.format(name="sample_saved_domain")),
        "domain_mixer": lambda: compose(
            "domain_mixer: seeds 0-7 with domain A at strength 1 and domain B at 0.5",
            [("8 seeds, both domains applied", grid(images("domain_mixer", 8), 4))],
            CAPTION.format(name="domain_mixer").replace("test models", "test models and random domain files"),
            text=text("domain_mixer", 9)),
        "several_domains": lambda: compose(
            "several_domains: three targets trained in one run; the second one picked and applied",
            [("NADA Train: source (top), one row per target", images("several_domains", 6)[0]),
             ("seeds 0-7, second domain at strength 0.8", grid(images("several_domains", 12), 4))],
            CAPTION.format(name="several_domains"), text=text("several_domains", 7)),
        "edit_in_domain": lambda: compose(
            "edit_in_domain: one SeFa direction found on the source, applied in both domains",
            [("edited, source generator", grid(images("edit_in_domain", 8), 2)),
             ("same codes, adapted generator", grid(images("edit_in_domain", 9), 2)),
             ("sweep -3..3 (adapted), one row per face", grid(images("edit_in_domain", 11), 5))],
            CAPTION.format(name="edit_in_domain"), text=text("edit_in_domain", 12)[:150].rsplit(",", 1)[0] + ", ..."),
    }
    from workflows.build_workflows import WORKFLOW_NAMES, picture_path, write_thumbnail

    for name in results:
        pic = makers[name]()
        path = picture_path(name)
        pic.save(path, optimize=True)
        print(f"wrote {path.relative_to(REPO)} ({pic.width}x{pic.height})")
        print(f"wrote {write_thumbnail(name).relative_to(REPO)}")
    missing = [n for n in WORKFLOW_NAMES if n not in makers]
    if missing:
        print("no picture for workflow(s) " + ", ".join(missing) + ": add an entry to `makers` in "
              "workflows/render_examples.py (which output nodes to show), then run it again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
