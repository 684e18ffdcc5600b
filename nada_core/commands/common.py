"""Argument helpers shared by CLI sub-commands."""

from __future__ import annotations

import argparse


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda, cuda:N or mps (default: the best available)")


def add_domain_argument(parser: argparse.ArgumentParser) -> None:
    """``--domain FILE[@STRENGTH]``, repeatable (compact domains from ``nada train --adapt ...``)."""
    parser.add_argument("--domain", action="append", metavar="FILE[@STRENGTH]",
                        help="apply a domain file (from `nada train --adapt domain|stylespace`) at a strength "
                             "(default 1; 0 = off, negative or above 1 extrapolates); repeat to mix domains")


def parse_domain_spec(text: str) -> tuple[str, float]:
    """``"style.safetensors@0.5"`` -> ``(path, 0.5)``; no ``@number`` suffix -> strength 1."""
    import math

    from ..errors import InputError

    path, sep, tail = text.rpartition("@")
    if sep:
        try:
            strength = float(tail)
        except ValueError:
            return text, 1.0  # an '@' inside the file name
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
