"""Latent editing nodes: find (SeFa/GANSpace) or load directions, apply one, sweep its strength.

The ``NADA_DIRECTIONS`` socket carries latent editing directions in W
(:class:`nada_core.editing.semantic.Directions`), not the CLIP-space ``NADA_DIRECTION`` of training.
"""

from __future__ import annotations

from . import comfy_bridge, paths
from . import types as T
from .common import CATEGORY_LATENT, combo, int_input, register, socket, string_input
from .latent_nodes import NOISE_MODES, NOISE_TOOLTIP, render_to_comfy

INDEX_TOOLTIP = ("Which direction of the set: 0 = the strongest SeFa/GANSpace direction (the largest eigenvalue or "
                 "spread), 1 the next...; a file with one boundary has only 0.")
LAYERS_TOOLTIP = ("W+ entries to edit: empty = the direction's own layers (those it was found for) or all; 'all', "
                  "'coarse' (0-3: pose, shape), 'middle', 'fine' (colour), or entries like '0-5'.")


def _edit_input(name: str):
    from nada_core.settings import EDIT

    return EDIT.node_input(name)


def _summary(directions) -> str:
    vals = ", ".join(f"{directions.label(i)}={float(v):.4g}" for i, v in enumerate(directions.values[:10]))
    more = f" (+{len(directions) - 10} more)" if len(directions) > 10 else ""
    what = {"sefa": "eigenvalues", "ganspace": "std of W", "file": "norms"}[directions.method]
    layers = "all" if directions.layers is None else ",".join(map(str, directions.layers))
    return f"{len(directions)} {directions.method} direction(s), layers {layers}; {what}: {vals}{more}"


def _layers(text: str):
    text = (text or "").strip()
    return None if not text else text


@register("NADA Find Directions")
class NadaFindDirections:
    DESCRIPTION = ("Finds semantic editing directions (pose, age, smile... unlabelled, strongest first) of a generator "
                   "with no data: SeFa factorises its style weights in a blink; GANSpace runs a PCA of sampled codes. "
                   "Find them on the source generator: they edit every domain adapted from it.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.EDIT_DIRECTIONS, T.STRING)
    RETURN_NAMES = ("directions", "summary")
    OUTPUT_TOOLTIPS = ("Latent editing directions in W (unit vectors, strongest first).",
                       "The directions found and their strengths (eigenvalues or spreads).")
    FUNCTION = "find"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "Generator to analyse (the source generator of your adapted domains)."),
                "method": _edit_input("method"),
                "count": _edit_input("k"),
                "layers": string_input("all", "SeFa: W+ entries whose style weights are factorised and that the "
                                       "directions edit ('all', 'coarse', '0-5'...). GANSpace always uses all."),
                "torgb": _edit_input("torgb"),
                "samples": _edit_input("n_samples"),
                "seed": _edit_input("seed"),
            }
        }

    def find(self, generator, method: str, count: int, layers: str, torgb: str, samples: int, seed: int):
        from nada_core.editing.semantic import ganspace_directions, sefa_directions
        from nada_core.errors import Interrupted

        if method == "sefa":
            dirs = sefa_directions(generator, layers=_layers(layers), k=count, torgb=torgb)
        else:
            bar = comfy_bridge.Progress(samples)
            dirs = ganspace_directions(generator, n_samples=samples, k=count, seed=seed,
                                       on_progress=lambda done, total: bar.update(done),
                                       should_stop=comfy_bridge.interrupt_requested)
            if dirs is None:  # pragma: no cover - ganspace raises Interrupted instead
                raise Interrupted("stopped")
        return (dirs, _summary(dirs))


def _direction_choices() -> list[str]:
    return paths.list_models(paths.DIRECTIONS)


