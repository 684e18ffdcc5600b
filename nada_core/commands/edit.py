"""``nada edit``: move codes along a semantic direction (SeFa, GANSpace or a file) and show the result.

    nada edit --generator ffhq.pt --seeds 0-3 --direction sefa:0 --strengths -3,0,3 --out grid.png
    nada edit --generator ffhq.pt --latents me.safetensors --direction smile.npy --strengths -2:2:5 \\
              --render-with pixar.safetensors --out smile.png
    nada edit --generator ffhq.pt --seeds 7 --direction ganspace:2 --strengths -4,4 --layers 0-5 --out walk.mp4

``--direction``: ``sefa:K`` / ``ganspace:K`` (the K-th strongest direction found on ``--generator``)
or a direction file (InterFaceGAN ``.npy``/``.pt`` boundary, a plain vector, or a ``.safetensors``
from ``--save-directions``). Directions found on the source generator edit every generator adapted
from it: ``--render-with`` renders the same edited codes with those generators too.

``--out``: a ``.png`` grid (one row per code and generator, one column per strength), or an
animation walking through the strengths as keyframes: ``.mp4`` (H.264), ``.gif``, ``.webp``,
``.apng`` or a folder of PNG frames.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

from .common import add_device_argument

NAME = "edit"
HELP = "Edit codes along a SeFa / GANSpace / InterFaceGAN direction: a strength grid (PNG) or a walk (MP4, GIF...)."
_SPEC = re.compile(r"^(sefa|ganspace)(?::(\d{1,4}))?$", re.IGNORECASE)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..settings import EDIT

    # '--strengths -3,0,3': let values that start with a minus and a digit be values, not flags.
    p._negative_number_matcher = re.compile(r"^-\d[\d.,:eE+-]*$")  # noqa: SLF001 - argparse has no public hook
    p.add_argument("--generator", required=True, help="the generator the directions are found on and the codes "
                   "come from (.pt, .pkl or .safetensors)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--seeds", help="seeds of the codes to edit, e.g. '0-3' (default 0-3)")
    src.add_argument("--latents", help="latents .safetensors (from `nada invert`) to edit")
    p.add_argument("--index", default=None, help="use only these codes of --latents, e.g. '0,2'")
    p.add_argument("--direction", required=True, help="sefa:K, ganspace:K (K-th strongest, from 0) or a direction "
                   "file (.npy/.pt InterFaceGAN boundary, .safetensors)")
    p.add_argument("--direction-index", type=int, default=0, help="which direction of a file holding several "
                   "(default 0)")
    EDIT.add_flags(p, ["strengths", "layers", "k", "n_samples", "seed", "torgb", "frames", "fps"])
    p.add_argument("--render-with", metavar="A[,B]", default=None,
                   help="also render the edited codes with these generators (adapted from the same source)")
    p.add_argument("--save-directions", metavar="FILE.safetensors", default=None,
                   help="save the SeFa/GANSpace directions found, for NADA Load Direction or --direction FILE")
    p.add_argument("--truncation", type=float, default=0.7, help="truncation psi for seeds (default 0.7)")
    p.add_argument("--truncation-cutoff", type=int, default=None, help="truncate only the first N W+ entries")
    p.add_argument("--noise-mode", choices=("const", "random", "none"), default="const",
                   help="per-pixel noise (default const: stable across strengths)")
    p.add_argument("--quality", type=int, default=90, help="MP4/WebP quality 0-100 (default 90)")
    p.add_argument("--batch", type=int, default=8, help="images rendered at once (default 8)")
    p.add_argument("--out", required=True, help="a .png grid, or an animation: .mp4, .gif, .webp, .apng or a folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(p)


def _setting(args: argparse.Namespace, name: str):
    from ..settings import EDIT

    value = getattr(args, name)
    return EDIT.check(name, EDIT[name].default if value is None else value)


def _output_kind(out: str) -> str:
    """``"grid"`` for a .png, else the animation format (refuses unknown types before any work)."""
    from ..media.animation import animation_format

    if Path(out).suffix.lower() == ".png":
        return "grid"
    return animation_format(out)


def _find_directions(G, spec: str, args, bar_factory):
    """(Directions, index, what) for ``--direction``."""
    from ..editing.direction_files import load_direction
    from ..editing.semantic import ganspace_directions, sefa_directions

    m = _SPEC.match(spec.strip())
    if not m:
        path = Path(spec)
        if not path.exists() and ":" in spec and not path.suffix:
            from ..errors import InputError

            raise InputError(f"--direction {spec!r}: use sefa:K, ganspace:K or a direction file path")
        return load_direction(path), args.direction_index, f"{path.name}"
    method, index = m.group(1).lower(), int(m.group(2) or 0)
    k = _setting(args, "k")
    if index >= k:
        k = index + 1
    if method == "sefa":
        dirs = sefa_directions(G, layers=_setting(args, "layers"), k=min(k, G.w_dim), torgb=_setting(args, "torgb"))
    else:
        n = _setting(args, "n_samples")
        with bar_factory(n, "GANSpace samples") as bar:
            dirs = ganspace_directions(G, n_samples=n, k=min(k, G.w_dim), seed=_setting(args, "seed"),
                                       on_progress=lambda done, total: bar.update(done - bar.n))
    return dirs, index, f"{method}:{index}"


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..atomic import check_output
    from ..devices import resolve_device
    from ..editing.direction_files import save_direction
    from ..editing.interpolate import check_same_family
    from ..editing.latents import check_compatible, latents_from_seeds, load_latents, render
    from ..editing.semantic import check_directions_compatible, parse_strengths, sweep, walk_strengths
    from ..errors import InputError
    from ..formats.checkpoints import load_generator
    from ..media.animation import SUFFIXES, frame_to_pil, write_animation
    from ..media.images import make_grid, save_png
    from ..seeds import parse_seeds

    if args.batch < 1:
        raise InputError("--batch must be at least 1")
    kind = _output_kind(args.out)
    strengths = parse_strengths(_setting(args, "strengths"))
    frames_n, fps = _setting(args, "frames"), _setting(args, "fps")
    others = [s.strip() for s in (args.render_with or "").split(",") if s.strip()]
    inputs = [args.generator, args.latents, args.direction, *others]
    suffixes = (".png",) if kind == "grid" else SUFFIXES.get(kind)
    check_output(args.out, inputs, suffixes=suffixes, kind="dir" if kind == "frames" else "file", what="--out")
    if args.save_directions:
        check_output(args.save_directions, inputs, suffixes=(".safetensors",), what="--save-directions")
    if kind == "mp4":
        from ..media.video import h264_encoder

        h264_encoder()  # no PyAV / no encoder: say so before any work
    device = resolve_device(args.device)
    G = load_generator(args.generator, device=device)
    gens = [G] + [load_generator(p, device=device) for p in others]
    for other in gens[1:]:
        check_same_family(G, other, "render the same codes with")

    def bar_factory(total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="img", disable=args.quiet, dynamic_ncols=True)

    # Codes ---------------------------------------------------------------------------------------
    if args.latents:
        lat = load_latents(args.latents)
        check_compatible(lat, G)
        if args.index is not None:
            lat = lat.select(parse_seeds(args.index))
        lat = lat.broadcast(G.num_ws)
    else:
        if args.index is not None:
            raise InputError("--index picks codes of --latents; with seeds list the seeds you want")
        lat = latents_from_seeds(G, args.seeds or "0-3", truncation_psi=args.truncation,
                                 truncation_cutoff=args.truncation_cutoff)
    for other in gens[1:]:
        check_compatible(lat, other)

    # Direction -----------------------------------------------------------------------------------
    dirs, index, what = _find_directions(G, args.direction, args, bar_factory)
    for g in gens:
        check_directions_compatible(dirs, g)
    dirs.vector(index)  # a bad index fails before rendering
    if args.save_directions:
        if dirs.method == "file":
            raise InputError("--save-directions saves SeFa/GANSpace directions; this one was read from a file")
        save_direction(dirs, args.save_directions)
    layers = args.layers  # None = the direction's own layers (SeFa with --layers) or all entries

    n, rows = len(lat), len(lat) * len(gens)
    if kind == "grid":
        codes = sweep(lat, dirs, strengths, layers=layers, index=index)
        with bar_factory(len(codes) * len(gens), "render") as bar:
            per_gen = [render(g, codes, noise_mode=args.noise_mode, batch_size=args.batch,
                              on_progress=lambda done, total, k=k: bar.update(k * len(codes) + done - bar.n))
                       for k, g in enumerate(gens)]
        s = len(strengths)
        order = [per_gen[k][i * s:(i + 1) * s] for i in range(n) for k in range(len(gens))]
        grid = make_grid(torch.cat(order), ncols=s, pad=2, pad_value=1.0)
        out = save_png(grid, args.out)
        print(f"wrote {out}: {rows} row(s) ({n} code(s) x {len(gens)} generator(s)) x {s} strengths "
              f"{', '.join(f'{v:g}' for v in strengths)} along {what}")
        return 0

    walk = walk_strengths(strengths, frames_n)
    cols = max(1, math.ceil(math.sqrt(rows))) if rows > 1 else 1
    frames = []
    with bar_factory(len(walk), "frames") as bar:
        chunk = max(1, args.batch // max(1, n))
        for start in range(0, len(walk), chunk):
            part = walk[start:start + chunk]
            codes = sweep(lat, dirs, part, layers=layers, index=index)  # [n * len(part)], code-major
            imgs = [render(g, codes, noise_mode=args.noise_mode, batch_size=args.batch) for g in gens]
            for f in range(len(part)):
                tiles = torch.stack([imgs[k][i * len(part) + f] for i in range(n) for k in range(len(gens))])
                grid = tiles if rows == 1 else make_grid(tiles, ncols=cols, pad=2, pad_value=1.0)
                frames.append(frame_to_pil(grid[0]))
            bar.update(len(part))
    out = write_animation(frames, args.out, fps=fps, loop=True, quality=args.quality, fmt=kind)
    from .interpolate import _mp4_note

    label = "PNG frames in" if kind == "frames" else kind.upper()
    print(f"wrote {label} {out}: {len(frames)} frames at {fps:g} fps, strengths {walk[0]:g} -> {walk[-1]:g} along "
          f"{what}{_mp4_note(kind, frames)}", file=sys.stdout)
    return 0
