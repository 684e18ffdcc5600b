"""Inversion node: find the latent codes of real photos, to re-render them in adapted domains."""

from __future__ import annotations

from . import comfy_bridge
from . import types as T
from .common import CATEGORY_LATENT, combo, int_input, register, seed_input, socket

FIT_MODES = ["crop", "pad", "stretch"]
FIT_TOOLTIP = ("How a photo that is not square becomes the generator's square: crop = centre square (best for "
               "portraits), pad = whole photo on white, stretch = whole photo squeezed.")
PREVIEW_EVERY = 25  # steps between live previews on the node


@register("NADA Invert Image")
class NadaInvertImage:
    DESCRIPTION = ("Finds latent codes that make the generator reproduce your photo(s) (GAN inversion). Invert in the "
                   "SOURCE generator, then render the codes with an adapted one to see the photo in the new domain.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT, T.IMAGE)
    RETURN_NAMES = ("latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("One code per input image.", "What the generator makes of those codes (compare with the input).")
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The source generator the photo belongs to (e.g. FFHQ for faces)."),
                "image": socket(T.IMAGE, "Photo(s) to invert; any size, RGB/RGBA/greyscale. Faces work best aligned and centred."),
                "space": combo(["w+", "w"], "w+: one code per layer, closest reconstruction. w: one code for all layers, "
                               "less exact but carries over to adapted domains most faithfully.", default="w+"),
                "steps": int_input(300, 1, 5000, "Optimisation steps (more = closer, slower)."),
                "fit": combo(FIT_MODES, FIT_TOOLTIP, default="crop"),
                "seed": seed_input("Seed of the optimisation's random noise (same seed = same result).", control=False),
            },
            "optional": {
                "clip": socket(T.CLIP, "Optional CLIP model: adds a semantic similarity term (needs a CLIP trained on "
                               "real photos; every model of the guide counts by its weight)."),
            },
        }

    def invert(self, generator, image, space: str, steps: int, fit: str, seed: int, clip=None):
        from PIL import Image
        from nada_core.media.images import make_grid, to_comfy, to_uint8
        from nada_core.editing.invert import InvertConfig, invert

        cfg = InvertConfig(space=space, steps=int(steps), fit=fit, seed=int(seed), preview_every=PREVIEW_EVERY)
        if clip is None:
            cfg.clip_weight = 0.0
        comfy_bridge.free_memory()  # inversion back-propagates through the generator: make room
        bar = comfy_bridge.Progress(cfg.steps)

        def on_progress(step, total, losses, preview):
            pil = None
            if preview is not None:
                pil = Image.fromarray(to_uint8(make_grid(preview, pad=2, pad_value=1.0))[0])
            bar.update(step, pil)

        result = invert(generator, image, cfg, clip=clip, layout="comfy", on_progress=on_progress,
                        should_stop=comfy_bridge.interrupt_requested)
        if result.interrupted:
            comfy_bridge.raise_interrupted(f"inversion stopped at step {result.steps_done} of {cfg.steps}")
        return (result.latents, to_comfy(result.reconstructions))
