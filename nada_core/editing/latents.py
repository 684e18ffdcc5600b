"""Latent codes as first-class objects: create, check, save, load and render them.

A :class:`Latents` holds W+ codes ``ws [N, num_ws, w_dim]`` (float32) plus what is needed to use
them safely later: the space they were found in, the *lineage* of the generator they belong to
(the sha256 of the original pretrained checkpoint; an adapted generator keeps its source's), and
a free-form provenance record (seeds, truncation, image names...). Optional extras:

- ``z [N, z_dim]``: the z codes, when the latents come from seeds (Z-space slerp needs them);
- ``noise``: per-image noise maps, one ``[N, 1, r, r]`` tensor per synthesis conv (``noise[i]``
  belongs to the conv driven by W+ entry ``i``), when an inversion optimised them.

Because NADA's adapted generators share the source generator's latent space, latents found on the
source render the same "person" in every adapted domain: :func:`check_compatible` allows exactly
that (same lineage) and refuses latents from an unrelated generator with a clear message.

Files are ``.safetensors`` with JSON metadata (:func:`save_latents`, atomic). :func:`load_latents`
also reads NVIDIA projector outputs (``projected_w.npz``) and plain ``.npy`` arrays.
"""

from __future__ import annotations

import dataclasses
import json  # dumps only; files are read with json_text.parse_json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import torch

from ..errors import CheckpointError, InputError

Space = Literal["w", "w+"]
LATENTS_FORMAT = "nada-latents"
LATENTS_FORMAT_VERSION = 1
log = logging.getLogger(__name__)
_NUM_WS_VALUES = (4, 6, 8, 10, 12, 14, 16, 18)  # 2 * log2(R) - 2 for R = 8 .. 1024


def generator_lineage(G: Any) -> str | None:
    """sha256 of the pretrained checkpoint ``G`` descends from, or None when unknown.

    Uses :func:`nada_core.formats.checkpoints.lineage_sha256` when available. Otherwise the same rule is
    applied here: the ``source_sha256`` recorded in ``G.metadata`` by the loaders (for a foreign
    file, that file's sha256; for our ``.safetensors``, the original source's, which adapted
    generators keep), else the loaded file's own ``G.source_sha256``; in-memory generators have none.
    """
    try:
        from ..formats.checkpoints import lineage_sha256
    except ImportError:
        meta = getattr(G, "metadata", None)
        value = meta.get("source_sha256") if isinstance(meta, dict) else None
        value = value or getattr(G, "source_sha256", None) or getattr(G, "lineage_sha256", None)
        return value if isinstance(value, str) and value else None
    return lineage_sha256(G)


def short_sha(sha: str | None) -> str:
    return sha[:12] if sha else "unknown"


