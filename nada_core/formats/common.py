"""What every foreign-checkpoint converter returns, and checks shared by the format modules."""

from __future__ import annotations

import dataclasses
import operator
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


def kwarg_int(kw: dict, name: str, source: str, network: str) -> int:
    """``kw[name]`` of a pickled constructor as an int (numpy integers too); strings, lists, floats
    and bools are refused in one line naming ``network`` (e.g. ``"stylegan3"``)."""
    value = kw[name]
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = operator.index(value)  # numpy integers
        except TypeError:
            raise CheckpointError(f"{source}: the generator's {name} is {value!r:.40}, not an integer; the file is "
                                  f"corrupt or not a {network} snapshot") from None
    return int(value)


def kwargs_with_defaults(given: Any, defaults: dict, what: str, source: str, network: str) -> dict:
    """``defaults`` updated with the pickled keyword arguments ``given``; unknown keys are refused in one line."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise CheckpointError(f"{source}: the generator's {what} is not a dict")
    unknown = sorted(str(u) for u in set(given) - set(defaults))
    if unknown:
        raise CheckpointError(f"{source}: the generator's {what} has settings this loader does not know "
                              f"({', '.join(unknown[:6])}); it is not a standard {network} generator")
    out = dict(defaults)
    out.update(given)
    return out


def check_weight_values(source: str, given: dict, own: dict, what: str = "weight") -> None:
    """Refuse (one :class:`CheckpointError` line) a file tensor that a float parameter of ``own``
    (a module's ``state_dict()``, meta tensors are fine) would be filled from, when it is not a
    tensor of floats (``load_state_dict`` would silently cast integers and bools and drop the
    imaginary part of complex numbers), or holds NaN/inf once cast to the parameter's dtype
    (float64 beyond the float32 range becomes inf). Buffers of other dtypes are not checked.
    """
    for name, t in given.items():
        ref = own.get(name)
        if ref is None or not ref.is_floating_point():
            continue
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{source}: the {what} '{name}' is a {type(t).__name__}, not a tensor; the file is "
                                  f"corrupt")
        if not t.is_floating_point():
            raise CheckpointError(f"{source}: the {what} '{name}' holds {str(t.dtype).replace('torch.', '')} values, "
                                  f"not floats; the file is corrupt or from another program")
        cast = t if t.dtype == ref.dtype else t.to(ref.dtype)
        if not bool(torch.isfinite(cast).all()):
            raise CheckpointError(f"{source}: the {what} '{name}' holds NaN or infinite values; the network is broken "
                                  f"(a diverged training run?), get or save the file again")


def float_weights(x: Any, name: str, source: str) -> Any:
    """``x`` (a torch tensor or numpy array read from a foreign file) as a float32 copy, refused in one
    line when it does not hold floats: the converters' cast would silently turn integers or bools
    into weights and drop the imaginary part of complex numbers. NaN/inf are left for
    :func:`check_weight_values` (which names them after the conversion)."""
    import numpy as np

    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise CheckpointError(f"{source}: '{name}' holds {x.dtype} values, not floats; the file is corrupt or "
                                  f"from another program")
        with np.errstate(over="ignore"):
            return x.astype(np.float32)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = str(x.dtype).replace("torch.", "") if isinstance(x, torch.Tensor) else type(x).__name__
        raise CheckpointError(f"{source}: '{name}' holds {what} values, not floats; the file is corrupt or from "
                              f"another program")
    return x.detach().to(torch.float32).clone()
