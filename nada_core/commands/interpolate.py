"""``nada interpolate``: latent walks and cross-domain generator morphs as MP4 / GIF / WebP / APNG / PNG frames.

Two kinds of animation:

- latent walk, one generator: ``--generator G.safetensors --seeds 1,5,9`` (z slerp by default) or
  ``--latents latents.safetensors`` (W lerp), through the codes in order;
- generator morph (paper Fig. 19): ``--generators A,B[,C]`` with ``--seed 3`` (or ``--seeds``,
  ``--latents``): the weights are blended from A to B (to C...), every code shown side by side;
- domain strength sweep: ``--generator G --domain style.safetensors --strengths 0,1`` with
  ``--seeds``: the last ``--domain`` is dialled through the strengths, every code side by side.

``--domain FILE[@S]`` (repeatable) applies compact domains to every generator first.

The output type follows ``--out``: ``.mp4`` (H.264, yuv420p, through PyAV; ``--quality``), ``.gif``,
``.webp`` (``--lossless``/``--quality``), ``.apng``, or a folder of PNG frames when the name has no
extension or is an existing folder.
"""

from __future__ import annotations

import argparse
import math
import sys

from .common import (add_device_argument, add_domain_argument, add_transform_arguments, apply_domain_args,
                     domain_paths, transform_from_args)

NAME = "interpolate"
HELP = "Animate latent interpolations or cross-domain generator morphs (MP4, GIF, WebP, APNG or PNG frames)."


