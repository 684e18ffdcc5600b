"""``load_encoder``: e4e / pSp / ReStyle checkpoints, read without running anything from the file.

The released files (``e4e_ffhq_encode.pt``, ``psp_ffhq_encode.pt``, ``restyle_e4e_ffhq_encode.pt``,
``restyle_psp_ffhq_encode.pt``) are ``torch.save`` dicts (layout in
:mod:`nada_core.formats.encoder_checkpoint`) read by our restricted unpickler. What is built comes
from the tensors (:mod:`nada_core.encoders.layout`) and three options:

- ``encoder_type`` picks the head (``Encoder4Editing``, ``GradualStyleEncoder``,
  ``BackboneEncoder``, ``ProgressiveBackboneEncoder``);
- the input width (3 = one pass; 6 = ReStyle's image + previous render, iterative);
- ``start_from_latent_avg`` (pSp: add ``latent_avg`` only when set, its default is off; e4e: add it
  unless the options say otherwise; ReStyle: always, as its code does).

``output_size`` / ``stylegan_size`` must agree with the number of style heads
(``2 log2(size) - 2``). Car encoders (``dataset_type`` ``cars_encode``: 192 x 256 inputs, cropped
renders), ResNet34 backbones and pSp's label/sketch-to-image models (``label_nc``, ``input_nc`` other
than 3) are refused in one line.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, NadaError, short_reason
from ..formats.common import check_weight_values
from ..formats.detect import existing_file
from ..formats.encoder_checkpoint import (latent_avg_rows, looks_like_encoder_checkpoint, output_size, part,
                                          plain_opts)
from .encoder import RESTYLE_DEFAULT_ITERS, Encoder, EncoderInfo
from .layout import BACKBONE_TYPES, read_layout
from .network import EncoderNet

EXPECTED = ("an e4e, pSp or ReStyle encoder checkpoint (.pt, e.g. e4e_ffhq_encode.pt, psp_ffhq_encode.pt, "
            "restyle_e4e_ffhq_encode.pt)")
_FAMILIES = {"Encoder4Editing": "e4e", "GradualStyleEncoder": "psp", "BackboneEncoder": "restyle_psp",
             "ProgressiveBackboneEncoder": "restyle_e4e"}


def _existing(path: Any) -> Path:
    return existing_file(path, "encoder", EXPECTED)


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                 decoder: bool | None = None) -> Encoder:
    """Load an encoder checkpoint in eval mode with frozen weights, on ``device``.

    ``decoder``: also build the checkpoint's generator (``decoder.*``) as ``encoder.decoder``;
    None (default) = only for ReStyle, which renders its feedback with it. Every problem is one
    :class:`CheckpointError` line naming the file (:class:`UnsafeCheckpointError` when the pickle
    asks for code).
    """
    from ..devices import resolve_device
    from ..formats.checkpoints import FORMAT_ROSINALITY, detect_format
    from ..formats.safe_unpickle import torch_load_weights_only

    p = _existing(path)
    if detect_format(p) != FORMAT_ROSINALITY:
        raise CheckpointError(f"{p}: not a PyTorch (torch.save) file; expected {EXPECTED}")
    with torch.inference_mode(False):
        try:
            obj = torch_load_weights_only(p, str(p))
            enc = encoder_from_object(obj, p, decoder)
        except NadaError:
            raise
        except Exception as err:  # noqa: BLE001 - a hostile file's odd values must not escape as tracebacks
            raise CheckpointError(f"{p}: the encoder file holds values of unexpected types or sizes "
                                  f"({type(err).__name__}: {short_reason(err, 160)}); the file is corrupt") from None
        return enc.to(resolve_device(device)).eval().requires_grad_(False)


def encoder_from_object(obj: Any, p: Path, decoder: bool | None = None) -> Encoder:
    """The :class:`Encoder` in an unpickled checkpoint ``obj`` read from ``p`` (CPU)."""
    from ..formats.checkpoints import generator_from_torch_object, sha256_file

    src = str(p)
    if not looks_like_encoder_checkpoint(obj):
        if isinstance(obj, dict) and ("g_ema" in obj or "g" in obj):
            raise CheckpointError(f"{src}: this is a generator checkpoint, not an encoder; use it as the generator "
                                  f"and give {EXPECTED}")
        raise CheckpointError(f"{src}: no 'state_dict' with 'encoder.*' weights; expected {EXPECTED}")
    try:
        opts = plain_opts(obj.get("opts"))
    except CheckpointError as err:
        raise CheckpointError(f"{src}: {err}") from None
    etype = opts.get("encoder_type")
    if not isinstance(etype, str):
        raise CheckpointError(f"{src}: the checkpoint's options name no 'encoder_type'; cannot tell e4e from pSp")
    if "cars" in str(opts.get("dataset_type", "")):
        raise CheckpointError(f"{src}: car encoders (dataset_type '{opts['dataset_type']}', 192 x 256 inputs) are "
                              f"not supported; use a face (FFHQ) or other square-image encoder")
    if opts.get("learn_in_w") is True or int(opts.get("label_nc") or 0) != 0:
        raise CheckpointError(f"{src}: a pSp model that maps labels/sketches or learns a single W code; only photo "
                              f"encoders to W+ are supported")
    sd = part(obj["state_dict"], "encoder")
    layout = read_layout(sd, etype, src)
    if layout.input_nc not in (3, 6):
        raise CheckpointError(f"{src}: the encoder takes {layout.input_nc}-channel inputs; photo encoders take 3 "
                              f"(e4e, pSp) or 6 (ReStyle)")
    iterative = layout.input_nc == 6
    restyle = iterative or etype in BACKBONE_TYPES
    family = _FAMILIES[etype] if not iterative or etype in BACKBONE_TYPES else f"restyle_{_FAMILIES[etype]}"
    size = output_size(opts)
    if size is not None:
        if size < 4 or size & (size - 1):
            raise CheckpointError(f"{src}: the options name output size {size}, not a power of two; the file is corrupt")
        expected = 2 * int(math.log2(size)) - 2
        if expected != layout.num_ws:
            raise CheckpointError(f"{src}: the encoder has {layout.num_ws} style heads but its {size} px generator "
                                  f"takes {expected} W+ entries; the file is corrupt")
    if restyle:
        adds = True
    elif etype == "Encoder4Editing":
        adds = opts.get("start_from_latent_avg", True) is not False
    else:
        adds = opts.get("start_from_latent_avg") is True
    rows = latent_avg_rows(obj, src)
    latent_avg = None
    if rows is not None:
        if rows.shape[1] != layout.w_dim or rows.shape[0] not in (1, layout.num_ws):
            raise CheckpointError(f"{src}: 'latent_avg' has shape {list(rows.shape)}, but the encoder makes "
                                  f"{layout.num_ws} x {layout.w_dim} codes; the file is corrupt")
        latent_avg = rows.expand(layout.num_ws, -1).clone()
    elif adds:
        raise CheckpointError(f"{src}: the encoder was trained to start from 'latent_avg', which the file lacks; "
                              f"the file is incomplete")
    want_decoder = iterative if decoder is None else bool(decoder)
    G = None
    if want_decoder and part(obj["state_dict"], "decoder"):
        G = generator_from_torch_object(obj, p)
        if G.num_ws != layout.num_ws or G.w_dim != layout.w_dim:
            raise CheckpointError(f"{src}: the decoder takes {G.num_ws} x {G.w_dim} codes but the encoder makes "
                                  f"{layout.num_ws} x {layout.w_dim}; the file is corrupt")
        G.eval().requires_grad_(False)
    info = EncoderInfo(encoder_type=etype, family=family, backbone=layout.depth_name, num_ws=layout.num_ws,
                       w_dim=layout.w_dim, input_nc=layout.input_nc, output_size=size, adds_latent_avg=adds,
                       iterative=iterative, default_iters=RESTYLE_DEFAULT_ITERS if iterative else 1,
                       source_file=p.name, source_sha256=sha256_file(p))
    # Built on the meta device, then the file's own tensors become the parameters: nothing is
    # allocated from the layout (a file whose tensors share one storage cannot make us allocate more).
    with torch.device("meta"):
        net = EncoderNet(layout)
    missing, unexpected = _load(net, sd, src)
    if missing:
        raise CheckpointError(f"{src}: encoder tensors missing: {', '.join(missing[:3])}; the file is not a complete "
                              f"{etype}")
    if unexpected and not restyle:  # ReStyle's own loader ignores extra keys (strict=False); e4e/pSp do not
        raise CheckpointError(f"{src}: the encoder has tensors a {etype} does not ({', '.join(unexpected[:3])}); it "
                              f"is a different architecture")
    return Encoder(layout, info, latent_avg, opts, G, net=net)


def _load(net: torch.nn.Module, sd: dict[str, torch.Tensor], src: str) -> tuple[list[str], list[str]]:
    own = net.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{src}: encoder tensor '{k}' has shape {list(sd[k].shape)}, expected {list(own[k].shape)}; the file is corrupt")
    if not missing:
        check_weight_values(src, sd, own, "encoder tensor")
        net.load_state_dict({k: sd[k].detach().to(own[k].dtype) for k in own}, strict=True, assign=True)
    return missing, unexpected
