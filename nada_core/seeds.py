"""Seeds -> latent codes, reproducible on every machine.

``z_from_seed`` draws from ``numpy.random.RandomState(seed)`` exactly like NVIDIA's
``generate.py``, so seed 42 here gives the same z (hence the same image) as their tools.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import torch

from .errors import InputError

MAX_SEED = 2**32 - 1
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-|\.\.)\s*(\d+)\s*$")


MAX_SEED_COUNT = 100_000  # seeds in one list, all ranges and single seeds together


def _too_many(count: int) -> InputError:
    return InputError(f"over {MAX_SEED_COUNT} seeds in one list ({count} asked for); "
                      "use fewer or smaller ranges")


def _seed_int(text: str) -> int:
    # Bounded first: int() of a 5000-digit string raises ValueError, and no seed needs 11 digits.
    if len(text) > 12 or not text.isdigit():
        if text.lstrip("-").isdigit():
            raise InputError(f"seed {text[:20]!r} is out of range; seeds run from 0 to {MAX_SEED}")
        raise InputError(f"cannot read seed {text[:40]!r}; use integers, lists and ranges like '0-7,12'")
    value = int(text)
    if value > MAX_SEED:
        raise InputError(f"seed {value} is out of range; seeds run from 0 to {MAX_SEED}")
    return value


def parse_seeds(spec: str | int | Iterable[int]) -> list[int]:
    """Parse ``"0-7"``, ``"1,5,9"``, ``"0-3, 10, 20..22"`` (ranges inclusive) into a list.

    Integers and iterables of integers pass through. Order and duplicates are kept. At most
    :data:`MAX_SEED_COUNT` seeds in all (checked from the range ends, before any list is built).
    """
    seeds: list[int] = []
    if isinstance(spec, (int, np.integer)):
        seeds = [int(spec)]
    elif isinstance(spec, str):
        for part in spec.replace(";", ",").split(","):
            part = part.strip()
            if not part:
                continue
            m = _RANGE.match(part)
            if m:
                a, b = _seed_int(m.group(1)), _seed_int(m.group(2))
                if b < a:
                    raise InputError(f"seed range {part!r} runs backwards; write it as {b}-{a}")
                if len(seeds) + (b - a + 1) > MAX_SEED_COUNT:
                    raise _too_many(len(seeds) + (b - a + 1))
                seeds.extend(range(a, b + 1))
            else:
                if len(seeds) + 1 > MAX_SEED_COUNT:
                    raise _too_many(len(seeds) + 1)
                seeds.append(_seed_int(part))
    else:
        for s in spec:
            if len(seeds) >= MAX_SEED_COUNT:
                raise _too_many(len(seeds) + 1)
            try:
                seeds.append(int(s))
            except (TypeError, ValueError):
                raise InputError(f"cannot read seed {s!r}; seeds are integers 0 to {MAX_SEED}") from None
    if not seeds:
        raise InputError("no seeds given; use e.g. '0-7' or '1,5,9'")
    for s in seeds:
        if not 0 <= s <= MAX_SEED:
            raise InputError(f"seed {s} is out of range; seeds run from 0 to {MAX_SEED}")
    return seeds


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """One latent ``z`` of shape ``[z_dim]`` (float32, standard normal) for ``seed``."""
    return torch.from_numpy(np.random.RandomState(seed).randn(z_dim)).float()


def z_from_seeds(seeds: Iterable[int], z_dim: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """Stack ``z_from_seed`` for each seed: ``[len(seeds), z_dim]``."""
    return torch.stack([z_from_seed(int(s), z_dim) for s in seeds]).to(device)