@dataclasses.dataclass
class Latents:
    """A batch of W+ codes with its provenance.

    ``ws``: ``[N, num_ws, w_dim]`` float32 (W-space codes are stored broadcast over all entries;
    ``num_ws == 1`` marks a plain W code read from a foreign file, broadcast when rendered).
    ``space``: ``"w"`` (every entry equal) or ``"w+"``.
    ``lineage_sha256``: the generator lineage these codes belong to (None = unknown).
    ``provenance``: JSON-able record (e.g. ``seeds``, ``truncation_psi``, ``images``).
    ``z``: optional ``[N, z_dim]`` z codes; ``noise``: optional per-conv ``[N, 1, r, r]`` maps.
    """

    ws: torch.Tensor
    space: Space = "w+"
    lineage_sha256: str | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    z: torch.Tensor | None = None
    noise: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ws, torch.Tensor) or self.ws.ndim != 3:
            shape = list(self.ws.shape) if isinstance(self.ws, torch.Tensor) else type(self.ws).__name__
            raise InputError(f"latent codes must have shape [N, num_ws, w_dim], got {shape}")
        if self.ws.shape[0] < 1:
            raise InputError("latent codes are empty; give at least one code")
        if self.ws.shape[1] < 1 or self.ws.shape[2] < 1:
            raise InputError(f"latent codes must have at least one W+ entry of at least one value, got shape "
                             f"{list(self.ws.shape)}")
        if not self.ws.is_floating_point():  # ints, bools or complex cannot be latent codes
            raise InputError(f"latent codes must be floats, got {self.ws.dtype}")
        self.ws = self.ws.detach().float()
        if self.space not in ("w", "w+"):
            raise InputError(f"latent space must be 'w' or 'w+', got {self.space!r}")
        if self.z is not None:
            self.z = self.z.detach().float()
            if self.z.ndim != 2 or self.z.shape[0] != self.ws.shape[0]:
                raise InputError(f"z codes must have shape [{self.ws.shape[0]}, z_dim], got {list(self.z.shape)}")
        if self.noise is not None:
            self.noise = [n.detach().float() for n in self.noise]
            for n in self.noise:
                if n.ndim != 4 or n.shape[0] != self.ws.shape[0] or n.shape[1] != 1:
                    raise InputError(f"noise maps must have shape [{self.ws.shape[0]}, 1, r, r], got {list(n.shape)}")

    # Sizes -----------------------------------------------------------------------------------
    @property
    def num_ws(self) -> int:
        return int(self.ws.shape[1])

    @property
    def w_dim(self) -> int:
        return int(self.ws.shape[2])

    def __len__(self) -> int:
        return int(self.ws.shape[0])

    # Convenience -----------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> "Latents":
        return dataclasses.replace(
            self, ws=self.ws.to(device), z=None if self.z is None else self.z.to(device),
            noise=None if self.noise is None else [n.to(device) for n in self.noise],
            provenance=dict(self.provenance))

    def select(self, indices: int | Sequence[int]) -> "Latents":
        """A subset of the codes (z and noise follow), e.g. ``lat.select([0, 2])``."""
        idx = [indices] if isinstance(indices, int) else list(indices)
        for i in idx:
            if not -len(self) <= i < len(self):
                raise InputError(f"latent index {i} out of range; this file has {len(self)} code(s) (0..{len(self) - 1})")
        t = torch.tensor(idx, dtype=torch.long)
        prov = dict(self.provenance)
        for key, value in self.provenance.items():  # keep per-code lists aligned
            if isinstance(value, list) and len(value) == len(self):
                prov[key] = [value[i] for i in idx]
        return Latents(self.ws[t.to(self.ws.device)], self.space, self.lineage_sha256, prov,
                       None if self.z is None else self.z[t.to(self.z.device)],
                       None if self.noise is None else [n[t.to(n.device)] for n in self.noise])

    def broadcast(self, num_ws: int) -> "Latents":
        """Expand a plain W code (``num_ws == 1``) to ``num_ws`` entries; others must already match."""
        if self.num_ws == num_ws:
            return self
        if self.num_ws != 1:
            raise InputError(f"these latents have {self.num_ws} W+ entries, cannot use them as {num_ws}")
        return dataclasses.replace(self, ws=self.ws.expand(-1, num_ws, -1).contiguous(), provenance=dict(self.provenance))

    @staticmethod
    def concat(items: Sequence["Latents"]) -> "Latents":
        """Join several batches (same shape, same lineage or unknown) into one."""
        if not items:
            raise InputError("nothing to join; give at least one set of latents")
        first = items[0]
        for other in items[1:]:
            if other.ws.shape[1:] != first.ws.shape[1:]:
                raise InputError(f"cannot join latents of shapes {list(first.ws.shape[1:])} and {list(other.ws.shape[1:])}")
        shas = {it.lineage_sha256 for it in items if it.lineage_sha256}
        if len(shas) > 1:
            raise CheckpointError("cannot join latents of different generators (lineage "
                                  + ", ".join(sorted(short_sha(s) for s in shas)) + ")")
        space: Space = "w" if all(it.space == "w" for it in items) else "w+"
        z = torch.cat([it.z for it in items]) if all(it.z is not None for it in items) else None
        noise = None
        if all(it.noise is not None for it in items):
            noise = [torch.cat(parts) for parts in zip(*[it.noise for it in items])]
        return Latents(torch.cat([it.ws for it in items]), space, next(iter(shas), None),
                       {"joined": [it.provenance for it in items]}, z, noise)


# ----------------------------------------------------------------------------------------------
# Compatibility with a generator
# ----------------------------------------------------------------------------------------------


