"""The socket types this pack adds to ComfyUI, and what travels through them.

- ``STYLEGAN_GENERATOR``: a ``nada_core.models.stylegan2.Generator`` (eval mode, on ComfyUI's device),
  carrying ``metadata`` (dict) and ``source_sha256`` (str). Nodes never modify one they receive:
  ComfyUI caches outputs and hands the same object to every consumer.
- ``STYLEGAN_LATENT``: a ``nada_core.editing.latents.Latents`` (``ws [N, num_ws, w_dim]`` plus labels).
- ``NADA_CLIP``: a ``nada_core.guidance.clip.ClipModel`` or ``ClipEnsemble`` (one or several CLIP guides).
- ``NADA_DIRECTION``: the CLIP-space direction from ``nada_core.guidance.directions`` (from text or images).
- ``NADA_DOMAIN``: a compact ``nada_core.domains.Domain`` (a few kilobytes of style vectors).
  A generator with domains applied (NADA Apply Domain) is a light copy sharing the base's weights.
- Built-in ``IMAGE``: ``[B, H, W, C]`` float32 in [0, 1] on the CPU; ``STRING``; ``INT``...
"""

GENERATOR = "STYLEGAN_GENERATOR"
LATENT = "STYLEGAN_LATENT"
CLIP = "NADA_CLIP"
DIRECTION = "NADA_DIRECTION"
DOMAIN = "NADA_DOMAIN"
IMAGE = "IMAGE"
STRING = "STRING"
INT = "INT"
FLOAT = "FLOAT"
BOOLEAN = "BOOLEAN"

CUSTOM_TYPES = (GENERATOR, LATENT, CLIP, DIRECTION, DOMAIN)
