"""Encode user images (files, PIL, tensors, ComfyUI batches) into :class:`Latents` with an encoder.

Each image is given to the encoder at its own resolution after the fit step, so the encoder's
own resize (Pillow bilinear to 256 px, as its inference script does to the photo file) is the
only resampling: ``crop`` hands it the centred square of the original pixels, ``stretch`` the
whole image (the encoders' scripts resize whole photos, aspect ratio not kept), ``pad`` the whole
image padded with white to a square.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from ..editing.latents import Latents, generator_lineage
from ..errors import InputError, Interrupted
from ..media.image_prep import Box, FitMode, Layout, centre_crop_box, to_image_list
from .encoder import Encoder


@dataclasses.dataclass
class EncodedImages:
    """``latents`` (``ws [N, num_ws, w_dim]``, space ``w+``, CPU); per image ``crop_boxes``
    (original pixels used, right/bottom exclusive), ``names``; ``steps``: for ReStyle the codes
    after each refinement step ``[N, num_ws, w_dim]`` each (one entry for one-pass encoders)."""

    latents: Latents
    crop_boxes: list[Box]
    names: list[str]
    steps: list[torch.Tensor]


def fit_for_encoder(img: torch.Tensor, fit: FitMode) -> tuple[torch.Tensor, Box]:
    """``[3, H, W]`` in [0, 1] -> (``[3, h, w]`` in [0, 1] to hand to the encoder, box used)."""
    _, h, w = img.shape
    if fit == "crop":
        left, top, right, bottom = box = centre_crop_box(w, h)
        return img[:, top:bottom, left:right], box
    if fit == "stretch":
        return img, (0, 0, w, h)
    if fit == "pad":
        side = max(w, h)
        canvas = torch.ones(3, side, side, dtype=img.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[:, top:top + h, left:left + w] = img
        return canvas, (0, 0, w, h)
    raise InputError(f"unknown fit mode {fit!r}; use 'crop', 'pad' or 'stretch'")


def encode_images(encoder: Encoder, images: Any, G: Any = None, *, fit: FitMode = "crop",
                  layout: Layout = "auto", n_iters: int | None = None, feedback: Any = None,
                  on_image: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> EncodedImages:
    """Encode ``images`` (anything :func:`~nada_core.media.image_prep.to_image_list` reads) one by one.

    ``G``: the generator the codes are for (its W+ size is checked; its lineage goes into the
    latents). ``n_iters``/``feedback``: see :meth:`Encoder.encode` (``feedback`` defaults to the
    encoder's own decoder). ``on_image(done, total)`` after each image; ``should_stop()`` before
    each: True stops with :class:`~nada_core.errors.Interrupted` naming how many were encoded.
    """
    if G is not None:
        encoder.check_generator(G)
    imgs, names = to_image_list(images, layout)
    codes, boxes, steps = [], [], []
    for i, img in enumerate(imgs):
        if should_stop is not None and should_stop():
            raise Interrupted(f"stopped after encoding {i} of {len(imgs)} images")
        fitted, box = fit_for_encoder(img, fit)
        ws, per_step = encoder.encode(fitted[None] * 2.0 - 1.0, n_iters=n_iters, return_steps=True,
                                      generator=feedback)
        codes.append(ws.float().cpu())
        steps.append([s.float().cpu() for s in per_step])
        boxes.append(box)
        if on_image is not None:
            on_image(i + 1, len(imgs))
    ws = torch.cat(codes)
    prov = {"source": "encoder", "encoder": encoder.info.source_file, "encoder_type": encoder.info.encoder_type,
            "encoder_sha256": encoder.info.source_sha256, "images": list(names),
            "crop_boxes": [list(b) for b in boxes], "iterations": len(steps[0])}
    latents = Latents(ws, "w+", generator_lineage(G) if G is not None else None, prov)
    per_step = [torch.cat([s[t] for s in steps]) for t in range(len(steps[0]))]
    return EncodedImages(latents, boxes, list(names), per_step)
