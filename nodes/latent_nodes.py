"""Latent nodes: seeds -> latents, render, sample, save/load latents, interpolate, style-mix."""

from __future__ import annotations

import os
from pathlib import Path

from . import comfy_bridge, paths
from . import types as T
from .common import (
    CATEGORY_IMAGE,
    CATEGORY_LATENT,
    class_input,
    combo,
    float_input,
    int_input,
    node_error,
    register,
    seed_input,
    socket,
    string_input,
)

NOISE_MODES = ["const", "random", "none"]
NOISE_TOOLTIP = ("Per-pixel noise: const = the generator's stored noise (repeatable), random = fresh noise "
                 "each run (varies fine detail such as hair), none = no noise (smoother).")
TRUNCATION_TOOLTIP = ("Truncation psi: 1 = the full variety of the model, lower = closer to the average face/"
                      "object (cleaner but less varied). 0.7 is the usual choice for showing results.")
LATENT_FILE_EXTENSIONS = {".safetensors", ".npz", ".npy"}
OUTPUT_SUFFIX = " [output]"  # ComfyUI's way of naming a file in the output folder from a loader
RENDER_BATCH = 8


def render_to_comfy(G, latents, noise_mode: str = "const", input_transform=None):
    """Render ``latents`` with ``G`` -> ComfyUI ``IMAGE`` ``[N, R, R, 3]`` in [0, 1], with a progress bar."""
    from nada_core.media.images import to_comfy
    from nada_core.editing.latents import render

    bar = comfy_bridge.Progress(len(latents))
    imgs = render(G, latents, noise_mode=noise_mode, batch_size=RENDER_BATCH,
                  on_progress=lambda done, total: bar.update(done), input_transform=input_transform)
    return to_comfy(imgs)


def _transform_input(name: str) -> tuple:
    from nada_core.settings import SAMPLE

    kind, opts = SAMPLE.node_input(name)
    return kind, {**opts, "tooltip": opts["tooltip"] + " (StyleGAN2 generators: leave at 0, they have no input transform)."}


@register("NADA Latent From Seeds")
class NadaLatentFromSeeds:
    DESCRIPTION = ("Turns seeds into latent codes for a generator (the same seed gives the same image as NVIDIA's "
                   "tools). Adapted generators share their source's latents: one seed, the same person in every domain.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("One W+ code per seed, in the order given.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "Generator whose mapping network turns the seeds into codes."),
                "seeds": string_input("0-7", "Seeds as a list and/or ranges, e.g. '0-7', '1,5,9' or '0-3, 10, 20-22'."),
                "truncation": float_input(0.7, 0.0, 2.0, 0.01, TRUNCATION_TOOLTIP),
            },
            "optional": {"class_index": class_input()},
        }

    def make(self, generator, seeds: str, truncation: float, class_index: int = -1):
        from nada_core.editing.latents import latents_from_seeds

        return (latents_from_seeds(generator, seeds, truncation_psi=truncation, class_index=class_index),)


@register("NADA Render")
class NadaRender:
    DESCRIPTION = "Renders latent codes with a generator into images (any generator adapted from the same source works)."
    CATEGORY = CATEGORY_IMAGE
    RETURN_TYPES = (T.IMAGE,)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("One image per latent code, at the generator's resolution.",)
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The generator to draw with (source or adapted)."),
                "latent": socket(T.LATENT, "Codes from NADA Latent From Seeds, Sample, Invert Image, Load Latent..."),
                "noise_mode": combo(NOISE_MODES, NOISE_TOOLTIP, default="const"),
            },
            "optional": {
                "translate_x": _transform_input("translate_x"),
                "translate_y": _transform_input("translate_y"),
                "rotate": _transform_input("rotate"),
            },
        }

    def render(self, generator, latent, noise_mode: str, translate_x: float = 0.0, translate_y: float = 0.0,
               rotate: float = 0.0):
        from nada_core.editing.transforms import transform_for
        from nada_core.settings import SAMPLE, check

        tx, ty = check(SAMPLE["translate_x"], translate_x), check(SAMPLE["translate_y"], translate_y)
        transform = transform_for(generator, (tx, ty), check(SAMPLE["rotate"], rotate))
        return (render_to_comfy(generator, latent, noise_mode, transform),)


@register("NADA Sample")
class NadaSample:
    DESCRIPTION = "Draws a batch of images from consecutive seeds (seed, seed+1, ...), returning the images and their codes."
    CATEGORY = CATEGORY_IMAGE
    RETURN_TYPES = (T.IMAGE, T.LATENT)
    RETURN_NAMES = ("images", "latent")
    OUTPUT_TOOLTIPS = ("The sampled images.", "Their latent codes, to render with another (adapted) generator.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The generator to sample."),
                "seed": seed_input("First seed; the batch uses seed, seed+1, ..."),
                "batch_size": int_input(4, 1, 64, "How many images to draw."),
                "truncation": float_input(0.7, 0.0, 2.0, 0.01, TRUNCATION_TOOLTIP),
            },
            "optional": {"class_index": class_input()},
        }

    def sample(self, generator, seed: int, batch_size: int, truncation: float, class_index: int = -1):
        from nada_core.editing.latents import latents_from_seeds

        seeds = list(range(int(seed), int(seed) + int(batch_size)))
        latents = latents_from_seeds(generator, seeds, truncation_psi=truncation, class_index=class_index)
        return (render_to_comfy(generator, latents), latents)


# ------------------------------------------------------------------------------------ latent files


