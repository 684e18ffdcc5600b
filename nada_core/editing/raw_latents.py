"""Raw W+ tensors (the other StyleGAN node packs' ``STYLEGAN_LATENT``) <-> our :class:`Latents`.

spacepxl/ComfyUI-StyleGan and dfl/ComfyUI-StyleGan pass latent codes as a bare ``torch.Tensor``
``[B, num_ws, w_dim]`` (the output of NVIDIA's ``G.mapping``), on their model's device, with no
record of which generator made them. Ours carry the lineage and provenance too
(:mod:`nada_core.editing.latents`). These two functions translate; z codes and noise maps, which
a raw tensor cannot hold, are dropped on the way out.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .latents import Latents, _space_of, generator_lineage

MAX_RAW_CODES = 1 << 16  # codes in one tensor; a batch from a node pack holds a few hundred at most


def latents_from_tensor(ws: Any, G: Any = None, note: str = "STYLEGAN_LATENT") -> Latents:
    """:class:`Latents` from a raw ``[B, num_ws, w_dim]`` (or ``[num_ws, w_dim]``, one code) tensor.

    With ``G`` (one of our generators), the codes must fit it (``w_dim``, ``num_ws``) and take its
    lineage, so they render in every generator adapted from the same source; without, the lineage
    is unknown (rendering works, unverified). Values are copied to float32 on the CPU.
    """
    if not isinstance(ws, torch.Tensor):
        raise InputError(f"expected a latent tensor [B, num_ws, w_dim] from the other StyleGAN pack, "
                         f"got {type(ws).__name__}")
    if ws.ndim == 2:
        ws = ws[None]
    if ws.ndim != 3 or ws.shape[0] < 1 or ws.shape[1] < 1 or ws.shape[2] < 1:
        raise InputError(f"a StyleGAN latent must have shape [B, num_ws, w_dim], got {list(ws.shape)}")
    if ws.shape[0] > MAX_RAW_CODES:
        raise InputError(f"the latent batch holds {ws.shape[0]} codes, over {MAX_RAW_CODES}; pick a smaller batch")
    if not (ws.is_floating_point() and bool(torch.isfinite(ws).all())):
        raise InputError("the latent codes are not finite floats (NaN/inf or integers); recompute them")
    with torch.inference_mode(False):
        codes = ws.detach().to("cpu", torch.float32, copy=True)
    lineage = None
    if G is not None:
        if codes.shape[2] != G.w_dim or codes.shape[1] not in (1, G.num_ws):
            raise InputError(f"latent codes of shape {list(codes.shape)} do not fit this generator (needs "
                             f"[B, {G.num_ws}, {G.w_dim}], a {G.img_resolution} px model); connect the generator "
                             f"the codes were made with")
        lineage = generator_lineage(G)
    return Latents(codes, _space_of(codes), lineage, {"source": note, "count": int(codes.shape[0])})


def latents_to_tensor(latents: Latents, num_ws: int | None = None, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The codes as a raw ``[B, num_ws, w_dim]`` tensor on ``device`` (a plain W code is broadcast to
    ``num_ws`` entries when given). A new tensor: the other pack may modify it freely."""
    if not isinstance(latents, Latents):
        raise InputError(f"expected NADA latents, got {type(latents).__name__}")
    if num_ws is not None:
        latents = latents.broadcast(int(num_ws))
    return latents.ws.detach().to(device=device, dtype=dtype, copy=True)
