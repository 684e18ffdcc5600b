"""ComfyUI-NADA: StyleGAN-NADA (CLIP-guided domain adaptation of StyleGAN2) as ComfyUI nodes.

ComfyUI imports this file when the repository sits in ``ComfyUI/custom_nodes/``. It exposes the
node mappings and nothing heavy: torch and the models load only when a node runs.
"""

import os
import sys

# The engine package ``nada_core`` lives next to this file; make it importable by its own name
# (appended, so it never shadows ComfyUI's modules).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
