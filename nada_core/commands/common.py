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


def command_prefix() -> str:
    """How to run ``nada`` again in this context, for the commands we print as hints.

    ``nada`` when this process is the installed console script; otherwise this Python with
    ``-m nada_core``, which works from any folder once the pack is installed (``pip install -e``),
    and, when it is not (the ComfyUI route: a clone in ``custom_nodes`` plus its requirements), only
    from the pack's folder, so the hint changes into it first.
    """
    import os
    import sys
    from importlib import metadata
    from pathlib import Path

    if Path(sys.argv[0] or "").stem.lower() in ("nada", "nada-script"):
        return "nada"
    python = _quote(sys.executable or "python")
    try:
        metadata.distribution("comfyui-nada")
        return f"{python} -m nada_core"
    except metadata.PackageNotFoundError:
        root = Path(__file__).resolve().parents[2]
        return f"cd {_quote(os.fspath(root))} && {python} -m nada_core"


def command_line(*args: object) -> str:
    """A complete, copy-pasteable command: :func:`command_prefix` plus ``args`` (quoted as needed)."""
    return " ".join([command_prefix(), *(_quote(str(a)) for a in args)])


def _quote(text: str) -> str:
    import os
    import shlex
    import subprocess

    return subprocess.list2cmdline([text]) if os.name == "nt" else shlex.quote(text)


def add_domain_argument(parser: argparse.ArgumentParser) -> None:
    """``--domain FILE[@STRENGTH]``, repeatable (compact domains from ``nada train --adapt ...``)."""
    parser.add_argument("--domain", action="append", metavar="FILE[@STRENGTH]",
                        help="apply a domain file (from `nada train --adapt domain|stylespace`) at a strength "
                             "(default 1; 0 = off, negative or above 1 extrapolates); repeat to mix domains")


def parse_domain_spec(text: str) -> tuple[str, float]:
    """``"style.safetensors@0.5"`` -> ``(path, 0.5)``; no ``@number`` suffix -> strength 1."""
    import math
    import os

    from ..errors import InputError

    path, sep, tail = text.rpartition("@")
    if sep:
        try:
            strength = float(tail)
        except ValueError:
            if os.path.exists(text) or not os.path.exists(path):
                return text, 1.0  # an '@' inside the file name (or no such file either way: the loader says so)
            raise InputError(f"--domain {text}: the strength {tail!r} is not a number; write FILE@0.5") from None
        if not math.isfinite(strength):
            raise InputError(f"--domain {text}: the strength must be a finite number")
        return path, strength
    return text, 1.0


def domain_paths(specs: list[str] | None) -> list[str]:
    return [parse_domain_spec(s)[0] for s in specs or []]


def apply_domain_args(G, specs: list[str] | None):
    """``G`` with every ``--domain FILE[@S]`` applied (``G`` itself when none)."""
    if not specs:
        return G
    from ..domains import apply_domains, load_domain

    items = []
    for spec in specs:
        path, strength = parse_domain_spec(spec)
        items.append((load_domain(path), strength))
    return apply_domains(G, items)
