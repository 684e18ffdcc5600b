"""CLIP models that guide training: offline-first loading plus differentiable encoders.

A CLIP model is named by a *spec* string (see :func:`load_clip`):

- ``"ViT-B-32:/models/open_clip/vit-b-32.safetensors"``: an open_clip architecture name and a local
  weights file (``.safetensors``, or a ``.bin``/``.pt``/``.pth`` state dict, read with
  ``torch.load(weights_only=True)``);
- ``"/models/open_clip/CLIP-ViT-B-16-laion2B-s34B-b88K"``: a folder in the Hugging Face layout
  (``open_clip_config.json`` plus ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``);
- ``"/models/clip/ViT-B-32.pt"``: one of OpenAI's original TorchScript files (or a state dict in
  OpenAI's layout). The weights are read from the archive with a restricted unpickler; no TorchScript
  code is run. The architecture is inferred from the weights;
- ``"ViT-B-32:openai"``, ``"ViT-B-16:laion2b_s34b_b88k"``, ``"hf-hub:org/repo"``: download by tag.
  Needs an internet connection; offline it fails within a few seconds with a message saying
  which files to download and where to put them.

OpenAI's weights (and some LAION-400M / MetaCLIP ones) were trained with QuickGELU. The
``-quickgelu`` variant of the architecture is picked automatically for the ``openai`` tag,
OpenAI's files, Hugging Face configs that say ``quick_gelu`` and hub folders named ``*openai*``
whose config is silent; for a bare weights file name the variant yourself
(``ViT-B-32-quickgelu:/path/file.safetensors``) or pass ``quick_gelu=True``.

Images: :meth:`ClipModel.encode_image` takes generator output ``[N, C, H, W]`` in [-1, 1] of any
size and reproduces open_clip's own PIL preprocessing (shortest-side bicubic resize with
antialiasing, centre crop, mean/std normalisation) on tensors, so gradients reach the generator.

Modules (one job each): ``spec`` (parsing spec strings), ``weights`` (reading weight files, their
layout and shape facts), ``torchscript`` (OpenAI's TorchScript archives), ``registry`` (open_clip's
architecture names and configs), ``build`` (building and filling open_clip models), ``preprocess``
(tensor preprocessing), ``model`` (:class:`ClipModel`, :class:`ClipEnsemble`), ``hub`` (hub cache and
downloads), ``factory`` (:func:`load_clip` and the per-kind loaders).
"""

from __future__ import annotations

# The package is a set of one-job modules; this file only re-exports the public names.
# Private helpers stay in their modules: patch them there (e.g. ``clip.hub._probe``).
from .factory import load_clip, load_clip_ensemble
from .hub import PROBE_TIMEOUT_S  # noqa: F401  (public constants, outside __all__ as before)
from .model import ClipEnsemble, ClipModel, as_ensemble
from .preprocess import OPENAI_MEAN, OPENAI_STD, Preprocess, preprocess_unit_images
from .registry import architectures_matching, list_architectures, resolve_architecture
from .spec import HF_CONFIG_NAME, HF_WEIGHT_NAMES, MODELS_HINT, ClipSpec, parse_clip_spec  # noqa: F401
from .torchscript import is_torchscript_archive, read_torchscript_state_dict
from .weights import architecture_of_weights, read_state_dict

__all__ = [
    "ClipModel", "ClipEnsemble", "ClipSpec", "Preprocess", "as_ensemble", "load_clip", "load_clip_ensemble",
    "parse_clip_spec", "read_state_dict", "read_torchscript_state_dict", "is_torchscript_archive",
    "preprocess_unit_images", "architecture_of_weights", "architectures_matching", "resolve_architecture",
    "list_architectures", "OPENAI_MEAN", "OPENAI_STD",
]
