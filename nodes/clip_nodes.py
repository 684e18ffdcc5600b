"""CLIP nodes: load CLIP guides, and turn text or example images into a CLIP-space direction."""

from __future__ import annotations

from . import comfy_bridge, paths
from . import types as T
from .common import (
    CATEGORY_LOADERS,
    CATEGORY_TRAIN,
    bool_input,
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

NONE = "none"
PRECISIONS = ["fp32", "fp16", "bf16"]
MODEL_NAME_TOOLTIP = ("open_clip architecture of a plain weights file, e.g. ViT-B-32, ViT-B-16, ViT-L-14 (add "
                      "-quickgelu for OpenAI-trained weights converted to open_clip). Ignored for Hugging Face "
                      "folders and OpenAI .pt files, which say what they are.")


def clip_spec(clip_name: str, model_name: str) -> str:
    """Dropdown choice + architecture -> a ``nada_core.guidance.clip.load_clip`` spec string."""
    path = paths.resolve_model(clip_name, paths.OPEN_CLIP, allow_dir=True)
    arch = (model_name or "").strip()
    if path.is_dir() or not arch or arch.lower() == "auto" or (path.parent / paths.OPEN_CLIP_CONFIG).is_file():
        return str(path)
    return f"{arch}:{path}"


def _clip_files(name: str) -> list:
    """The files of a CLIP choice (a weights file, or every file of a Hugging Face folder); [] if missing."""
    try:
        path = paths.resolve_model(name, paths.OPEN_CLIP, allow_dir=True)
    except paths.ModelNotFound:
        return []
    return [d / f for d, _, names in paths.walk_folder(path) for f in names] if path.is_dir() else [path]


@register("NADA Load CLIP")
class NadaLoadCLIP:
    DESCRIPTION = ("Loads the CLIP model(s) that guide training, from ComfyUI/models/open_clip: a weights file "
                   "(.safetensors, .bin, .pt) or a Hugging Face folder (with open_clip_config.json). A second model "
                   "can guide together with the first (the paper used ViT-B-32 + ViT-B-16 for shape changes).")
    CATEGORY = CATEGORY_LOADERS
    RETURN_TYPES = (T.CLIP,)
    RETURN_NAMES = ("clip",)
    OUTPUT_TOOLTIPS = ("The CLIP guide(s) with their weights.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        choices = paths.list_models(paths.OPEN_CLIP)
        return {
            "required": {
                "clip_name": combo(choices, "CLIP weights file or Hugging Face folder in ComfyUI/models/open_clip."),
                "model_name": string_input("ViT-B-32", MODEL_NAME_TOOLTIP),
                "weight": float_input(1.0, 0.0, 10.0, 0.05, "Loss weight of this CLIP model."),
                "precision": combo(PRECISIONS, "fp32 is exact; fp16/bf16 halve the memory on a GPU.", default="fp32"),
            },
            "optional": {
                "clip_name_2": combo([NONE] + choices, "Optional second CLIP model guiding together with the first.",
                                     default=NONE),
                "model_name_2": string_input("ViT-B-16", "Architecture of the second model (see model_name)."),
                "weight_2": float_input(1.0, 0.0, 10.0, 0.05, "Loss weight of the second model (0 = not used)."),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, clip_name):
        # Only clip_name: ComfyUI attaches the message to every input this function takes. So
        # clip_name_2 keeps ComfyUI's own list check, and load() says clearly what is wrong with it.
        try:
            paths.resolve_model(clip_name, paths.OPEN_CLIP, allow_dir=True)
        except paths.ModelNotFound as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    @classmethod
    def IS_CHANGED(cls, clip_name, clip_name_2=NONE, **_other_inputs):
        files = _clip_files(clip_name)
        if clip_name_2 and clip_name_2 != NONE:
            files += _clip_files(clip_name_2)
        return paths.fingerprint(files) if files else ""  # no path in it: it ends up in saved images

    def load(self, clip_name: str, model_name: str, weight: float, precision: str,
             clip_name_2: str = NONE, model_name_2: str = "", weight_2: float = 1.0):
        from nada_core.guidance.clip import load_clip_ensemble

        specs = [(clip_spec(clip_name, model_name), float(weight))]
        if clip_name_2 and clip_name_2 != NONE:
            same = (paths.resolve_model(clip_name, paths.OPEN_CLIP, allow_dir=True)
                    == paths.resolve_model(clip_name_2, paths.OPEN_CLIP, allow_dir=True))
            if same:
                raise node_error(self, f"clip_name_2 is the same model as clip_name ({clip_name}); pick a different "
                                       "second model, or 'none' and a higher weight for one model")
            specs.append((clip_spec(clip_name_2, model_name_2), float(weight_2)))
        return (load_clip_ensemble(specs, device=comfy_bridge.torch_device(), precision=precision),)


@register("NADA Text Direction")
class NadaTextDirection:
    DESCRIPTION = ("Describes the domain change in words: from what the generator makes now (source, e.g. 'photo') "
                   "to what it should make (target, e.g. 'pencil sketch'). Each CLIP model gets its own direction. "
                   "Several targets, one per line, make NADA Train (adapt domain or stylespace) train one compact "
                   "domain per target in the same run.")
    CATEGORY = CATEGORY_TRAIN
    RETURN_TYPES = (T.DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("The CLIP-space direction source -> target, for NADA Train and NADA Metrics (several target "
                       "lines: one direction per target, for NADA Train with a compact adapt).",)
    FUNCTION = "direction"

    @classmethod
    def INPUT_TYPES(cls):
        from nada_core.guidance.directions import MAX_TARGETS

        return {
            "required": {
                "clip": socket(T.CLIP, "The CLIP guide(s) from NADA Load CLIP."),
                "source_text": string_input("photo", "What the generator makes now, in a few words (e.g. 'photo', "
                                            "'human', 'dog')."),
                "target_text": string_input("pencil sketch", "What it should make (e.g. 'pencil sketch', 'Pixar "
                                            "character', 'werewolf'). Keep it parallel to the source text. One "
                                            f"target per line (up to {MAX_TARGETS}) trains one compact domain per "
                                            "target in one NADA Train run (adapt domain or stylespace).",
                                            multiline=True),
                "templates": bool_input(True, "Average each prompt over CLIP's 79 ImageNet phrasings ('a photo of a "
                                        "{}', ...) for a steadier direction, as the official StyleGAN-NADA code "
                                        "does, or use the prompts exactly as written.",
                                        on="averaged phrasings", off="as written"),
            }
        }

    def direction(self, clip, source_text: str, target_text: str, templates: bool):
        from nada_core.guidance.directions import text_directions

        # One line: the single direction as always; several lines: a DirectionSet (one per target).
        return (text_directions(clip, source_text, target_text, templates=bool(templates)),)


@register("NADA Image Direction")
class NadaImageDirection:
    DESCRIPTION = ("Describes the domain change with example images instead of words: from samples of the generator "
                   "to your examples of the target style (a few images are enough; paper appendix C).")
    CATEGORY = CATEGORY_TRAIN
    RETURN_TYPES = (T.DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("The CLIP-space direction source samples -> examples, for NADA Train and NADA Metrics.",)
    FUNCTION = "direction"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": socket(T.CLIP, "The CLIP guide(s) from NADA Load CLIP."),
                "generator": socket(T.GENERATOR, "The source generator; its samples stand for the source domain."),
                "images": socket(T.IMAGE, "Example images of the target domain (a batch; any size, alpha is put on white)."),
                "num_samples": int_input(16, 1, 256, "How many generator samples stand for the source domain (paper: 16)."),
                "seed": seed_input("First seed of those samples.", control=False),
                "truncation": float_input(1.0, 0.05, 2.0, 0.01, "Truncation psi of the source samples (1 = full variety)."),
            },
            "optional": {"class_index": class_input()},
        }

    def direction(self, clip, generator, images, num_samples: int, seed: int, truncation: float,
                  class_index: int = -1):
        from nada_core.guidance.directions import image_direction
        from nada_core.media.images import from_comfy

        bar = comfy_bridge.Progress(int(num_samples))
        return (image_direction(clip, from_comfy(images), generator, num_samples=int(num_samples), seed=int(seed),
                                truncation_psi=float(truncation), should_stop=comfy_bridge.interrupt_requested,
                                progress=lambda done, total: bar.update(done), class_index=class_index),)
