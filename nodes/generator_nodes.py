"""Generator nodes: load, save and blend StyleGAN2 generators."""

from __future__ import annotations

import re

from . import comfy_bridge, paths
from . import types as T
from .common import (
    CATEGORY_GENERATOR,
    CATEGORY_IMAGE,
    CATEGORY_LOADERS,
    bool_input,
    combo,
    float_input,
    int_input,
    node_error,
    register,
    socket,
    string_input,
)

WEIGHTS_CHOICES = ["EMA", "non-EMA"]
SAVE_FORMATS = ["safetensors", "rosinality .pt", "both"]
SAVE_FORMAT_TOOLTIP = ("safetensors: NADA's file, with the training settings inside. rosinality .pt: "
                       "{'g_ema', 'latent_avg'} as e4e, pSp, StyleCLIP and the StyleGAN-NADA scripts load it (only for "
                       "generators with rosinality's channel table, e.g. FFHQ config-f). both: one of each.")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._\- ]+$")


@register("NADA Load Generator")
class NadaLoadGenerator:
    DESCRIPTION = ("Loads a StyleGAN2 generator from ComfyUI/models/stylegan: rosinality .pt, NVIDIA .pkl "
                   "(read safely, nothing is executed) or a generator saved by NADA Save Generator (.safetensors).")
    CATEGORY = CATEGORY_LOADERS
    RETURN_TYPES = (T.GENERATOR,)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The generator, ready for sampling, training or inversion.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator_name": combo(
                    paths.list_models(paths.STYLEGAN),
                    "Generator file in ComfyUI/models/stylegan (adapted ones you saved are under nada/)."),
                "weights": combo(
                    WEIGHTS_CHOICES,
                    "EMA: the smoothed weights NVIDIA and rosinality publish for sampling (best quality). "
                    "non-EMA: the raw training weights, when the file has them.",
                    default="EMA"),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, generator_name):
        try:
            paths.resolve_model(generator_name, paths.STYLEGAN)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, generator_name, weights="EMA", **_other_inputs):
        try:
            # a replaced file (new size/mtime) reloads; no path in the marker (it ends up in saved images)
            return paths.fingerprint([paths.resolve_model(generator_name, paths.STYLEGAN)], weights)
        except paths.ModelNotFound:
            return ""

    def load(self, generator_name: str, weights: str):
        from nada_core.formats.checkpoints import load_generator

        path = paths.resolve_model(generator_name, paths.STYLEGAN)
        G = load_generator(path, device=comfy_bridge.torch_device(), ema=(weights != "non-EMA"))
        return (G,)


def _clean_save_name(node, name: str) -> str:
    """``"ffhq_sketch"`` / ``"sub/ffhq_sketch.safetensors"`` -> a safe relative stem (no extension)."""
    name = (name or "").strip().replace("\\", "/")
    if name.lower().endswith(".safetensors"):
        name = name[: -len(".safetensors")]
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") or not _SAFE_NAME.match(p) for p in parts) or name.startswith("/"):
        raise node_error(node, f"cannot save as {name!r}; use a plain name like 'ffhq_sketch' "
                               "(letters, digits, '-', '_', '.', optional sub-folders with '/')")
    return "/".join(parts)


def _provenance_of(G) -> dict | None:
    """What to store as the file's provenance: ``None`` lets ``save_generator`` keep
    ``G.metadata["provenance"]`` (loaded files and NadaTrainer.export_generator both set it); a
    generator tagged only with a bare metadata dict has that dict stored instead."""
    meta = getattr(G, "metadata", None) or {}
    return None if "provenance" in meta else dict(meta)


@register("NADA Save Generator")
class NadaSaveGenerator:
    DESCRIPTION = ("Saves a generator (e.g. one adapted by NADA Train) as nada/<name>.safetensors in the first stylegan "
                   "folder (ComfyUI/models/stylegan/nada/, or, when extra_model_paths.yaml names a stylegan: folder, "
                   "that folder's nada/; the file_name tooltip shows the folder), with its training settings stored "
                   "in the file. It then appears in NADA Load Generator as nada/<name>.safetensors.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.STRING,)
    RETURN_NAMES = ("generator_name",)
    OUTPUT_TOOLTIPS = ("The saved file's name as NADA Load Generator lists it (e.g. nada/ffhq_sketch.safetensors).",)
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The generator to save (usually NADA Train's output)."),
                "file_name": string_input("ffhq_sketch", "File name without extension (sub-folders with '/'); saved "
                                          "in " + paths.save_dir_tooltip() + "."),
                "overwrite": bool_input(False, "Replace an existing file of that name. Off: a number is added "
                                        "(ffhq_sketch_00001) so earlier results are kept.", on="replace", off="keep both"),
            },
            "optional": {
                "file_format": combo(SAVE_FORMATS, SAVE_FORMAT_TOOLTIP, default=SAVE_FORMATS[0]),
            },
        }

    def save(self, generator, file_name: str, overwrite: bool, file_format: str = SAVE_FORMATS[0]):
        from nada_core.atomic import check_output
        from nada_core.formats.checkpoints import save_generator
        from nada_core.formats.export import export_generator, rosinality_blockers

        if file_format not in SAVE_FORMATS:
            raise node_error(self, f"unknown file_format {file_format!r}; choose one of {', '.join(SAVE_FORMATS)}")
        suffixes = {"safetensors": [".safetensors"], "rosinality .pt": [".pt"],
                    "both": [".safetensors", ".pt"]}[file_format]
        if ".pt" in suffixes:
            problems = rosinality_blockers(generator.config)
            if problems:  # before anything is written
                raise node_error(self, f"cannot save as a rosinality .pt: {'; '.join(problems)}; "
                                       "choose file_format safetensors")
        stem = _clean_save_name(self, file_name)
        folder = paths.generator_save_dir()
        if not overwrite:
            stem = paths.free_stem(folder, stem, suffixes)
        targets = [folder / f"{stem}{ext}" for ext in suffixes]
        for target in targets:  # name length, folder, permission
            check_output(target, suffixes=(target.suffix,), what="file name")
        targets[0].parent.mkdir(parents=True, exist_ok=True)
        for target in targets:
            if target.suffix == ".safetensors":
                save_generator(generator, target, metadata=_provenance_of(generator))
            else:
                export_generator(generator, target, "rosinality")
        root = paths.model_folders(paths.STYLEGAN)[0]
        listed = [t.relative_to(root).as_posix() for t in targets]
        return {"ui": {"text": listed}, "result": (listed[0],)}


