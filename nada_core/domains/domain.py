"""A compact domain in memory: a kind, a layer table and one small vector per styled layer.

- ``domain`` (HyperDomainNet's channel-in modulation): the style of each layer becomes
  ``s * (1 + d)``; ``d`` starts at 0.
- ``stylespace`` (StyleDomain's StyleSpace offsets): ``s + delta``; ``delta`` starts at 0.

The vectors have one float32 entry per style channel (``[channels]``); for FFHQ-1024 config-f
that is 6,048 numbers over the 17 convs (``domain``), 9,088 with the toRGBs. Applying them is in
:mod:`nada_core.domains.apply`; files in :mod:`nada_core.domains.files`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import InputError
from .layers import KINDS, StyleLayer, style_layers


@dataclasses.dataclass
class Domain:
    """``values[path]``: ``[channels]`` float32 CPU tensor for each layer of ``layers`` (same order).

    ``source_sha256``: lineage of the generator it was trained on (None = unknown);
    ``architecture``: that generator's config as a dict; ``metadata``: provenance (prompts, CLIP
    models, settings, metrics); ``name``: a display name (the file stem when loaded).
    """

    kind: str
    layers: list[StyleLayer]
    values: dict[str, torch.Tensor]
    source_sha256: str | None = None
    architecture: dict = dataclasses.field(default_factory=dict)
    metadata: dict = dataclasses.field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"domain kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def num_values(self) -> int:
        return sum(layer.channels for layer in self.layers)

    @property
    def w_indices(self) -> list[int]:
        return sorted({layer.w_index for layer in self.layers})

    def summary(self) -> dict:
        """Plain-data description (for ``nada info`` and node text outputs)."""
        norms = {layer.path: float(self.values[layer.path].float().norm()) for layer in self.layers}
        return {
            "kind": self.kind,
            "name": self.name,
            "layers": len(self.layers),
            "values": self.num_values,
            "torgb": any(layer.kind == "torgb" for layer in self.layers),
            "w_indices": self.w_indices,
            "source_sha256": self.source_sha256 or "",
            "resolution": res if isinstance(res := self.architecture.get("img_resolution"), int)
            and not isinstance(res, bool) else None,
            "norm": float(sum(v * v for v in norms.values()) ** 0.5),
            "metadata": self.metadata,
        }


@dataclasses.dataclass(frozen=True)
class DomainSet:
    """Several domains trained in one run (one per target), in target order. Each domain's ``name``
    is its target reduced to a file-name-safe slug (``pencil_sketch``); NADA Save Domain writes one
    file per domain, NADA Pick Domain selects one."""

    domains: tuple[Domain, ...]

    def __len__(self) -> int:
        return len(self.domains)

    def __iter__(self):
        return iter(self.domains)

    def __getitem__(self, index: int) -> Domain:
        return self.domains[index]

    @property
    def names(self) -> list[str]:
        return [d.name or f"target{i}" for i, d in enumerate(self.domains)]

    def pick(self, index: int) -> Domain:
        """Domain ``index`` (0-based), or one :class:`InputError` line listing the choices."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.domains):
            listed = ", ".join(f"{i} = {n}" for i, n in enumerate(self.names))
            raise InputError(f"index {index!r} is not one of this run's {len(self.domains)} domains ({listed})")
        return self.domains[index]


def as_domain_list(item: Any) -> list[Domain]:
    """A :class:`Domain` or a :class:`DomainSet` -> its domains (anything else: one InputError line)."""
    if isinstance(item, Domain):
        return [item]
    if isinstance(item, DomainSet):
        return list(item.domains)
    raise InputError(f"expected a compact domain, got {type(item).__name__}")


def provenance_facts(metadata: Any) -> dict:
    """What a domain's provenance says, each field type-checked (the file's JSON is untrusted).

    ``source`` / ``target``: the prompts (or None), ``direction``: the raw direction record,
    ``clip_models``: ``[(name, weight), ...]``, ``metrics``: ``{name: (before, after)}`` numbers
    only, ``steps``: ``steps_done`` (or None), ``settings``: a dict (or None).
    """
    table = metadata if isinstance(metadata, dict) else {}
    nada = table.get("nada") if isinstance(table.get("nada"), dict) else {}
    direction = nada.get("direction")
    source = target = None
    if isinstance(direction, dict):
        source = direction.get("source_text", direction.get("source"))
        target = direction.get("target_text", direction.get("target"))
    clips = nada.get("clip_models") if isinstance(nada.get("clip_models"), list) else []
    metrics = table.get("metrics") if isinstance(table.get("metrics"), dict) else {}
    pairs = {}
    for key in ("directional_similarity", "diversity"):
        before, after = metrics.get(f"{key}_before"), metrics.get(f"{key}_after")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after)):
            pairs[key] = (float(before), float(after))
    return {"source": source, "target": target, "direction": direction,
            "clip_models": [(c.get("name"), c.get("weight")) for c in clips if isinstance(c, dict)],
            "metrics": pairs, "steps": nada.get("steps_done"),
            "settings": nada.get("settings") if isinstance(nada.get("settings"), dict) else None}


def new_domain(G: Any, kind: str, include_torgb: bool = False, metadata: dict | None = None) -> Domain:
    """A zero domain (the identity) for ``G``: every conv, plus the toRGBs with ``include_torgb``."""
    from ..formats.checkpoints import lineage_sha256

    layers = style_layers(G, include_torgb=include_torgb)
    values = {layer.path: torch.zeros(layer.channels) for layer in layers}
    config = getattr(G, "config", None)
    arch = config.to_dict() if hasattr(config, "to_dict") else {}
    return Domain(kind, layers, values, lineage_sha256(G), arch, dict(metadata or {}))


__all__ = ["Domain", "DomainSet", "as_domain_list", "new_domain", "provenance_facts"]
