"""The socket types this pack adds to ComfyUI, and what travels through them.

- ``STYLEGAN_GENERATOR``: a ``nada_core.models.stylegan2.Generator`` (eval mode, on ComfyUI's device),
  carrying ``metadata`` (dict) and ``source_sha256`` (str). Nodes never modify one they receive:
  ComfyUI caches outputs and hands the same object to every consumer.
- ``STYLEGAN_LATENT``: a ``nada_core.editing.latents.Latents`` (``ws [N, num_ws, w_dim]`` plus labels).
- ``NADA_CLIP``: a ``nada_core.guidance.clip.ClipModel`` or ``ClipEnsemble`` (one or several CLIP guides).
- ``NADA_DIRECTION``: the CLIP-space direction from ``nada_core.guidance.directions`` (from text or images),
  which steers *training*.
- ``NADA_DIRECTIONS``: latent *editing* directions in W (not CLIP space): a
  ``nada_core.editing.semantic.Directions`` (``vectors [K, w_dim]``, ``values [K]``, method
  sefa/ganspace/file, default W+ layers, lineage) from NADA Find Directions or NADA Load Direction;
  NADA Apply Direction / NADA Direction Sweep move latents along one of them.
- Built-in ``IMAGE``: ``[B, H, W, C]`` float32 in [0, 1] on the CPU; ``STRING``; ``INT``...
"""

GENERATOR = "STYLEGAN_GENERATOR"
LATENT = "STYLEGAN_LATENT"
CLIP = "NADA_CLIP"
DIRECTION = "NADA_DIRECTION"  # CLIP space (training)
EDIT_DIRECTIONS = "NADA_DIRECTIONS"  # latent W space (editing)
IMAGE = "IMAGE"
STRING = "STRING"
INT = "INT"
FLOAT = "FLOAT"
BOOLEAN = "BOOLEAN"

CUSTOM_TYPES = (GENERATOR, LATENT, CLIP, DIRECTION, EDIT_DIRECTIONS)
