"""Inversion node: find the latent codes of real photos, to re-render them in adapted domains."""

from __future__ import annotations

from nada_core.settings import INVERT  # light: stdlib only

from . import comfy_bridge
from . import types as T
from .common import CATEGORY_LATENT, register, socket

# The fit choices and their help, as the settings table has them (also used by NADA Load Image).
FIT_MODES = list(INVERT["fit"].choices)
FIT_TOOLTIP = INVERT["fit"].help
PREVIEW_EVERY = 25  # steps between live previews on the node


def _seed_input() -> tuple:
    kind, opts = INVERT.node_input("seed")
    return (kind, {**opts, "control_after_generate": False})  # part of the recipe: not re-rolled per run


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
                # default, range/choices and tooltip from nada_core.settings.INVERT
                "space": INVERT.node_input("space"),
                "steps": INVERT.node_input("steps"),
                "fit": INVERT.node_input("fit"),
                "seed": _seed_input(),
            },
            "optional": {
                "clip": socket(T.CLIP, "Optional CLIP model: adds a semantic similarity term (needs a CLIP trained on "
                               "real photos; every model of the guide counts by its weight)."),
                "encoder": socket(T.ENCODER, "Optional encoder (NADA Load Encoder): the optimisation starts from its "
                                  "codes instead of the average face (closer and faster; ReStyle uses its default "
                                  "5 refinement steps)."),
                "class_index": INVERT.node_input("class_index"),
            },
        }

    def invert(self, generator, image, space: str, steps: int, fit: str, seed: int, clip=None, encoder=None,
               class_index: int = -1):
        from PIL import Image
        from nada_core.media.images import make_grid, to_comfy, to_uint8
        from nada_core.editing.invert import InvertConfig, invert

        cfg = InvertConfig(space=space, steps=steps, fit=fit, seed=seed, preview_every=PREVIEW_EVERY,
                           class_index=class_index,
                           **({"clip_weight": 0.0} if clip is None else {}))
        init = None
        if encoder is not None:
            from .encoder_nodes import encode_for_node

            init = encode_for_node(encoder, generator, image, fit, None).latents
        comfy_bridge.free_memory()  # inversion back-propagates through the generator: make room
        bar = comfy_bridge.Progress(cfg.steps)

        def on_progress(step, total, losses, preview):
            pil = None
            if preview is not None:
                pil = Image.fromarray(to_uint8(make_grid(preview, pad=2, pad_value=1.0))[0])
            bar.update(step, pil)

        result = invert(generator, image, cfg, clip=clip, init=init, layout="comfy", on_progress=on_progress,
                        should_stop=comfy_bridge.interrupt_requested)
        if result.interrupted:
            comfy_bridge.raise_interrupted(f"inversion stopped at step {result.steps_done} of {cfg.steps}")
        return (result.latents, to_comfy(result.reconstructions))
