"""Nodes that connect this pack with spacepxl/ComfyUI-StyleGan and dfl/ComfyUI-StyleGan.

Those packs pass a raw ``torch.Tensor`` ``[B, num_ws, w_dim]`` as ``STYLEGAN_LATENT`` and an NVIDIA
generator module as ``STYLEGAN``; ours are different objects under names of our own
(``nodes/types.py``), so ComfyUI never links one into the other by accident. These nodes translate
explicitly: their latents into ours, ours into theirs, and their generator's weights into one of
our generators (read from its tensors and constructor arguments; nothing of it is executed).
"""

from __future__ import annotations

from . import comfy_bridge
from . import types as T
from .common import CATEGORY_GENERATOR, CATEGORY_LATENT, register, socket

_THEIR_PACKS = "ComfyUI-StyleGan (spacepxl/dfl)"


@register("NADA Generator From StyleGAN")
class NadaGeneratorFromStyleGAN:
    DESCRIPTION = (f"Turns the STYLEGAN model of {_THEIR_PACKS} (an NVIDIA StyleGAN2-ADA generator) into a NADA "
                   "generator with the same weights, for training, inversion and sampling here. Only its weights "
                   "and settings are read; StyleGAN3 and class-conditional models are refused.")
    CATEGORY = CATEGORY_GENERATOR
    RETURN_TYPES = (T.GENERATOR,)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The same generator as a NADA generator (its latents match the other pack's).",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stylegan_model": socket(T.FOREIGN_GENERATOR, f"The model from {_THEIR_PACKS}'s Load StyleGAN Model."),
            }
        }

    def convert(self, stylegan_model):
        from nada_core.formats.nvidia_module import generator_from_nvidia_module

        return (generator_from_nvidia_module(stylegan_model, device=comfy_bridge.torch_device()),)


@register("NADA Latent From StyleGAN Latent")
class NadaLatentFromStyleGAN:
    DESCRIPTION = (f"Turns a STYLEGAN_LATENT of {_THEIR_PACKS} (W+ codes from its Generate or Inversion nodes) into "
                   "NADA latent codes, to render them with NADA Render in an adapted generator.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.LATENT,)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The same codes as NADA latents.",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stylegan_latent": socket(T.FOREIGN_LATENT, f"Codes [B, num_ws, w_dim] from {_THEIR_PACKS}."),
            },
            "optional": {
                "generator": socket(T.GENERATOR, "The NADA generator these codes belong to (e.g. NADA Load Generator "
                                    "on the same .pkl): checks the sizes and ties the codes to its lineage, so "
                                    "adapted generators of other sources refuse them."),
            },
        }

    def convert(self, stylegan_latent, generator=None):
        from nada_core.editing.raw_latents import latents_from_tensor

        return (latents_from_tensor(stylegan_latent, generator),)


@register("NADA Latent To StyleGAN Latent")
class NadaLatentToStyleGAN:
    DESCRIPTION = (f"Hands NADA latent codes to {_THEIR_PACKS} as its STYLEGAN_LATENT (a plain W+ tensor), e.g. "
                   "codes of an inverted photo for its StyleGAN Sampler. Noise maps and z codes are not carried.")
    CATEGORY = CATEGORY_LATENT
    RETURN_TYPES = (T.FOREIGN_LATENT,)
    RETURN_NAMES = ("stylegan_latent",)
    OUTPUT_TOOLTIPS = ("The codes as a [B, num_ws, w_dim] tensor on the model's (or ComfyUI's) device.",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "latent": socket(T.LATENT, "NADA codes (Latent From Seeds, Invert Image, Load Latent...)."),
            },
            "optional": {
                "stylegan_model": socket(T.FOREIGN_GENERATOR, "The other pack's model that will draw them: the codes "
                                         "are checked against its sizes and put on its device."),
            },
        }

    def convert(self, latent, stylegan_model=None):
        from nada_core.editing.raw_latents import latents_to_tensor
        from nada_core.errors import InputError
        from nada_core.formats.nvidia_module import nvidia_module_layout

        if stylegan_model is None:
            return (latents_to_tensor(latent, device=comfy_bridge.torch_device()),)
        layout = nvidia_module_layout(stylegan_model)
        if latent.w_dim != layout["w_dim"] or latent.num_ws not in (1, layout["num_ws"]):
            raise InputError(f"latent codes [N, {latent.num_ws}, {latent.w_dim}] do not fit that StyleGAN model "
                             f"(needs [N, {layout['num_ws']}, {layout['w_dim']}]); use codes of a generator of "
                             f"the same resolution")
        return (latents_to_tensor(latent, num_ws=layout["num_ws"], device=layout["device"]),)