def check_compatible(latents: Latents, G: Any) -> str | None:
    """Raise if ``latents`` cannot be used with generator ``G``; return a note when it is unverifiable.

    - ``w_dim`` or number of W+ entries differ -> :class:`InputError` (different architecture);
    - lineage known on both sides and different -> :class:`CheckpointError` naming both prefixes;
    - lineage unknown on either side -> allowed; returns a short note (also logged at INFO).
    """
    if latents.w_dim != G.w_dim or latents.num_ws not in (1, G.num_ws):
        raise InputError(
            f"latents of shape [{len(latents)}, {latents.num_ws}, {latents.w_dim}] do not fit this generator "
            f"(needs [N, {G.num_ws}, {G.w_dim}], a {G.img_resolution} px model); "
            f"use latents made with a generator of the same resolution and family")
    g_sha = generator_lineage(G)
    l_sha = latents.lineage_sha256
    if g_sha and l_sha and g_sha != l_sha:
        raise CheckpointError(
            f"latents belong to generator lineage {short_sha(l_sha)} but this generator descends from "
            f"{short_sha(g_sha)}; use a generator adapted from the same source checkpoint, or invert the image again")
    if not (g_sha and l_sha):
        note = ("cannot verify that the latents belong to this generator (lineage unknown for the "
                + ("latents" if not l_sha else "generator") + "); rendering anyway")
        log.info(note)
        return note
    return None


# ----------------------------------------------------------------------------------------------
# Creating and rendering
# ----------------------------------------------------------------------------------------------


def _space_of(ws: torch.Tensor) -> Space:
    return "w" if bool((ws == ws[:, :1]).all()) else "w+"


@torch.no_grad()
def latents_from_seeds(G: Any, seeds: str | int | Iterable[int], truncation_psi: float = 1.0,
                       truncation_cutoff: int | None = None, class_index: int | None = None) -> Latents:
    """Map seeds to latents with ``G.mapping`` (z drawn exactly like NVIDIA's tools).

    ``seeds``: ``"0-7,9"``, an int, or a list of ints. ``class_index``: the class of a
    class-conditional generator (one-hot ``c``, the same for every seed; None or -1 for
    unconditional ones). Returns :class:`Latents` with ``ws [N, num_ws, w_dim]`` on the CPU,
    ``z [N, z_dim]``, ``space`` ``"w"`` (or ``"w+"`` when a truncation cutoff makes the entries
    differ) and provenance ``seeds``/``truncation_psi``/``truncation_cutoff`` (+ ``class_index``).
    """
    from ..models.conditioning import class_one_hot
    from ..seeds import parse_seeds, z_from_seeds
    from ..settings import SAMPLE, check

    truncation_psi = check(SAMPLE["truncation_psi"], truncation_psi)
    if truncation_cutoff is not None:
        truncation_cutoff = check(SAMPLE["truncation_cutoff"], truncation_cutoff)
    if class_index is not None:
        class_index = check(SAMPLE["class_index"], class_index)
    seed_list = parse_seeds(seeds)
    device = G.w_avg.device
    c = class_one_hot(getattr(G, "c_dim", 0), class_index, len(seed_list), device)
    z = z_from_seeds(seed_list, G.z_dim, device=device)
    ws = G.mapping(z, c, truncation_psi=float(truncation_psi), truncation_cutoff=truncation_cutoff)
    prov = {"source": "seeds", "seeds": seed_list, "truncation_psi": float(truncation_psi),
            "truncation_cutoff": truncation_cutoff}
    if c is not None:
        prov["class_index"] = int(class_index)
    return Latents(ws.float().cpu(), _space_of(ws), generator_lineage(G), prov, z.cpu())


