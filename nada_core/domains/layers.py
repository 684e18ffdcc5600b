"""The style layers a compact domain acts on, read from a generator through one contract.

Every generator architecture offers ``G.synthesis.style_affines()``: for each modulated conv or
toRGB, ``(path, affine module, W+ index, kind)``, where the affine's output is that layer's style
``s`` ``[N, channels]``. Domains are built on this list only (no architecture internals), so a new
architecture gets domains by implementing the contract.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from torch import nn

from ..errors import CheckpointError, InputError

KINDS = ("domain", "stylespace")
LAYER_KINDS = ("conv", "torgb")


@dataclasses.dataclass(frozen=True)
class StyleLayer:
    """One styled layer: ``path`` of its affine relative to the generator (e.g.
    ``synthesis.convs.3.conv.affine``), the W+ index driving it, ``conv``/``torgb`` and the
    number of style channels (the affine's outputs)."""

    path: str
    w_index: int
    kind: str
    channels: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _channels(module: nn.Module) -> int:
    """Output count of a linear-like affine (``weight`` is ``[out, in]``)."""
    out = getattr(module, "out_features", None)
    if isinstance(out, int):
        return out
    weight = getattr(module, "weight", None)
    if weight is None or weight.ndim != 2:
        raise InputError(f"style affine {type(module).__name__} has no [out, in] weight; this architecture does "
                         "not support domains")
    return int(weight.shape[0])


def style_affines(G: Any) -> list[tuple[str, nn.Module, int, str]]:
    """``G.synthesis.style_affines()``, or one :class:`InputError` line when ``G`` lacks the contract."""
    syn = getattr(G, "synthesis", None)
    fn = getattr(syn, "style_affines", None)
    if not callable(fn):
        raise InputError(f"{type(G).__name__} does not expose its style layers (synthesis.style_affines); "
                         "domains need a ComfyUI-NADA generator")
    return list(fn())


def style_layers(G: Any, include_torgb: bool = True) -> list[StyleLayer]:
    """The :class:`StyleLayer` table of ``G`` (convs first, then toRGBs, as the contract lists them)."""
    return [StyleLayer(path, int(idx), kind, _channels(mod)) for path, mod, idx, kind in style_affines(G)
            if include_torgb or kind == "conv"]


def layers_from_json(data: Any, where: str, max_layers: int, max_channels: int) -> list[StyleLayer]:
    """Layer table from untrusted JSON (a domain file's metadata): checked types and bounds."""
    if not isinstance(data, list) or not data:
        raise CheckpointError(f"{where}: 'layers' must be a non-empty list; the file is corrupt")
    if len(data) > max_layers:
        raise CheckpointError(f"{where}: lists {len(data)} layers, more than any generator has ({max_layers}); "
                              "the file is corrupt or hostile")
    out: list[StyleLayer] = []
    seen: set[str] = set()
    for entry in data:
        ok = isinstance(entry, dict) and isinstance(entry.get("path"), str) and 0 < len(entry["path"]) <= 200
        for key, hi in (("w_index", 255), ("channels", max_channels)):
            v = entry.get(key) if isinstance(entry, dict) else None
            ok = ok and isinstance(v, int) and not isinstance(v, bool) and (0 if key == "w_index" else 1) <= v <= hi
        ok = ok and entry.get("kind") in LAYER_KINDS
        if not ok:
            raise CheckpointError(f"{where}: a 'layers' entry is malformed ({str(entry)[:80]}); the file is corrupt")
        if entry["path"] in seen:
            raise CheckpointError(f"{where}: layer {entry['path']} is listed twice; the file is corrupt")
        seen.add(entry["path"])
        out.append(StyleLayer(entry["path"], entry["w_index"], entry["kind"], entry["channels"]))
    return out


def select_w_indices(layers: Iterable[StyleLayer], indices: Iterable[int] | None) -> list[StyleLayer]:
    """The layers driven by W+ ``indices`` (None = all)."""
    if indices is None:
        return list(layers)
    keep = {int(i) for i in indices}
    return [layer for layer in layers if layer.w_index in keep]


__all__ = ["KINDS", "LAYER_KINDS", "StyleLayer", "layers_from_json", "select_w_indices", "style_affines",
           "style_layers"]
