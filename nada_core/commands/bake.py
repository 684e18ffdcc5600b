"""``nada bake``: fold compact domains into a plain generator file."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_device_argument, domain_paths, parse_domain_spec

NAME = "bake"
HELP = "Bake domain files (at their strengths) into a plain generator .safetensors."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help="base generator (.pt, .pkl or .safetensors)")
    p.add_argument("--domain", action="append", required=True, metavar="FILE[@STRENGTH]",
                   help="domain file and strength (default 1); repeat to mix several")
    p.add_argument("--layers", default=None, help="apply the domains only to these W+ entries ('0-7', 'coarse', ...)")
    p.add_argument("--out", required=True, help="output generator .safetensors")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output
    from ..devices import resolve_device
    from ..domains import bake, load_domain
    from ..formats.checkpoints import load_generator, save_generator

    out = check_output(Path(args.out), [args.generator, *domain_paths(args.domain)], suffixes=(".safetensors",),
                       what="--out")
    items = []
    for spec in args.domain:
        path, strength = parse_domain_spec(spec)
        items.append((load_domain(path), strength))  # every file checked before the generator loads
    G = load_generator(args.generator, device=resolve_device(args.device))
    baked = bake(G, [(d, s, args.layers) if args.layers else (d, s) for d, s in items])
    save_generator(baked, out)
    mix = ", ".join(f"{d.name}@{s:g}" for d, s in items)
    print(f"wrote {out}: {Path(args.generator).name} with {mix} baked in")
    return 0
