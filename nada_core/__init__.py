"""ComfyUI-NADA engine: StyleGAN2 + CLIP-guided domain adaptation in plain PyTorch.

Nothing here imports ComfyUI. Submodules are imported lazily by their users so that
``import nada_core`` stays cheap (ComfyUI imports every node pack at start-up).

Layout (one folder per part of the method):

- ``models``    generator networks (``stylegan2``)
- ``formats``   checkpoint files: rosinality ``.pt``, NVIDIA ``.pkl``, our ``.safetensors``,
  and the one restricted unpickler
- ``guidance``  CLIP loading, text/image directions, losses
- ``training``  layer freezing, the trainer, metrics, the training run
- ``editing``   latents, inversion, interpolation and blending
- ``media``     image files, image preparation, animations, plots
- ``commands``  one module per ``nada`` sub-command

The flat module names of earlier releases (``nada_core.stylegan2``, ``nada_core.clip``,
``nada_core.queue`` ...) stay importable as aliases of their new homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

from .errors import NadaError  # noqa: F401,E402  (light: no torch import)

# Old flat module -> new home. Kept so scripts written against 0.1 keep importing.
_MOVED = {
    "stylegan2": "nada_core.models.stylegan2",
    "checkpoints": "nada_core.formats.checkpoints",
    "checkpoint_common": "nada_core.formats.common",
    "rosinality_format": "nada_core.formats.rosinality",
    "nvidia_format": "nada_core.formats.nvidia",
    "safe_unpickle": "nada_core.formats.safe_unpickle",
    "clip": "nada_core.guidance.clip",
    "directions": "nada_core.guidance.directions",
    "losses": "nada_core.guidance.losses",
    "freezing": "nada_core.training.freezing",
    "trainer": "nada_core.training.trainer",
    "metrics": "nada_core.training.metrics",
    "demo_training": "nada_core.training.demo",
    "latents": "nada_core.editing.latents",
    "invert": "nada_core.editing.invert",
    "interpolate": "nada_core.editing.interpolate",
    "images": "nada_core.media.images",
    "image_prep": "nada_core.media.image_prep",
    "animation": "nada_core.media.animation",
    "plots": "nada_core.media.plots",
    "queue": "nada_queue",
}

# Public names reachable as ``nada_core.NAME`` (imported on first use, not at start-up).
_PUBLIC = {
    "Generator": "nada_core.models.stylegan2",
    "GeneratorConfig": "nada_core.models.stylegan2",
    "StyleGAN3Generator": "nada_core.models.stylegan3",
    "StyleGAN3Config": "nada_core.models.stylegan3",
    "load_generator": "nada_core.formats.checkpoints",
    "save_generator": "nada_core.formats.checkpoints",
    "load_clip": "nada_core.guidance.clip",
    "NadaTrainer": "nada_core.training.trainer",
    "TrainConfig": "nada_core.training.trainer",
}


def _new_name(fullname: str) -> str | None:
    prefix = __name__ + "."
    if not fullname.startswith(prefix):
        return None
    head, _, rest = fullname[len(prefix):].partition(".")
    target = _MOVED.get(head)
    if target is None:
        return None
    return target + ("." + rest if rest else "")


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # the real module object, so both names share one module
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:
        pass


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = _new_name(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _AliasFinder())  # before the path finder: old names must never load a second copy


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