def synthesize(G: Any, ws: torch.Tensor, noise: Sequence[torch.Tensor] | None = None,
               noise_mode: str = "const", input_transform: torch.Tensor | None = None) -> torch.Tensor:
    """``G.synthesis(ws)``, with optional per-image noise maps (``noise[i]``: ``[N, 1, r, r]`` for conv ``i``).

    The generator itself is not modified: the maps replace the convs' ``noise_const`` buffers for
    this call only (``torch.func.functional_call``). Differentiable in ``ws`` and ``noise``.
    ``input_transform``: StyleGAN3's ``[3, 3]`` input transform for this call (see
    :mod:`nada_core.editing.transforms`); StyleGAN2 generators have none and refuse one.
    """
    if input_transform is not None:
        if not hasattr(G.synthesis, "input"):
            raise InputError("translate/rotate need a StyleGAN3 generator; this StyleGAN2 one has no input transform")
        if noise:
            raise InputError("StyleGAN3 generators have no noise inputs; use latents without noise maps")
        return G.synthesis(ws, noise_mode=noise_mode, input_transform=input_transform)
    if noise is None or noise_mode != "const":
        return G.synthesis(ws, noise_mode=noise_mode)
    convs = getattr(G.synthesis, "convs", None)
    if convs is None:  # StyleGAN3 has no noise inputs
        if len(noise):
            raise InputError(f"these latents carry {len(noise)} noise maps, but this StyleGAN3 generator has no "
                             f"noise inputs; use latents made for it (or without noise maps)")
        return G.synthesis(ws, noise_mode=noise_mode)
    if len(noise) != len(convs):
        raise InputError(f"got {len(noise)} noise maps but the generator has {len(convs)} convolutions")
    overrides = {f"convs.{i}.noise_const": n for i, n in enumerate(noise)}
    return torch.func.functional_call(G.synthesis, overrides, (ws,), {"noise_mode": "const"}, strict=False)


def render(G: Any, latents: Latents, noise_mode: str = "const", batch_size: int = 8,
           out_device: str | torch.device = "cpu",
           on_progress: Callable[[int, int], None] | None = None,
           input_transform: torch.Tensor | None = None) -> torch.Tensor:
    """Render every code: ``[N, 3, R, R]`` float32 about [-1, 1] on ``out_device``.

    Checks :func:`check_compatible` first; runs in batches of ``batch_size`` without gradients;
    uses the latents' own noise maps when they have some and ``noise_mode == "const"``.
    ``on_progress(done, total)`` is called after each batch. ``input_transform``: StyleGAN3's
    ``[3, 3]`` input transform (translation/rotation, see :mod:`nada_core.editing.transforms`).
    """
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    check_compatible(latents, G)
    if not bool(torch.isfinite(latents.ws).all()):
        raise InputError("these latent codes hold NaN/inf values, which would render as garbage; "
                         "recompute or reload them")
    latents = latents.broadcast(G.num_ws)
    device = G.w_avg.device
    dtype = next(G.synthesis.parameters()).dtype
    out = []
    n = len(latents)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            ws = latents.ws[start:stop].to(device=device, dtype=dtype)
            noise = None
            if latents.noise is not None:
                noise = [m[start:stop].to(device=device, dtype=dtype) for m in latents.noise]
            out.append(synthesize(G, ws, noise, noise_mode, input_transform).float().to(out_device))
            if on_progress is not None:
                on_progress(stop, n)
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def save_latents(latents: Latents, path: str | os.PathLike) -> Path:
    """Write ``latents`` to a ``.safetensors`` file (atomic) with JSON-able metadata.

    Tensors: ``ws``, optional ``z`` and ``noise.NN``. Metadata: ``format``, ``format_version``,
    ``space``, ``lineage_sha256``, ``count``, ``num_ws``, ``w_dim``, ``provenance`` (JSON).
    """
    from safetensors.torch import save_file

    from ..atomic import atomic_write

    tensors = {"ws": latents.ws.detach().float().cpu().contiguous()}
    if latents.z is not None:
        tensors["z"] = latents.z.detach().float().cpu().contiguous()
    for i, n in enumerate(latents.noise or []):
        tensors[f"noise.{i:02d}"] = n.detach().float().cpu().contiguous()
    try:
        provenance = json.dumps(latents.provenance)
    except TypeError as err:
        raise InputError(f"latent provenance must be JSON-able: {err}") from None
    meta = {
        "format": LATENTS_FORMAT,
        "format_version": str(LATENTS_FORMAT_VERSION),
        "space": latents.space,
        "lineage_sha256": latents.lineage_sha256 or "",
        "count": str(len(latents)),
        "num_ws": str(latents.num_ws),
        "w_dim": str(latents.w_dim),
        "provenance": provenance,
    }
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_latents(path: str | os.PathLike) -> Latents:
    """Read latents written by :func:`save_latents`, an NVIDIA projector ``.npz`` or a ``.npy`` array.

    Foreign arrays may be ``[N, num_ws, w_dim]``, ``[num_ws, w_dim]`` (one W+ code; recognised by
    its row count 4, 6, ..., 18), ``[N, w_dim]`` or ``[w_dim]`` (plain W codes come back with
    ``num_ws == 1`` and are broadcast when rendered); their lineage is unknown.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"latents file not found: {p}")
    suffix = p.suffix.lower()
    if suffix in (".npz", ".npy"):
        return _load_numpy(p)
    return _load_safetensors(p)


MAX_LATENT_VALUES = 64 * 2**20  # floats in one foreign array (real files hold a few thousand per code)
_SAFETENSORS_FIX = "is it a .safetensors latents file (truncated or corrupt files must be saved again)?"
MAX_NOISE_MAPS = 64  # per-conv noise maps saved with inverted codes: 17 for a 1024 px StyleGAN2


def _check_finite(t: torch.Tensor, what: str, p: Path) -> None:
    if not t.is_floating_point():
        return  # Latents refuses non-float codes in its own words
    t = t.float()  # as stored in Latents: float64 beyond the float32 range becomes inf
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise CheckpointError(f"latents file {p.name}: {what} holds {bad} NaN/inf value(s), which would "
                              "poison every image; invert or save the codes again")


def _build(p: Path, ws, space, lineage, provenance, z=None, noise=None) -> Latents:
    """:class:`Latents` from a file's parts, with shape/space problems reported against the file."""
    _check_finite(ws, "'ws'", p)
    if z is not None:
        _check_finite(z, "'z'", p)
    for i, n in enumerate(noise or []):
        _check_finite(n, f"noise map {i}", p)
    try:
        return Latents(ws, space, lineage, provenance, z, noise)
    except InputError as err:
        raise CheckpointError(f"latents file {p.name}: {err}; pick a file written by 'nada invert' or save_latents") from None


