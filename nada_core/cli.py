"""``nada`` command line: one sub-command per module in :mod:`nada_core.commands`.

Each command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
Errors a user can fix (:class:`~nada_core.errors.NadaError`) print one line and exit 2;
Ctrl-C exits 130 without a traceback; an operating-system failure nothing else reported
(``OSError``, ``MemoryError``) prints one line and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from .errors import NadaError

# Sub-command modules, in the order ``nada --help`` lists them.
COMMANDS = ("info", "sample", "demo", "train", "invert", "interpolate", "edit", "bake", "export", "queue")


def _load_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"nada_core.commands.{name}"))
        except ModuleNotFoundError as err:
            if err.name != f"nada_core.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nada",
        description="StyleGAN-NADA: CLIP-guided domain adaptation of StyleGAN2 and StyleGAN3 generators.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _load_commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except NadaError as err:
        print(f"nada {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nada {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as err:
        # Last resort for system failures no module turned into a NadaError: still one line, exit 1.
        # NADA_TRACEBACK=1 shows the full traceback when debugging.
        if os.environ.get("NADA_TRACEBACK"):
            raise
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        print(f"nada {args.command}: error: {type(err).__name__}: {reason}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
