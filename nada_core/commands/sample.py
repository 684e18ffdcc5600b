"""``nada sample``: render a seed grid (or saved latents) from a generator to a PNG."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .common import (add_device_argument, add_domain_argument, add_transform_arguments, apply_domain_args,
                     domain_paths, transform_from_args)

NAME = "sample"
HELP = "Render seeds (or saved latents) from a generator into a PNG grid."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help="generator file (.pt, .pkl or .safetensors)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--seeds", default="0-7", help="seeds as a list and/or ranges, e.g. '0-7' or '1,5,9' (default 0-7)")
    src.add_argument("--latents", help="a latents .safetensors file (from `nada invert` or the nodes) to render instead")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi (1 = none; default 0.7)")
    p.add_argument("--truncation-cutoff", type=int, default=None, help="truncate only the first N W+ entries")
    from ..settings import SAMPLE

    SAMPLE.add_flags(p, ("class_index",))  # --class N for class-conditional generators
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                   help="per-pixel noise: the checkpoint's stored noise (const, deterministic), random, or none")
    p.add_argument("--columns", type=int, default=None, help="grid columns (default: near-square)")
    p.add_argument("--batch", type=int, default=8, help="images rendered at once")
    p.add_argument("--no-ema", action="store_true", help="use the non-EMA weights when the file has both")
    p.add_argument("--out", default="grid.png", help="output PNG (default grid.png)")
    p.add_argument("--individual", action="store_true", help="also save each image as OUT_STEM_seedN.png")
    add_transform_arguments(p)
    add_domain_argument(p)
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..atomic import check_output
    from ..formats.checkpoints import load_generator
    from ..devices import resolve_device
    from ..errors import InputError
    from ..media.images import make_grid, save_png
    from ..editing.latents import latents_from_seeds, load_latents, render
    from ..seeds import parse_seeds

    device = resolve_device(args.device)
    out = Path(args.out)
    inputs = [args.generator, args.latents, *domain_paths(args.domain)]
    check_output(out, inputs, suffixes=(".png",), what="--out")  # before any work: never overwrite an input
    if args.batch < 1:
        raise InputError("--batch must be at least 1")
    seeds = None if args.latents else parse_seeds(args.seeds)  # a bad list fails before the generator loads
    G = apply_domain_args(load_generator(args.generator, device=device, ema=not args.no_ema), args.domain)
    transform = transform_from_args(args, G)
    if args.latents:
        lat = load_latents(args.latents)  # render() checks it belongs to this generator's lineage
        labels = [f"latent{i}" for i in range(len(lat))]
    else:
        lat = latents_from_seeds(G, seeds, truncation_psi=args.truncation, truncation_cutoff=args.truncation_cutoff,
                                 class_index=args.class_index)
        labels = [f"seed{s}" for s in seeds]

    n = len(lat)
    with tqdm(total=n, desc="render", unit="img", disable=n <= args.batch) as bar:
        imgs = render(G, lat, noise_mode=args.noise_mode, batch_size=args.batch,
                      on_progress=lambda done, total: bar.update(done - bar.n), input_transform=transform)
    cols = args.columns or max(1, math.ceil(math.sqrt(n)))
    save_png(make_grid(imgs, ncols=cols, pad=2, pad_value=1.0), out)
    if args.individual:
        for img, label in zip(imgs, labels):
            single = check_output(out.with_name(f"{out.stem}_{label}.png"), inputs, suffixes=(".png",),
                                  what="--individual")
            save_png(img, single)
    print(f"wrote {out} ({n} image{'s' * (n != 1)}, {G.img_resolution} px, {cols} column{'s' * (cols != 1)})")
    return 0

