"""Argument helpers shared by CLI sub-commands."""

from __future__ import annotations

import argparse


def add_transform_arguments(parser: argparse.ArgumentParser) -> None:
    """``--translate X,Y`` and ``--rotate DEG``: StyleGAN3's input transform, as NVIDIA's gen_images.py."""
    parser.add_argument("--translate", default="0,0", metavar="X,Y",
                        help="StyleGAN3 only: shift the image by X,Y input-grid units (the image spans about 1)")
    parser.add_argument("--rotate", type=float, default=0.0, metavar="DEG",
                        help="StyleGAN3 only: rotate the image by DEG degrees")


def transform_from_args(args: argparse.Namespace, G):
    """The ``[3, 3]`` input transform asked for by ``--translate/--rotate`` (None when none is)."""
    from ..editing.transforms import parse_translate, transform_for
    from ..settings import SAMPLE, check

    tx, ty = parse_translate(args.translate)
    tx, ty = check(SAMPLE["translate_x"], tx), check(SAMPLE["translate_y"], ty)
    return transform_for(G, (tx, ty), check(SAMPLE["rotate"], args.rotate))


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or mps (default: the best available)")
