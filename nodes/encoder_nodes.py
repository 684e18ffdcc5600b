"""Encoder nodes: load an e4e / pSp / ReStyle checkpoint and turn photos into latents in one pass."""

from __future__ import annotations

from nada_core.settings import ENCODE, INVERT  # light: stdlib only

from . import comfy_bridge, paths
from . import types as T
from .common import CATEGORY_LATENT, CATEGORY_LOADERS, combo, register, socket


@register("NADA Load Encoder")
class NadaLoadEncoder:
    DESCRIPTION = ("Loads an e4e, pSp or ReStyle encoder checkpoint from ComfyUI/models/encoders (e.g. "
                   "e4e_ffhq_encode.pt; read safely, nothing in the file is executed). Encoders turn an "
                   "FFHQ-aligned face photo into latent codes in about a second instead of minutes of inversion.")
    CATEGORY = CATEGORY_LOADERS
    RETURN_TYPES = (T.ENCODER,)
    RETURN_NAMES = ("encoder",)
    OUTPUT_TOOLTIPS = ("The encoder, for NADA Encode Image or as the starting point of NADA Invert Image.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"encoder_name": combo(
            paths.list_models(paths.ENCODERS),
            "Encoder checkpoint in ComfyUI/models/encoders: e4e_ffhq_encode.pt (best for editing), "
            "psp_ffhq_encode.pt, restyle_e4e_ffhq_encode.pt or restyle_psp_ffhq_encode.pt (iterative, closest).")}}

    @classmethod
    def VALIDATE_INPUTS(cls, encoder_name):
        try:
            paths.resolve_model(encoder_name, paths.ENCODERS)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, encoder_name, **_other_inputs):
        try:
            return paths.fingerprint([paths.resolve_model(encoder_name, paths.ENCODERS)])  # no path: it ends up in saved images
        except paths.ModelNotFound:
            return ""

    def load(self, encoder_name: str):
        from nada_core.encoders import load_encoder

        path = paths.resolve_model(encoder_name, paths.ENCODERS)
        return (load_encoder(path, device=comfy_bridge.torch_device()),)


def encode_for_node(encoder, generator, image, fit: str, iterations: int | None):
    """Encode a ComfyUI IMAGE batch with a progress bar; returns :class:`EncodedImages`."""
    from nada_core.encoders.apply import encode_images

    bar = comfy_bridge.Progress(int(image.shape[0]) if hasattr(image, "shape") else 1)
    return encode_images(encoder, image, generator, fit=fit, layout="comfy",
                         n_iters=iterations if encoder.iterative else None,
                         on_image=lambda done, total: bar.update(done),
                         should_stop=comfy_bridge.interrupt_requested)


@register("NADA Encode Image")
class NadaEncodeImage:
    DESCRIPTION = ("Turns photo(s) into latent codes with an encoder (one pass; ReStyle refines a few times) and "
                   "renders them with the generator. Use the SOURCE generator the encoder was trained for (FFHQ "
                   "for the face encoders); render the latent with an adapted generator to see the photo in its "
                   "domain. Faces must be aligned like FFHQ (see the README).")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT, T.IMAGE)
    RETURN_NAMES = ("latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("One W+ code per input image.", "What the generator makes of those codes (compare with the "
                       "input).")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The source generator the encoder was trained for (e.g. "
                                    "stylegan2-ffhq-config-f.pt); renders the reconstruction."),
                "encoder": socket(T.ENCODER, "From NADA Load Encoder."),
                "image": socket(T.IMAGE, "Photo(s) to encode; any size. Faces work only when aligned like FFHQ."),
                "fit": INVERT.node_input("fit"),
                "iterations": ENCODE.node_input("encoder_iters"),
            },
        }

    def encode(self, generator, encoder, image, fit: str, iterations: int):
        from nada_core.editing.latents import render
        from nada_core.media.images import to_comfy

        encoded = encode_for_node(encoder, generator, image, fit, ENCODE.check("encoder_iters", iterations))
        return (encoded.latents, to_comfy(render(generator, encoded.latents)))
