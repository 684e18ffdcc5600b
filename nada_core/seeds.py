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


def parse_seeds(spec: str | int | Iterable[int]) -> list[int]:
    """Parse ``"0-7"``, ``"1,5,9"``, ``"0-3, 10, 20..22"`` (ranges inclusive) into a list.

    Integers and iterables of integers pass through. Order and duplicates are kept.
    """
    if isinstance(spec, (int, np.integer)):
        seeds = [int(spec)]
    elif isinstance(spec, str):
        seeds = []
        for part in spec.replace(";", ",").split(","):
            if not part.strip():
                continue
            m = _RANGE.match(part)
            if m:
                a, b = int(m.group(1)), int(m.group(2))
                if b < a:
                    raise InputError(f"seed range {part.strip()!r} runs backwards; write it as {b}-{a}")
                if b - a >= 100_000:
                    raise InputError(f"seed range {part.strip()!r} has over 100000 seeds; use a smaller range")
                seeds.extend(range(a, b + 1))
            else:
                try:
                    seeds.append(int(part.strip()))
                except ValueError:
                    raise InputError(
                        f"cannot read seed {part.strip()!r}; use integers, lists and ranges like '0-7,12'"
                    ) from None
    else:
        seeds = [int(s) for s in spec]
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