def _load_safetensors(p: Path) -> Latents:
    from safetensors import safe_open

    from ..formats.safetensors_header import read_header
    from ..json_text import parse_json

    read_header(p, what=f"cannot read latents file {p.name}", fix=_SAFETENSORS_FIX)  # size-checked first
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = set(fh.keys())
            noise_keys = sorted(k for k in keys if k.startswith("noise."))
            if len(noise_keys) > MAX_NOISE_MAPS:
                raise CheckpointError(f"latents file {p.name} lists {len(noise_keys)} noise maps, more than any "
                                      f"generator has ({MAX_NOISE_MAPS}); the file is corrupt or hostile")
            # Only what a latents file holds is read (a hostile file may list thousands of tensors).
            tensors = {k: fh.get_tensor(k) for k in ("ws", "z", *noise_keys) if k in keys}
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise CheckpointError(f"cannot read latents file {p.name}: {reason}; {_SAFETENSORS_FIX}") from None
    if "ws" not in tensors:
        hint = " (it looks like a generator checkpoint)" if any(k.startswith(("mapping.", "synthesis.")) for k in keys) else ""
        raise CheckpointError(f"{p.name} holds no latent codes (no 'ws' tensor){hint}; pick a file written by 'nada invert' or save_latents")
    provenance = parse_json(meta.get("provenance") or "{}", f"latents file {p.name}: provenance metadata",
                            "save the latents again", expect=dict, error=CheckpointError)
    space = meta.get("space") or _space_of(tensors["ws"])
    noise = [tensors[k] for k in noise_keys] or None
    return _build(p, tensors["ws"], space, meta.get("lineage_sha256") or None, provenance, tensors.get("z"), noise)


def _load_numpy(p: Path) -> Latents:
    from ..formats.numpy_files import read_numpy_array

    arr = read_numpy_array(p, kind="latents file", max_values=MAX_LATENT_VALUES,
                           fix="save the codes again as .npy/.npz of floats or as .safetensors",
                           keys=("w", "ws", "latent", "latents", "dlatents"), names_hint="one named 'w' or 'ws'")
    ws = torch.from_numpy(arr)
    if ws.ndim == 1:
        ws = ws[None, None]
    elif ws.ndim == 2:
        # One W+ code [num_ws, w_dim] when the row count is a StyleGAN2 num_ws (8 px .. 1024 px),
        # otherwise N plain W codes [N, w_dim]. Save a 3-D array to avoid the guess.
        ws = ws[None] if ws.shape[0] in _NUM_WS_VALUES else ws[:, None]
    if ws.ndim != 3:
        raise CheckpointError(f"{p.name} holds an array of shape {list(arr.shape)}; expected [N, num_ws, w_dim]")
    return _build(p, ws, _space_of(ws), None, {"source": "file", "file": p.name})
