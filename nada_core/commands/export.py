"""``nada export``: write a generator in another program's format (rosinality ``.pt`` for e4e, pSp,
StyleCLIP and the official StyleGAN-NADA scripts)."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a generator as a rosinality stylegan2-pytorch .pt (or re-save it as .safetensors)"
# = nada_core.formats.export.EXPORT_FORMATS, spelled out: building the parser must not import torch.
FORMATS = ("rosinality", "safetensors", "nvidia")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", required=True,
                        help="generator file: ComfyUI-NADA .safetensors, rosinality .pt or NVIDIA .pkl")
    parser.add_argument("--format", choices=FORMATS, default="rosinality",
                        help="rosinality: {'g_ema', 'latent_avg'} .pt that torch.load(weights_only=True) opens "
                             "(default); safetensors: ComfyUI-NADA's own file; nvidia: not possible (explains why)")
    parser.add_argument("--out", required=True, help="file to write (.pt for rosinality)")
    parser.add_argument("--no-ema", action="store_true",
                        help="export the non-EMA training weights ('g' / 'G') of a foreign checkpoint")
    parser.add_argument("--custom-layout", action="store_true",
                        help="write channel widths / mapping sizes rosinality's Generator class cannot build "
                             "(for code that reads the sizes from the weights, like this pack)")


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output
    from ..formats.checkpoints import load_generator
    from ..formats.export import EXPORT_SUFFIXES, NVIDIA_REFUSAL, export_generator, rosinality_blockers
    from ..errors import InputError

    if args.format == "nvidia":
        raise InputError(NVIDIA_REFUSAL)
    out = check_output(args.out, [args.generator], suffixes=EXPORT_SUFFIXES[args.format], what="--out")
    G = load_generator(args.generator, device="cpu", ema=not args.no_ema)
    if args.format == "rosinality" and not rosinality_blockers(G.config, custom_layout=False):
        from ..formats.export import channel_multiplier_of

        # Up to 32 px every multiplier gives the same widths (512): name it only when it matters.
        mult = f", channel_multiplier={channel_multiplier_of(G.config)}" if G.config.img_resolution > 32 else ""
        note = (f"loads in rosinality's Generator({G.config.img_resolution}, {G.config.w_dim}, "
                f"{G.config.mapping_layers}{mult})")
    else:
        note = "ComfyUI-NADA's format" if args.format == "safetensors" else "custom layout"
    export_generator(G, out, args.format, custom_layout=args.custom_layout)
    print(f"wrote {out} ({args.format}; {note})")
    return 0
