"""One-pass / iterative encoders from photos to W+ codes: e4e, pSp and ReStyle checkpoints.

``load_encoder(path) -> Encoder``; ``encoder.encode(images [N, 3, H, W] in [-1, 1]) -> ws [N, num_ws, w_dim]``.
See :mod:`nada_core.encoders.loading` (what is read and refused), :mod:`nada_core.encoders.encoder`
(preprocessing and the ReStyle loop) and :mod:`nada_core.encoders.layout` (the architecture).
"""

from .encoder import Encoder, EncoderInfo, resize_like_pil
from .loading import load_encoder

__all__ = ["Encoder", "EncoderInfo", "load_encoder", "resize_like_pil"]
