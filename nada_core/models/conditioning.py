"""Class inputs of conditional generators (``c_dim > 0``), shared by StyleGAN2 and StyleGAN3.

A class reaches the mapping network as a one-hot ``c [N, c_dim]``; users give an index
(``--class N`` on the CLI, ``class_index`` on the nodes, -1 = none). A conditional model without a
class, or an unconditional one with a class, is refused with one line saying what to do.
"""

from __future__ import annotations

import torch

from ..errors import InputError


class ClassInputError(InputError, ValueError):
    """A conditional generator got no class, or an unconditional one got one (one line, with the fix)."""


def check_class_input(c_dim: int, c: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Validate a class input ``c [N, c_dim]`` for a model with ``c_dim`` classes; None when unconditional.

    An empty ``[N, 0]`` tensor counts as no class (NVIDIA's tools pass one to unconditional models).
    """
    if c is not None and c.numel() == 0 and (c.ndim < 2 or c.shape[-1] == 0):
        c = None
    if c_dim == 0:
        if c is not None:
            raise ClassInputError("this generator is not class-conditional, so it takes no class; leave the "
                                  "class unset (--class / class_index -1)")
        return None
    if c is None:
        raise ClassInputError(f"this generator is class-conditional ({c_dim} classes) and needs a class; give "
                              f"one with --class N or the class_index input (0..{c_dim - 1})")
    if c.ndim != 2 or c.shape[1] != c_dim or c.shape[0] not in (1, n):
        raise ClassInputError(f"the class input must have shape [{n}, {c_dim}] (one-hot), got {list(c.shape)}")
    return c.expand(n, -1)


def class_one_hot(c_dim: int, class_index: int | None, n: int, device: torch.device | str = "cpu",
                  ) -> torch.Tensor | None:
    """One-hot classes ``[n, c_dim]`` (float32) for ``class_index``, or None for an unconditional model.

    ``class_index`` None or -1 means "no class". Raises :class:`ClassInputError` when a
    conditional model gets none, an unconditional one gets one, or the index is out of range.
    """
    if class_index is None or int(class_index) < 0:
        check_class_input(c_dim, None, n)
        return None
    k = int(class_index)
    if c_dim == 0:
        check_class_input(0, torch.zeros(n, 1), n)
    if k >= c_dim:
        raise ClassInputError(f"class {k} does not exist: this generator has {c_dim} classes (0..{c_dim - 1})")
    c = torch.zeros(n, c_dim, device=device)
    c[:, k] = 1
    return c
