"""Rendering with domains (no copy of the base weights), and baking them into a plain generator.

Maths, per styled layer with style ``s`` ``[N, C]`` (the output of the layer's affine):

    s' = s * prod_k (1 + S_k * d_k)  +  sum_j S_j * delta_j

over the ``domain`` kinds ``k`` (modulations multiply) and the ``stylespace`` kinds ``j``
(offsets add), each with its strength ``S``. Strength 0 leaves a layer untouched (no work at
all, so the images equal the base generator's bit for bit), 1 is the trained domain, negative
values and values above 1 extrapolate. A layer range limits a domain to the W+ entries given.

:func:`apply_domains` returns a *light* generator: a new module tree whose modules share every
parameter and buffer with the base (nothing copied, the base object is not changed, so a cached
generator stays valid); only the affected affines get a forward hook that edits their output.
The hook's tensors are ordinary (non-inference) tensors, so the result also works with autograd
(inversion through an applied domain) whatever mode the caller built it in.

:func:`bake` folds the same edit into the affines of a copy: ``weight * M`` (rows), ``bias * M +
A / bias_gain``, so the baked generator renders the same images up to float rounding.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from .domain import Domain
from .layers import style_layers

StyleEditFn = Callable[[torch.Tensor], torch.Tensor]  # s [N, C] -> s' [N, C]

_BASE_ATTR = "_nada_domain_base"
_STACK_ATTR = "_nada_domain_stack"


@dataclasses.dataclass(frozen=True)
class DomainUse:
    """One applied domain: ``strength`` and the W+ entries it may touch (None = all)."""

    domain: Domain
    strength: float
    w_indices: frozenset[int] | None = None

    def describe(self) -> dict:
        return {"name": self.domain.name, "kind": self.domain.kind, "strength": self.strength,
                "w_indices": None if self.w_indices is None else sorted(self.w_indices),
                "source_sha256": self.domain.source_sha256 or ""}


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def check_domain(domain: Domain, G: Any) -> None:
    """Refuse (one :class:`CheckpointError` line) a domain trained on another source or architecture."""
    from ..formats.checkpoints import lineage_sha256
    from ..editing.latents import short_sha

    label = f"domain {domain.name!r}" if domain.name else "the domain"
    if domain.architecture:  # StyleGAN2 / StyleGAN3-T / -R: named, first: the plainest message
        from ..models.registry import architecture_label

        trained, here = architecture_label(domain.architecture), architecture_label(G)
        if trained != here:
            raise CheckpointError(f"{label} was trained on a {trained} generator, this one is {here}; apply it to "
                                  f"a {trained} generator of the source it was trained on")
    lineage = lineage_sha256(G)
    if domain.source_sha256 and lineage and domain.source_sha256 != lineage:
        raise CheckpointError(f"{label} was trained on generator {short_sha(domain.source_sha256)}, but this "
                              f"generator descends from {short_sha(lineage)}; apply it to the generator it was "
                              "trained from (or one adapted from it)")
    res = domain.architecture.get("img_resolution")
    if isinstance(res, int) and getattr(G, "img_resolution", res) != res:
        raise CheckpointError(f"{label} was trained on a {res} px generator, this one is {G.img_resolution} px; "
                              "apply it to a generator of the architecture it was trained on")
    table = {layer.path: layer for layer in style_layers(G)}
    for layer in domain.layers:
        mine = table.get(layer.path)
        if mine != layer:
            here = f"has {mine.channels} channels (W+ {mine.w_index}, {mine.kind})" if mine else "does not exist"
            raise CheckpointError(f"{label} was trained on another architecture: its layer {layer.path} "
                                  f"({layer.channels} channels) {here} in this generator; apply it to a generator "
                                  "of the architecture it was trained on")


def _check_strength(strength: Any) -> float:
    import math

    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise InputError(f"domain strength must be a finite number, got {strength!r}")
    return float(strength)


# ----------------------------------------------------------------------------------------------
# Light generators: shared weights, hooked affines
# ----------------------------------------------------------------------------------------------


def _shallow(module: nn.Module) -> nn.Module:
    """A new module object with the same parameters, buffers and children (own registries, own hooks)."""
    new = copy.copy(module)
    new._modules = collections.OrderedDict(module._modules)
    new._parameters = collections.OrderedDict(module._parameters)
    new._buffers = collections.OrderedDict(module._buffers)
    new._forward_hooks = collections.OrderedDict()
    for attr in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
        if hasattr(module, attr):
            setattr(new, attr, collections.OrderedDict())
    return new


def edited_generator(G: Any, edits: dict[str, StyleEditFn]) -> Any:
    """A light copy of ``G`` whose affines at ``edits``' paths return ``edit(s)`` instead of ``s``.

    Only the modules on the paths from the root to those affines are new objects; every tensor
    is shared with ``G``, and ``G`` itself is left exactly as it was.
    """
    root = _shallow(G)
    for path, edit in edits.items():
        parts = path.split(".")
        parent_new, parent_old = root, G
        for name in parts:
            old = parent_old._modules[name]
            cur = parent_new._modules[name]
            if cur is old:  # not yet copied on this path
                cur = _shallow(old)
                parent_new._modules[name] = cur
            parent_new, parent_old = cur, old
        parent_new.register_forward_hook(_make_hook(edit))
    return root


def _make_hook(edit: StyleEditFn):
    def hook(_module, _inputs, output):
        return edit(output)
    return hook


class ConstantEdit:
    """``s * mult + add`` with fixed ``[C]`` tensors (either may be None)."""

    def __init__(self, mult: torch.Tensor | None, add: torch.Tensor | None) -> None:
        self.mult, self.add = mult, add

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        if self.mult is not None:
            s = s * self.mult.to(s.device, s.dtype)
        if self.add is not None:
            s = s + self.add.to(s.device, s.dtype)
        return s


def combined_edits(stack: Sequence[DomainUse]) -> dict[str, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """``{path: (M, A)}`` (float32 CPU ``[C]``, None where a kind is absent) for every layer that
    some use with a non-zero strength touches (see the module docstring)."""
    out: dict[str, list] = {}
    with torch.inference_mode(False), torch.no_grad():
        for use in stack:
            if use.strength == 0.0:
                continue
            for layer in use.domain.layers:
                if use.w_indices is not None and layer.w_index not in use.w_indices:
                    continue
                v = use.domain.values[layer.path].detach().to("cpu", torch.float32).clone()
                entry = out.setdefault(layer.path, [None, None])
                if use.domain.kind == "domain":
                    m = 1 + use.strength * v
                    entry[0] = m if entry[0] is None else entry[0] * m
                else:
                    a = use.strength * v
                    entry[1] = a if entry[1] is None else entry[1] + a
    return {k: (v[0], v[1]) for k, v in out.items()}


def unwrap(G: Any) -> tuple[Any, list[DomainUse]]:
    """``(base generator, applied uses)``; a plain generator gives ``(G, [])``."""
    base = G.__dict__.get(_BASE_ATTR) if hasattr(G, "__dict__") else None
    if base is None:
        return G, []
    return base, list(G.__dict__.get(_STACK_ATTR, []))


def applied_domains(G: Any) -> list[DomainUse]:
    """The domains applied to ``G`` (empty for a plain generator)."""
    return unwrap(G)[1]


def _as_use(item: Any, num_ws: int) -> DomainUse:
    from ..editing.interpolate import parse_layers

    if isinstance(item, DomainUse):
        return item
    if isinstance(item, Domain):
        item = (item, 1.0)
    if not (isinstance(item, (tuple, list)) and 2 <= len(item) <= 3 and isinstance(item[0], Domain)):
        raise InputError("apply_domains takes a list of (domain, strength) or (domain, strength, layers) items")
    layers = item[2] if len(item) == 3 else None
    indices = None if layers is None or (isinstance(layers, str) and not layers.strip()) \
        else frozenset(parse_layers(layers, num_ws))
    return DomainUse(item[0], _check_strength(item[1]), indices)


def apply_domains(G: Any, domains: Iterable[Any], layers: Any = None) -> Any:
    """A generator that renders ``G`` with ``domains`` applied: ``[(domain, strength), ...]`` or
    ``(domain, strength, layers)`` items (``layers``: W+ entries such as ``"0-7"`` or ``"coarse"``;
    the ``layers`` argument is the default for items without one).

    ``G`` may itself be the result of :func:`apply_domains` (chaining): the new domains join its
    stack on the same base. Raises :class:`CheckpointError` for a domain trained on another source
    or architecture. The result shares every weight with the base (see the module docstring).
    """
    base, stack = unwrap(G)
    num_ws = int(getattr(base, "num_ws"))
    new = []
    for item in domains:
        if layers is not None and isinstance(item, (tuple, list)) and len(item) == 2:
            item = (item[0], item[1], layers)
        use = _as_use(item, num_ws)
        check_domain(use.domain, base)
        new.append(use)
    stack = stack + new
    device = next(base.parameters()).device
    edits = {}
    with torch.inference_mode(False), torch.no_grad():
        for path, (m, a) in combined_edits(stack).items():
            edits[path] = ConstantEdit(None if m is None else m.to(device), None if a is None else a.to(device))
    out = edited_generator(base, edits)
    object.__setattr__(out, _BASE_ATTR, base)
    object.__setattr__(out, _STACK_ATTR, stack)
    return out


# ----------------------------------------------------------------------------------------------
# Baking
# ----------------------------------------------------------------------------------------------


def _bias_gain(affine: nn.Module) -> torch.Tensor:
    """Per-channel factor the affine applies to its bias (its output for a zero input and bias 1)."""
    saved = affine.bias.detach().clone()
    try:
        affine.bias.fill_(1.0)
        x = torch.zeros(1, affine.weight.shape[1], device=affine.weight.device, dtype=affine.weight.dtype)
        return affine(x)[0].detach().clone()
    finally:
        affine.bias.copy_(saved)


def bake(G: Any, domains: Iterable[Any] = ()) -> Any:
    """A plain, independent generator with ``domains`` (and any already applied to ``G``) folded
    into its affines; ``save_generator`` writes it as usual. Keeps ``G``'s lineage."""
    applied = apply_domains(G, domains) if domains else G
    base, stack = unwrap(applied)
    with torch.inference_mode(False), torch.no_grad():
        out = copy.deepcopy(base)
        for path, (m, a) in combined_edits(stack).items():
            affine = out.get_submodule(path)
            w, b = affine.weight, affine.bias
            gain = _bias_gain(affine).to(torch.float32)
            mult = m.to(w.device) if m is not None else torch.ones(w.shape[0], device=w.device)
            add = a.to(w.device) if a is not None else torch.zeros(w.shape[0], device=w.device)
            w.copy_((w.float() * mult[:, None]).to(w.dtype))
            b.copy_((b.float() * mult + add / gain).to(b.dtype))
    out.eval().requires_grad_(False)
    meta = dict(getattr(base, "metadata", None) or {})
    if stack:
        meta["provenance"] = {"nada": {"kind": "baked-domains", "domains": [u.describe() for u in stack],
                                       "base_provenance": meta.get("provenance", {})}}
    out.metadata = meta
    return out


def materialize(G: Any) -> Any:
    """``G`` itself when it is a plain generator, else :func:`bake` of it (for code that copies or
    saves weights by name, which would otherwise see the base weights only)."""
    return bake(G) if unwrap(G)[1] else G


__all__ = ["ConstantEdit", "DomainUse", "applied_domains", "apply_domains", "bake", "check_domain",
           "combined_edits", "edited_generator", "materialize", "unwrap"]