@register("NADA Load Direction")
class NadaLoadDirection:
    DESCRIPTION = ("Loads latent editing directions from models/stylegan/directions: InterFaceGAN boundaries "
                   "(.npy, or the .pt files of the official StyleGAN-NADA), plain vectors, or .safetensors files "
                   "from `nada edit --save-directions`. Nothing in a file is executed.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.EDIT_DIRECTIONS, T.STRING)
    RETURN_NAMES = ("directions", "summary")
    OUTPUT_TOOLTIPS = ("The direction(s) of the file.", "What the file holds.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "direction_file": combo(_direction_choices(), "Direction file in models/stylegan/directions "
                                        "(.npy, .npz, .pt, .pth, .safetensors)."),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, direction_file):
        try:
            paths.resolve_model(direction_file, paths.DIRECTIONS)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, direction_file, **_other_inputs):
        try:
            path = paths.resolve_model(direction_file, paths.DIRECTIONS)
        except paths.ModelNotFound:
            return ""
        return paths.fingerprint([path])  # no path in it: ComfyUI embeds it in saved images

    def load(self, direction_file: str):
        from nada_core.editing.direction_files import load_direction

        dirs = load_direction(paths.resolve_model(direction_file, paths.DIRECTIONS))
        return (dirs, _summary(dirs))


def _check_with(generator, latent, directions) -> None:
    from nada_core.editing.latents import check_compatible
    from nada_core.editing.semantic import check_directions_compatible

    if generator is not None:
        check_compatible(latent, generator)
        check_directions_compatible(directions, generator)
    elif directions.w_dim != latent.w_dim:
        from nada_core.errors import InputError

        raise InputError(f"the directions have {directions.w_dim} dimensions but the latents' W has {latent.w_dim}; "
                         "use directions found on this generator family")


@register("NADA Apply Direction")
class NadaApplyDirection:
    DESCRIPTION = ("Moves latent codes along one editing direction: w + strength x direction on the chosen W+ layers. "
                   "Render the result with the source or any adapted generator: the edit carries over.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The edited codes (same count as the input).",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent": socket(T.LATENT, "Codes to edit (from seeds, an inversion or a file)."),
                "directions": socket(T.EDIT_DIRECTIONS, "Editing directions (NADA Find Directions / Load Direction)."),
                "index": int_input(0, 0, 4095, INDEX_TOOLTIP),
                "strength": _edit_input("strength"),
                "layers": string_input("", LAYERS_TOOLTIP),
            },
            "optional": {
                "generator": socket(T.GENERATOR, "Optional: checks the latents and directions belong to this generator "
                                    "and expands plain W codes to its W+ layers."),
            },
        }

    def apply(self, latent, directions, index: int, strength: float, layers: str, generator=None):
        from nada_core.editing.semantic import edit

        _check_with(generator, latent, directions)
        if generator is not None:
            latent = latent.broadcast(generator.num_ws)
        return (edit(latent, directions, strength, layers=_layers(layers), index=index),)


@register("NADA Direction Sweep")
class NadaDirectionSweep:
    DESCRIPTION = ("Renders every code at a row of strengths along one direction (e.g. -3 to 3): an IMAGE batch, "
                   "code by code, ready for a grid or Save Animated WEBP; the swept codes come out too, to render "
                   "the same sweep with an adapted generator.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.IMAGE, T.LATENT)
    RETURN_NAMES = ("images", "latent")
    OUTPUT_TOOLTIPS = ("codes x strengths images: code 0 at each strength, then code 1...",
                       "The swept codes, in the same order as the images.")
    FUNCTION = "sweep"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "Generator that renders the sweep (source or adapted)."),
                "latent": socket(T.LATENT, "Codes to sweep."),
                "directions": socket(T.EDIT_DIRECTIONS, "Editing directions (NADA Find Directions / Load Direction)."),
                "index": int_input(0, 0, 4095, INDEX_TOOLTIP),
                "strengths": _edit_input("strengths"),
                "layers": string_input("", LAYERS_TOOLTIP),
                "noise_mode": combo(NOISE_MODES, NOISE_TOOLTIP, default="const"),
            }
        }

    def sweep(self, generator, latent, directions, index: int, strengths: str, layers: str, noise_mode: str):
        from nada_core.editing.semantic import sweep

        _check_with(generator, latent, directions)
        codes = sweep(latent.broadcast(generator.num_ws), directions, strengths, layers=_layers(layers), index=index)
        return (render_to_comfy(generator, codes, noise_mode), codes)
