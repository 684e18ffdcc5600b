"""A loaded e4e / pSp / ReStyle encoder: photos in, W+ codes out, exactly as the encoders' own
inference code computes them.

Preprocessing follows their inference scripts (``transforms.Resize((256, 256))`` on the PIL
image, ``ToTensor``, ``Normalize(0.5, 0.5)``): a batch that is not already 256 x 256 is resized per
image with Pillow's bilinear filter on 8-bit pixels, which is what those scripts do to the photo
file; a 256 x 256 batch is used as given. Aspect ratio is not kept (the encoders expect FFHQ-aligned
square crops; see the README).

Codes: pSp adds ``latent_avg`` when it was trained with ``start_from_latent_avg``; e4e does the
same (its stand-alone loader always does). ReStyle iterates: step 0 feeds ``cat(image, avg_image)``
where ``avg_image`` is the decoder's render of ``latent_avg`` pooled to 256 px, and adds
``latent_avg``; step t feeds ``cat(image, pooled render of the previous codes)`` and adds the
previous codes. The renders use the decoder's stored noise maps (``randomize_noise=False``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .layout import EncoderLayout
from .network import EncoderNet

#: Side of the square the released encoders' inference transforms resize photos to.
INPUT_SIZE = 256
#: Side of the renders ReStyle feeds back (its ``face_pool = AdaptiveAvgPool2d((256, 256))``).
FEEDBACK_SIZE = 256
#: ReStyle's default number of refinement steps (``--n_iters_per_batch``).
RESTYLE_DEFAULT_ITERS = 5
MAX_ITERS = 100


@dataclasses.dataclass
class EncoderInfo:
    """Plain facts about a loaded encoder (for ``nada info``, node outputs and reports)."""

    encoder_type: str
    family: str  # "e4e", "psp", "restyle_e4e", "restyle_psp"
    backbone: str  # e.g. "IR-SE50"
    num_ws: int
    w_dim: int
    input_nc: int
    output_size: int | None
    adds_latent_avg: bool
    iterative: bool
    default_iters: int
    source_file: str
    source_sha256: str


def resize_like_pil(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, size, size]`` as the encoders' transforms do it:
    8-bit pixels resized by Pillow's bilinear filter, then scaled back to [-1, 1].

    Images already ``size x size`` are returned unchanged (Pillow would return a copy).
    """
    from PIL import Image

    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = []
    for img in images.detach().float().cpu():
        pixels = ((img.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        pil = Image.fromarray(np.ascontiguousarray(pixels), "RGB").resize((size, size), Image.BILINEAR)
        arr = torch.from_numpy(np.asarray(pil, dtype=np.float32).copy()).permute(2, 0, 1)
        out.append(arr / 127.5 - 1.0)
    return torch.stack(out).to(images.device)


class Encoder(torch.nn.Module):
    """One-pass (e4e, pSp) or iterative (ReStyle) encoder from photos to W+ codes.

    Attributes: ``net`` (:class:`~nada_core.encoders.network.EncoderNet`), ``latent_avg``
    (``[num_ws, w_dim]`` buffer, or None), ``decoder`` (the checkpoint's generator when it was
    loaded, else None), ``info`` (:class:`EncoderInfo`), ``opts`` (the checkpoint's options as
    plain data), ``input_size`` (256).
    """

    def __init__(self, layout: EncoderLayout, info: EncoderInfo, latent_avg: torch.Tensor | None,
                 opts: dict, decoder: Any = None, net: EncoderNet | None = None) -> None:
        super().__init__()
        self.net = net if net is not None else EncoderNet(layout)
        self.layout = layout
        self.info = info
        self.opts = dict(opts)
        self.register_buffer("latent_avg", None if latent_avg is None else latent_avg.float().clone())
        self.decoder = decoder
        self.input_size = INPUT_SIZE

    # -- facts ------------------------------------------------------------------------------------
    @property
    def num_ws(self) -> int:
        return self.layout.num_ws

    @property
    def w_dim(self) -> int:
        return self.layout.w_dim

    @property
    def iterative(self) -> bool:
        return self.info.iterative

    @property
    def device(self) -> torch.device:
        return self.net.input_layer[0].weight.device

    def check_generator(self, G: Any, what: str = "the generator") -> None:
        """Refuse (one line) a generator whose W+ size differs from the codes this encoder makes."""
        if int(G.num_ws) != self.num_ws or int(G.w_dim) != self.w_dim:
            raise InputError(f"the encoder makes {self.num_ws} x {self.w_dim} codes but {what} takes "
                             f"{G.num_ws} x {G.w_dim}; use the generator the encoder was trained for "
                             f"({self.info.output_size or '?'} px, {self.num_ws} W+ entries)")

    # -- encoding ---------------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [-1, 1], any size -> ``[N, 3, 256, 256]`` on the encoder's device."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InputError(f"the encoder takes RGB images [N, 3, H, W] in [-1, 1], got {shape}")
        if images.shape[0] == 0 or min(images.shape[-2:]) < 1:
            raise InputError("the encoder got an empty image batch")
        if not torch.isfinite(images).all():
            raise InputError("the images given to the encoder contain NaN or infinite values")
        return resize_like_pil(images, self.input_size).to(self.device, torch.float32)

    def _start(self, n: int) -> torch.Tensor:
        return self.latent_avg.to(self.device).unsqueeze(0).expand(n, -1, -1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, n_iters: int | None = None, return_steps: bool = False,
               generator: Any = None) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """W+ codes ``[N, num_ws, w_dim]`` (float32, encoder's device) of ``images`` ``[N, 3, H, W]`` in [-1, 1].

        ``n_iters``: ReStyle refinement steps (default 5; one-pass encoders accept only None or 1).
        ``return_steps``: also return the codes after each step (a list of ``n_iters`` tensors;
        ``[codes]`` for one-pass encoders). ``generator``: the generator ReStyle renders its
        feedback with; default the checkpoint's own decoder (what ReStyle was trained with, and what
        reproduces its reference codes). Ignored by one-pass encoders.
        """
        x = self.preprocess(images)
        n = x.shape[0]
        if not self.iterative:
            if n_iters not in (None, 1):
                raise InputError(f"{self.info.family} encodes in one pass; n_iters must be 1 or unset, got {n_iters}")
            codes = self.net(x)
            if self.info.adds_latent_avg:
                codes = codes + self._start(n)
            return (codes, [codes]) if return_steps else codes
        iters = self.info.default_iters if n_iters is None else n_iters
        if not isinstance(iters, int) or isinstance(iters, bool) or not 1 <= iters <= MAX_ITERS:
            raise InputError(f"n_iters must be an integer in 1..{MAX_ITERS}, got {iters!r}")
        G = self._feedback_generator(generator)
        feedback = self.average_image(G).expand(n, -1, -1, -1)
        codes, steps = self._start(n), []
        for _ in range(iters):
            codes = self.net(torch.cat([x, feedback], dim=1)) + codes
            steps.append(codes)
            if len(steps) < iters:
                feedback = self._render_pooled(G, codes)
        return (codes, steps) if return_steps else codes

    # -- ReStyle feedback -------------------------------------------------------------------------
    def _feedback_generator(self, generator: Any) -> Any:
        G = generator if generator is not None else self.decoder
        if G is None:
            raise InputError("ReStyle encoders refine their codes through a generator: give one (the FFHQ generator "
                             "the encoder was trained with) or load the encoder with its decoder")
        self.check_generator(G, "the feedback generator")
        return G

    def _render_pooled(self, G: Any, ws: torch.Tensor) -> torch.Tensor:
        """Decoder render of ``ws`` with its stored noise, area-pooled to 256 px (``AdaptiveAvgPool2d``)."""
        const = G.synthesis.const
        img = G.synthesis(ws.to(const.device, const.dtype), noise_mode="const").float().to(self.device)
        return F.adaptive_avg_pool2d(img, (FEEDBACK_SIZE, FEEDBACK_SIZE))

    def average_image(self, G: Any) -> torch.Tensor:
        """``[1, 3, 256, 256]``: the render of ``latent_avg`` that ReStyle's first step compares with."""
        return self._render_pooled(G, self.latent_avg.to(self.device).unsqueeze(0))


__all__ = ["Encoder", "EncoderInfo", "FEEDBACK_SIZE", "INPUT_SIZE", "RESTYLE_DEFAULT_ITERS", "resize_like_pil"]
