"""The socket types this pack adds to ComfyUI, and what travels through them.

Ours (names no other pack uses for another payload, so ComfyUI never lets a user link a
foreign object into a NADA input):

- ``STYLEGAN_GENERATOR``: a ``nada_core.models.stylegan2.Generator`` (eval mode, on ComfyUI's device),
  carrying ``metadata`` (dict) and ``source_sha256`` (str). Nodes never modify one they receive:
  ComfyUI caches outputs and hands the same object to every consumer.
- ``NADA_LATENT``: a ``nada_core.editing.latents.Latents`` (``ws [N, num_ws, w_dim]`` plus lineage,
  provenance, optional z codes and noise maps).
- ``NADA_CLIP``: a ``nada_core.guidance.clip.ClipModel`` or ``ClipEnsemble`` (one or several CLIP guides).
- ``NADA_ENCODER``: a ``nada_core.encoders.Encoder`` (e4e / pSp / ReStyle, eval mode, ComfyUI's device).
- ``NADA_DIRECTION``: the CLIP-space direction from ``nada_core.guidance.directions`` (from text or images),
  which steers *training*; a ``DirectionSet`` (one direction per target line of NADA Text Direction)
  trains one compact domain per target.
- ``NADA_DIRECTIONS``: latent *editing* directions in W (not CLIP space): a
  ``nada_core.editing.semantic.Directions`` (``vectors [K, w_dim]``, ``values [K]``, method
  sefa/ganspace/file, default W+ layers, lineage) from NADA Find Directions or NADA Load Direction;
  NADA Apply Direction / NADA Direction Sweep move latents along one of them.
- ``NADA_DOMAIN``: a compact ``nada_core.domains.Domain`` (a few kilobytes of style vectors), or a
  ``DomainSet`` (one per target of a multi-target NADA Train run; NADA Pick Domain selects one).
  A generator with domains applied (NADA Apply Domain) is a light copy sharing the base's weights.
- Built-in ``IMAGE``: ``[B, H, W, C]`` float32 in [0, 1] on the CPU; ``STRING``; ``INT``...

Theirs (spacepxl/ComfyUI-StyleGan and its fork dfl/ComfyUI-StyleGan), used only by the interop
nodes (``nodes/interop_nodes.py``) that translate between the packs:

- ``STYLEGAN_LATENT``: a raw ``torch.Tensor`` ``[B, num_ws, w_dim]`` of W+ codes (on their model's device).
- ``STYLEGAN``: an NVIDIA stylegan2-ada/stylegan3 ``Generator`` ``torch.nn.Module`` unpickled with
  NVIDIA's code; we only read its tensors and constructor arguments, never call it.
"""

GENERATOR = "STYLEGAN_GENERATOR"
LATENT = "NADA_LATENT"
CLIP = "NADA_CLIP"
DIRECTION = "NADA_DIRECTION"  # CLIP space (training)
EDIT_DIRECTIONS = "NADA_DIRECTIONS"  # latent W space (editing)
ENCODER = "NADA_ENCODER"
DOMAIN = "NADA_DOMAIN"
IMAGE = "IMAGE"
STRING = "STRING"
INT = "INT"
FLOAT = "FLOAT"
BOOLEAN = "BOOLEAN"

CUSTOM_TYPES = (GENERATOR, LATENT, CLIP, DIRECTION, EDIT_DIRECTIONS, ENCODER, DOMAIN)

# The other StyleGAN packs' socket types (see the module docstring).
FOREIGN_LATENT = "STYLEGAN_LATENT"
FOREIGN_GENERATOR = "STYLEGAN"
FOREIGN_TYPES = (FOREIGN_LATENT, FOREIGN_GENERATOR)