@register("NADA Save Latent")
class NadaSaveLatent:
    DESCRIPTION = ("Saves latent codes (with the generator lineage they belong to) to ComfyUI/output as .safetensors; "
                   "NADA Load Latent reads them back (from input/ or output/), and so does the `nada` command line.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent": socket(T.LATENT, "The codes to save."),
                "filename_prefix": string_input("nada/latents", "File name prefix inside ComfyUI/output; a number is added "
                                                "(nada/latents_00001.safetensors)."),
            }
        }

    def save(self, latent, filename_prefix: str):
        from nada_core.atomic import check_output
        from nada_core.editing.latents import save_latents

        out_root = paths.output_dir()
        prefix = (filename_prefix or "").strip().replace("\\", "/") or "nada/latents"
        target_dir = paths.safe_join(out_root, os.path.dirname(prefix))
        stem = os.path.basename(prefix) or "latents"
        if stem in (".", ".."):
            raise node_error(self, f"cannot save with prefix {filename_prefix!r}; use a plain name like 'nada/latents'")
        check_output(target_dir / f"{stem}_00000.safetensors", suffixes=(".safetensors",), what="filename_prefix")
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{paths.free_stem(target_dir, stem, numbered=True)}.safetensors"
        save_latents(latent, target)
        rel = target.relative_to(out_root).as_posix()
        return {"ui": {"text": [rel + OUTPUT_SUFFIX]}}


def _latent_choices() -> list[str]:
    names = paths.list_files(paths.input_dir(), LATENT_FILE_EXTENSIONS)
    names += [n + OUTPUT_SUFFIX for n in paths.list_files(paths.output_dir(), LATENT_FILE_EXTENSIONS)]
    return names


def _resolve_latent_file(name: str) -> Path:
    name = (name or "").strip()
    if name.endswith(OUTPUT_SUFFIX):
        return paths.resolve_in(paths.output_dir(), name[: -len(OUTPUT_SUFFIX)], "latent file")
    return paths.resolve_in(paths.input_dir(), name, "latent file")


@register("NADA Load Latent")
class NadaLoadLatent:
    DESCRIPTION = ("Loads latent codes from ComfyUI/input (or output, marked [output]): files from NADA Save Latent "
                   "or `nada invert`, NVIDIA projector .npz files, or .npy arrays.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The loaded codes.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent_file": combo(_latent_choices(), "Latent file in ComfyUI/input (or output, marked [output])."),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, latent_file):
        try:
            _resolve_latent_file(latent_file)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, latent_file, **_other_inputs):
        try:
            path = _resolve_latent_file(latent_file)
        except paths.ModelNotFound:
            return ""
        return paths.fingerprint([path])  # no path in it: ComfyUI embeds it in saved images

    def load(self, latent_file: str):
        from nada_core.editing.latents import load_latents

        return (load_latents(_resolve_latent_file(latent_file)),)


# ------------------------------------------------------------------------------- paths and mixing

EASINGS = ["linear", "ease-in-out", "smoothstep", "cosine", "ease-in", "ease-out"]  # nada_core.editing.interpolate.EASINGS
EASING_TOOLTIP = "How frames are spaced between keyframes: linear = even steps; the eased modes slow down near each keyframe."
LAYERS_TOOLTIP = ("W+ entries (one per synthesis layer): 'coarse' (0-3: pose, face shape), 'middle' (4-7: features), "
                  "'fine' (8 and up: colours, texture), or entries like '0-3,8' ('8-' = 8 to the last).")


@register("NADA Interpolate Latents")
class NadaInterpolateLatents:
    DESCRIPTION = ("Makes a smooth path of codes from latent A to latent B (or through every code of latent A "
                   "as keyframes, when B is not connected). Render it, then save it with Save Animated WEBP.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The interpolated codes, one per frame.",)
    FUNCTION = "interpolate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent_a": socket(T.LATENT, "Start code(s); with several codes and no latent B, each is a keyframe."),
                "frames": int_input(16, 2, 1000, "Number of codes on the path (frames of the animation)."),
                "mode": combo(["lerp", "slerp"], "lerp: straight lines between W codes (works for any latents). "
                              "slerp: arcs between the seeds' z codes (latents made from seeds; needs the generator).",
                              default="lerp"),
                "easing": combo(EASINGS, EASING_TOOLTIP, default="linear"),
                "loop": ("BOOLEAN", {"default": False, "tooltip": "Return to the first keyframe at the end, for a seamless loop."}),
            },
            "optional": {
                "latent_b": socket(T.LATENT, "End code(s); its codes are appended to latent A's as keyframes."),
                "generator": socket(T.GENERATOR, "Needed for slerp (maps the interpolated z codes)."),
            },
        }

    def interpolate(self, latent_a, frames: int, mode: str, easing: str, loop: bool, latent_b=None, generator=None):
        from nada_core.editing.interpolate import interpolate_latents
        from nada_core.editing.latents import Latents

        keys = latent_a if latent_b is None else Latents.concat([latent_a, latent_b])
        return (interpolate_latents(keys, frames, mode=mode, easing=easing, loop=loop, G=generator),)


@register("NADA Style Mix")
class NadaStyleMix:
    DESCRIPTION = ("Mixes two sets of codes: the chosen W+ layers come from latent A, the others from latent B "
                   "(e.g. coarse from A = A's pose and shape with B's colours and texture).")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The mixed codes (a single code on one side is applied to every code on the other).",)
    FUNCTION = "mix"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent_a": socket(T.LATENT, "Codes that give the chosen layers."),
                "latent_b": socket(T.LATENT, "Codes that give all other layers."),
                "layers_from_a": string_input("coarse", LAYERS_TOOLTIP),
            }
        }

    def mix(self, latent_a, latent_b, layers_from_a: str):
        from nada_core.editing.interpolate import style_mix

        return (style_mix(latent_a, latent_b, layers_from_a),)
