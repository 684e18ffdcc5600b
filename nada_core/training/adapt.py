"""What a training run adapts: the full synthesis weights (``full``, the default) or a compact domain.

With ``--adapt domain`` or ``--adapt stylespace`` the trainer trains only one small vector per
styled layer (:mod:`nada_core.domains`): the trained generator is a light copy of the frozen one
(the same weight tensors, see :func:`nada_core.domains.apply.edited_generator`) whose affines
return ``s * (1 + d)`` or ``s + delta`` with ``d`` / ``delta`` trainable and initialised at 0, so
before the first update the trained images equal the frozen ones bit for bit.

Adaptive layer freezing works as for full weights: the W+ indices chosen each step decide which
layers' vectors receive gradients (the vectors of the layers those indices drive: their conv, and
their toRGB when toRGB styles are included). Several targets train several domains at once: the
vectors of target ``t`` are a separate set, and the trained pass renders the step's codes once
per target in one batch (``[T * B]``), target ``t`` in rows ``t*B .. (t+1)*B - 1``.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..domains.apply import edited_generator
from ..domains.domain import Domain
from ..domains.layers import StyleLayer, style_layers

ADAPT_KINDS = ("full", "domain", "stylespace")


class _TrainEdit:
    """The style edit of one layer with live parameters, one ``[C]`` vector per target."""

    def __init__(self, adapter: "DomainAdapter", path: str) -> None:
        self.adapter, self.path = adapter, path

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        a = self.adapter
        vecs = [a.params[t][self.path] for t in a.active_targets()]
        v = vecs[0][None] if len(vecs) == 1 else torch.stack(vecs)  # [T, C]
        if v.shape[0] > 1:
            if s.shape[0] % v.shape[0]:
                raise InputError(f"{s.shape[0]} styles cannot be split over {v.shape[0]} targets")
            v = v.repeat_interleave(s.shape[0] // v.shape[0], dim=0)  # [T * B, C]
        # (1 + d) in float32, as apply_domains computes it, so strength 1 renders the same bits.
        return s * (1 + v).to(s.dtype) if a.kind == "domain" else s + v.to(s.dtype)


class _PerTargetSynthesis(nn.Module):
    """Renders codes ``[B, ...]`` once per active target -> images ``[T * B, ...]`` (target-major).
    Everything else (layer lookup, style affines, sizes) is the wrapped synthesis network's."""

    def __init__(self, inner: nn.Module, adapter: "DomainAdapter") -> None:
        super().__init__()
        self.inner = inner
        object.__setattr__(self, "_adapter", adapter)  # not a module: no registration

    def forward(self, ws: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.inner(self._adapter.codes_for_training(ws), **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["inner"], name)


class DomainAdapter:
    """Trainable domain vectors on a frozen generator.

    ``params[t][path]``: ``[channels]`` float32 zeros on the generator's device, one set per target.
    ``generator``: the light copy of ``G_frozen`` rendering with them. ``active``: None (every target,
    batched) or one target index (e.g. for that target's layer selection and previews).
    """

    def __init__(self, G_frozen: Any, kind: str, include_torgb: bool = False, targets: int = 1,
                 layers: str = "") -> None:
        if kind not in ("domain", "stylespace"):
            raise InputError(f"adapt must be one of {', '.join(ADAPT_KINDS)}, got {kind!r}")
        if targets < 1:
            raise InputError("a compact run needs at least one target")
        self.kind, self.targets = kind, int(targets)
        self.layers: list[StyleLayer] = style_layers(G_frozen, include_torgb=include_torgb)
        if layers and layers.strip():  # only the layers these W+ entries drive get a vector
            from ..domains.layers import select_w_indices
            from ..editing.interpolate import parse_layers

            self.layers = select_w_indices(self.layers, parse_layers(layers, int(G_frozen.num_ws)))
            if not self.layers:
                raise InputError(f"domain_layers {layers!r} selects no styled layer (the last W+ entry drives only "
                                 "the final toRGB: include it with train_torgb, or pick other entries)")
        self.active: int | None = None
        device = next(G_frozen.parameters()).device
        with torch.inference_mode(False):
            self.params: list[dict[str, nn.Parameter]] = [
                {layer.path: nn.Parameter(torch.zeros(layer.channels, device=device)) for layer in self.layers}
                for _ in range(self.targets)]
        self.generator = edited_generator(G_frozen, {layer.path: _TrainEdit(self, layer.path) for layer in self.layers})
        if self.targets > 1:  # every render shows the codes once per active target
            self.generator._modules["synthesis"] = _PerTargetSynthesis(self.generator.synthesis, self)

    @property
    def w_indices(self) -> set[int]:
        """The W+ entries whose layers have a vector (what layer selection may choose from)."""
        return {layer.w_index for layer in self.layers}

    def active_targets(self) -> list[int]:
        return list(range(self.targets)) if self.active is None else [self.active]

    # Optimiser and freezing -----------------------------------------------------------------------
    def name(self, t: int, path: str) -> str:
        return f"domain.{path}" if self.targets == 1 else f"domain{t}.{path}"

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Every trainable vector by name (optimiser and training-state order)."""
        return {self.name(t, layer.path): self.params[t][layer.path]
                for t in range(self.targets) for layer in self.layers}

    def apply_selection(self, indices: Iterable[int], target: int | None = None) -> list[str]:
        """``requires_grad`` on exactly the vectors of the layers W+ ``indices`` drive (of ``target``,
        or of every target); returns their names."""
        keep = {int(i) for i in indices}
        names = []
        for t in range(self.targets) if target is None else [target]:
            for layer in self.layers:
                on = layer.w_index in keep
                self.params[t][layer.path].requires_grad_(on)
                if on:
                    names.append(self.name(t, layer.path))
        return names

    def codes_for_training(self, ws: torch.Tensor) -> torch.Tensor:
        """The step's codes ``[B, num_ws, w_dim]`` repeated once per active target -> ``[T * B, ...]``."""
        n = len(self.active_targets())
        return ws if n == 1 else ws.repeat(n, 1, 1)

    # Persistence ------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p in self.named_parameters().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], where: str) -> None:
        """Copy the vectors back from a training state (all checked before any is written)."""
        params = self.named_parameters()
        saved = {k: v for k, v in tensors.items() if k.startswith("domain")}
        if set(saved) != set(params):
            odd = sorted(set(saved) ^ set(params))[:2]
            raise CheckpointError(f"training state {where}: its domain vectors do not fit this run "
                                  f"({', '.join(odd)}); resume with the saved --adapt and targets")
        for name, p in params.items():
            v = saved[name]
            if tuple(v.shape) != tuple(p.shape) or v.dtype != torch.float32:
                raise CheckpointError(f"training state {where}: tensor {name} has shape {list(v.shape)} "
                                      f"({v.dtype}), expected {list(p.shape)} float32")
        with torch.inference_mode(False), torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])

    def domain(self, t: int, source_sha256: str | None, architecture: dict, metadata: dict,
               name: str = "") -> Domain:
        """Target ``t``'s vectors as a :class:`Domain` (CPU copies)."""
        values = {layer.path: self.params[t][layer.path].detach().to("cpu", torch.float32).clone()
                  for layer in self.layers}
        return Domain(self.kind, list(self.layers), values, source_sha256, dict(architecture), dict(metadata), name)


def make_adapter(config, G_frozen: Any, targets: int = 1) -> DomainAdapter | None:
    """The adapter for ``config.adapt`` (None for ``full``, which the trainer handles itself)."""
    kind = getattr(config, "adapt", "full")
    if kind == "full":
        if targets != 1:
            raise InputError("several targets in one run train compact domains; add --adapt domain or "
                             "--adapt stylespace")
        return None
    # train_affine / train_const choose weights for --adapt full (where the official defaults turn them
    # on); a compact run trains style vectors only, so they do not apply here.
    return DomainAdapter(G_frozen, kind, include_torgb=config.train_torgb, targets=targets,
                         layers=config.domain_layers)


__all__ = ["ADAPT_KINDS", "DomainAdapter", "make_adapter"]
