"""ComfyUI-NADA engine: StyleGAN2 + CLIP-guided domain adaptation in plain PyTorch.

Nothing here imports ComfyUI. Submodules are imported lazily by their users so that
``import nada_core`` stays cheap (ComfyUI imports every node pack at start-up).
"""

__version__ = "0.1.0"

from .errors import NadaError  # noqa: F401  (light: no torch import)
