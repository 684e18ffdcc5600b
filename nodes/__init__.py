"""ComfyUI nodes for NADA: thin adapters from ComfyUI types to ``nada_core``.

Importing this package is cheap (no torch, no model loading): node modules import ``nada_core``
lazily inside their functions. Importing registers the ``stylegan``, ``open_clip``, ``encoders``,
``stylegan_directions`` and ``stylegan_domains`` model folders with ComfyUI when it is running.
"""

from __future__ import annotations

from . import paths
from .common import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

# Each import registers its nodes in the mappings above (order = menu order).
from . import generator_nodes  # noqa: F401,E402
from . import clip_nodes  # noqa: F401,E402
from . import train_nodes  # noqa: F401,E402
from . import latent_nodes  # noqa: F401,E402
from . import invert_nodes  # noqa: F401,E402
from . import encoder_nodes  # noqa: F401,E402
from . import image_nodes  # noqa: F401,E402
from . import edit_nodes  # noqa: F401,E402
from . import interop_nodes  # noqa: F401,E402
from . import domain_nodes  # noqa: F401,E402

paths.register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