def add_arguments(p: argparse.ArgumentParser) -> None:
    gens = p.add_mutually_exclusive_group(required=True)
    gens.add_argument("--generator", help="generator for a latent walk (.pt, .pkl or .safetensors)")
    gens.add_argument("--generators", metavar="A,B[,C]",
                      help="comma-separated generators (same source) to morph between by blending their weights")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--seeds", help="seeds as keyframes (walk) or codes to show (morph), e.g. '1,5,9' or '0-3'")
    src.add_argument("--seed", type=int, help="one seed (morph)")
    src.add_argument("--latents", help="latents .safetensors (from `nada invert`) as keyframes / codes to show")
    p.add_argument("--index", default=None, help="use only these codes of --latents, e.g. '0,2' or '0-3'")
    p.add_argument("--frames", type=int, default=30, help="number of frames (default 30)")
    p.add_argument("--mode", choices=("auto", "lerp", "slerp"), default="auto",
                   help="walk interpolation: slerp of z (seeds only) or lerp of W (default: slerp for seeds, lerp for latents)")
    p.add_argument("--easing", choices=("linear", "ease-in-out", "smoothstep", "cosine", "ease-in", "ease-out"),
                   default="linear", help="speed curve between keyframes (default linear)")
    p.add_argument("--loop", action="store_true", help="return to the first keyframe for a seamless loop")
    p.add_argument("--layers", default=None,
                   help="morph only these W+ layers ('coarse', 'middle', 'fine', '0-3', ...); others stay from the first "
                        "generator (with --strengths: the W+ entries the swept domain acts on)")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi for seeds (default 0.7)")
    p.add_argument("--truncation-cutoff", type=int, default=None, help="truncate only the first N W+ entries")
    from ..settings import SAMPLE

    SAMPLE.add_flags(p, ("class_index",))  # --class N for class-conditional generators
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                   help="per-pixel noise (default const: stable across frames)")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second (default 24)")
    p.add_argument("--quality", type=int, default=90, help="WebP/MP4 quality 0-100 (default 90)")
    p.add_argument("--lossless", action="store_true", help="lossless WebP")
    p.add_argument("--columns", type=int, default=None, help="grid columns when a morph shows several codes")
    p.add_argument("--batch", type=int, default=8, help="images rendered at once (default 8)")
    p.add_argument("--out", required=True, help="output .mp4, .gif, .webp, .apng, or a folder for PNG frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_transform_arguments(p)
    add_domain_argument(p)
    p.add_argument("--strengths", metavar="S0,S1[,...]", default=None,
                   help="strength sweep of the last --domain through these strengths over --frames (e.g. '0,1'); "
                        "the codes are shown side by side")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..atomic import check_output
    from ..media.animation import SUFFIXES, animation_format, frame_to_pil, write_animation
    from ..formats.checkpoints import load_generator
    from ..devices import resolve_device
    from ..errors import InputError
    from ..media.images import make_grid
    from ..editing.interpolate import check_same_family, interpolate_latents, render_blend_sequence
    from ..editing.latents import check_compatible, latents_from_seeds, load_latents, render
    from ..seeds import parse_seeds

    if args.frames < 1:
        raise InputError("--frames must be at least 1")
    if args.batch < 1:
        raise InputError("--batch must be at least 1")
    if not (args.fps > 0):
        raise InputError("--fps must be positive")
    fmt = animation_format(args.out)  # fail on a bad --out before any work
    if fmt == "mp4":
        from ..media.video import h264_encoder

        h264_encoder()  # no PyAV / no encoder: say so before rendering anything
    device = resolve_device(args.device)
    paths = [args.generator] if args.generator else [s.strip() for s in args.generators.split(",") if s.strip()]
    suffixes = SUFFIXES.get(fmt)
    check_output(args.out, [*paths, args.latents, *domain_paths(args.domain)], suffixes=suffixes,
                 kind="dir" if fmt == "frames" else "file",
                 what="--out")
    if args.generators and len(paths) < 2:
        raise InputError("--generators needs at least two files separated by commas, e.g. A.safetensors,B.safetensors")
    if args.strengths is not None and (not args.domain or args.generators):
        raise InputError("--strengths sweeps a domain on one generator; pass --generator G and --domain FILE")
    sweep_domain = None
    domain_specs = list(args.domain or [])
    if args.strengths is not None:
        from ..domains import load_domain
        from ..domains.sweep import parse_strengths
        from .common import parse_domain_spec

        strengths = parse_strengths(args.strengths)
        sweep_domain = load_domain(parse_domain_spec(domain_specs.pop())[0])
    generators = [apply_domain_args(load_generator(p, device=device), domain_specs) for p in paths]
    G0 = generators[0]
    for other in generators[1:]:
        check_same_family(G0, other, "morph")
    transform = transform_from_args(args, G0)

    # Codes ---------------------------------------------------------------------------------------
    if args.latents:
        lat = load_latents(args.latents)
        check_compatible(lat, G0)
        if args.index is not None:
            lat = lat.select(parse_seeds(args.index))
    else:
        if args.seed is not None:
            spec = str(args.seed)
        elif args.seeds is not None:
            spec = args.seeds
        else:
            raise InputError("give the codes: --seeds LIST, --seed N or --latents FILE")
        lat = latents_from_seeds(G0, spec, truncation_psi=args.truncation, truncation_cutoff=args.truncation_cutoff,
                                 class_index=args.class_index)

    bar = tqdm(total=args.frames, desc="nada interpolate", unit="frame", disable=args.quiet, dynamic_ncols=True)
    frames = []
    try:
        if sweep_domain is not None:
            from ..domains.apply import apply_domains
            from ..domains.sweep import render_strength_sweep

            apply_domains(G0, [(sweep_domain, 0.0)])  # wrong source / architecture: fail before rendering
            cols = args.columns or max(1, math.ceil(math.sqrt(len(lat))))
            for imgs in render_strength_sweep(G0, sweep_domain, strengths, lat, args.frames, easing=args.easing,
                                              loop=args.loop, layers=args.layers, noise_mode=args.noise_mode,
                                              batch_size=args.batch):
                grid = imgs if len(lat) == 1 else make_grid(imgs, ncols=cols, pad=2, pad_value=1.0)
                frames.append(frame_to_pil(grid[0]))
                bar.update(1)
            what = f"strength sweep {args.strengths} of {sweep_domain.name} ({len(lat)} code(s))"
        elif len(generators) == 1:
            if args.layers:
                raise InputError("--layers applies to generator morphs; use --generators A,B")
            if len(lat) < 2:
                raise InputError("a latent walk needs at least two keyframes; give several seeds or latents "
                                 "(or morph between generators with --generators)")
            mode = args.mode if args.mode != "auto" else ("slerp" if lat.z is not None else "lerp")
            path = interpolate_latents(lat, args.frames, mode=mode, easing=args.easing, loop=args.loop, G=G0)
            for start in range(0, len(path), args.batch):
                imgs = render(G0, path.select(range(start, min(len(path), start + args.batch))),
                              noise_mode=args.noise_mode, batch_size=args.batch, input_transform=transform)
                frames.extend(frame_to_pil(im) for im in imgs)
                bar.update(imgs.shape[0])
            what = f"latent walk through {len(lat)} keyframes ({mode}, {args.easing})"
        else:
            cols = args.columns or max(1, math.ceil(math.sqrt(len(lat))))
            for imgs in render_blend_sequence(generators, lat, args.frames, easing=args.easing, loop=args.loop,
                                              layers=args.layers, noise_mode=args.noise_mode,
                                              batch_size=args.batch, input_transform=transform):
                grid = imgs if len(lat) == 1 else make_grid(imgs, ncols=cols, pad=2, pad_value=1.0)
                frames.append(frame_to_pil(grid[0]))
                bar.update(1)
            what = f"morph through {len(generators)} generators ({len(lat)} code(s))"
    finally:
        bar.close()
    with torch.no_grad():
        out = write_animation(frames, args.out, fps=args.fps, loop=True, lossless=args.lossless,
                              quality=args.quality, fmt=fmt)
    kind = "PNG frames in" if fmt == "frames" else fmt.upper()
    print(f"wrote {kind} {out}: {len(frames)} frames at {args.fps:g} fps, {what}{_mp4_note(fmt, frames)}",
          file=sys.stdout)
    return 0


def _mp4_note(fmt: str, frames: list) -> str:
    """", padded from WxH to W'xH' for H.264" when an MP4's frames had an odd side, else ""."""
    if fmt != "mp4" or not frames:
        return ""
    from ..media.video import even_size

    w, h = frames[0].size
    ew, eh = even_size(w, h)
    return "" if (ew, eh) == (w, h) else f", padded from {w}x{h} to {ew}x{eh} for H.264 (edge pixels repeated)"