LAYERS_TOOLTIP = ("Blend only these W+ layers (the rest stay generator A): 'coarse', 'middle', 'fine' or entries like "
                  "'0-3,8'. Empty = the whole network.")


def _alpha_for(G, alpha: float, layers: str):
    """One alpha for the whole network, or per-layer alphas when ``layers`` is given."""
    if not (layers or "").strip():
        return float(alpha)
    from nada_core.editing.interpolate import layer_alphas

    return layer_alphas(G.num_ws, layers, alpha=float(alpha), others=0.0)


@register("NADA Blend Generators")
class NadaBlendGenerators:
    DESCRIPTION = ("Blends the weights of two generators adapted from the same source (e.g. sketch and painting): "
                   "alpha 0 = A, 1 = B, in between a mix of both domains. Returns a new generator; A and B are unchanged.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.GENERATOR,)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The blended generator (same latent space as A and B).",)
    FUNCTION = "blend"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator_a": socket(T.GENERATOR, "First generator (alpha 0)."),
                "generator_b": socket(T.GENERATOR, "Second generator (alpha 1), same architecture and source as A."),
                "alpha": float_input(0.5, -1.0, 2.0, 0.01, "Share of B: 0 = A, 1 = B; outside 0-1 extrapolates."),
                "layers": string_input("", LAYERS_TOOLTIP),
            }
        }

    def blend(self, generator_a, generator_b, alpha: float, layers: str):
        from nada_core.editing.interpolate import blend_generators

        return (blend_generators(generator_a, generator_b, _alpha_for(generator_a, alpha, layers)),)


@register("NADA Blend Frames")
class NadaBlendFrames:
    DESCRIPTION = ("Renders the same latent codes through a morph from generator A to generator B, one image per frame "
                   "(several codes make a grid per frame). Feed it to Save Animated WEBP for a domain morph video.")
    CATEGORY = CATEGORY_IMAGE
    RETURN_TYPES = (T.IMAGE,)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The frames as an image batch, A first, B last.",)
    FUNCTION = "frames"

    @classmethod
    def INPUT_TYPES(cls):
        from .latent_nodes import EASING_TOOLTIP, EASINGS, NOISE_MODES, NOISE_TOOLTIP

        return {
            "required": {
                "generator_a": socket(T.GENERATOR, "Where the morph starts (e.g. the source generator)."),
                "generator_b": socket(T.GENERATOR, "Where it ends (e.g. an adapted generator of the same source)."),
                "latent": socket(T.LATENT, "The code(s) to show; several make a grid in every frame."),
                "frames": int_input(24, 2, 600, "Number of frames from A to B."),
                "easing": combo(EASINGS, EASING_TOOLTIP, default="ease-in-out"),
                "loop": ("BOOLEAN", {"default": False, "tooltip": "Morph back to A at the end, for a seamless loop."}),
                "layers": string_input("", LAYERS_TOOLTIP),
                "noise_mode": combo(NOISE_MODES, NOISE_TOOLTIP, default="const"),
            }
        }

    def frames(self, generator_a, generator_b, latent, frames: int, easing: str, loop: bool, layers: str, noise_mode: str):
        import math

        import torch
        from nada_core.media.images import make_grid, to_comfy
        from nada_core.editing.interpolate import render_blend_sequence

        bar = comfy_bridge.Progress(frames)
        cols = max(1, math.ceil(math.sqrt(len(latent))))
        out = []
        for imgs in render_blend_sequence([generator_a, generator_b], latent, frames, easing=easing, loop=loop,
                                          layers=(layers or "").strip() or None, noise_mode=noise_mode,
                                          should_stop=comfy_bridge.interrupt_requested):
            frame = imgs if imgs.shape[0] == 1 else make_grid(imgs, ncols=cols, pad=2, pad_value=1.0)
            out.append(to_comfy(frame))
            bar.update(len(out))
        if comfy_bridge.interrupt_requested():
            comfy_bridge.raise_interrupted()
        return (torch.cat(out),)
