"""What every foreign-checkpoint converter returns (shared by the format modules)."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import torch

from ..errors import CheckpointError
from ..models.stylegan2 import GeneratorConfig


@dataclasses.dataclass
class Converted:
    """A foreign generator translated to our layout.

    ``state_dict`` uses :class:`~nada_core.models.stylegan2.Generator` names (``mapping.w_avg`` excluded);
    ``w_avg`` is the file's truncation centre ``[w_dim]``, or None when the file stores none;
    ``notes`` are facts for ``G.metadata`` (which network was read, generated noise, ...).
    """

    config: GeneratorConfig
    state_dict: dict[str, torch.Tensor]
    w_avg: torch.Tensor | None
    notes: dict[str, Any]


def reject_unused_tensors(source: str, names: Iterable[str], used: set[str], expected: str) -> None:
    """Raise when a file holds generator tensors the converter did not map (another architecture)."""
    extra = sorted(set(names) - used)
    if extra:
        shown = ", ".join(extra[:4]) + (" ..." if len(extra) > 4 else "")
        raise CheckpointError(f"{source}: the generator has tensors {expected} does not ({shown}); "
                              f"it is a different architecture")
