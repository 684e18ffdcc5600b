"""Semantic editing directions in W: SeFa, GANSpace, and applying a direction to W+ codes.

These are *latent* editing directions (unit vectors ``[w_dim]`` in the generator's W space, moving
a face's pose, age, smile...), not the CLIP-space directions of :mod:`nada_core.guidance.directions`.
Because NADA keeps the source generator's latent space, a direction found on the source generator
edits the same attribute in every generator adapted from it.

- :func:`sefa_directions`: closed form from the generator's own style-affine weights, no data
  (Shen & Zhou, "Closed-Form Factorization of Latent Semantics in GANs"). Every style channel's
  weight row (``affine.weight[c]``, length ``w_dim``) of the chosen layers is normalised to unit
  length; these rows stacked are ``A [C_total, w_dim]``; the directions are the eigenvectors of
  ``AᵀA`` sorted by eigenvalue, largest first. Per-row normalisation makes the affines' equalised
  learning-rate gains (one scalar per layer) irrelevant.
- :func:`ganspace_directions`: PCA of W codes mapped from seeded z (Härkönen et al., "GANSpace"):
  the principal axes of W, largest standard deviation first.
- :func:`edit`/:func:`sweep`: ``w[:, layers] += strength * d`` on W+ codes.

Eigenvectors and principal axes are defined only up to sign; here each vector's largest-magnitude
component is made positive, so results are reproducible across machines (flip ``strength`` to walk
the other way).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Literal, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, InputError
from .latents import Latents, generator_lineage, short_sha

Method = Literal["sefa", "ganspace", "file"]
TorgbMode = Literal["none", "last", "all"]
MAX_GANSPACE_SAMPLES = 10_000_000


@dataclasses.dataclass
class Directions:
    """A set of latent editing directions (what the ``NADA_DIRECTIONS`` socket carries).

    ``vectors``: ``[K, w_dim]`` float32 on the CPU (SeFa/GANSpace: unit length, mutually orthogonal).
    ``values``: ``[K]`` float32: SeFa eigenvalues, GANSpace standard deviations of W along each
    axis, or the vectors' norms for files. ``method``: ``"sefa"``, ``"ganspace"`` or ``"file"``.
    ``layers``: the W+ entries the directions were found for and are applied to by default
    (None = every entry). ``lineage_sha256``: the generator lineage they were found on (None =
    unknown, e.g. an InterFaceGAN boundary). ``names``: optional label per vector.

    Unpacks as ``vectors, values = sefa_directions(G)``.
    """

    vectors: torch.Tensor
    values: torch.Tensor
    method: Method = "file"
    layers: list[int] | None = None
    lineage_sha256: str | None = None
    names: list[str] | None = None
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        v = self.vectors
        if not isinstance(v, torch.Tensor) or v.ndim != 2 or v.shape[0] < 1 or v.shape[1] < 1:
            shape = list(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise InputError(f"editing directions must have shape [K, w_dim], got {shape}")
        if not v.is_floating_point() or not torch.as_tensor(self.values).is_floating_point():
            raise InputError(f"editing directions must be float vectors, got {v.dtype}")
        self.vectors = v.detach().float().cpu().contiguous()
        if not bool(torch.isfinite(self.vectors).all()):
            raise InputError("editing directions hold NaN/inf values; compute or save them again")
        self.values = torch.as_tensor(self.values).detach().float().cpu().reshape(-1)
        if self.values.numel() != self.vectors.shape[0]:
            raise InputError(f"got {self.values.numel()} values for {self.vectors.shape[0]} directions")
        if not bool(torch.isfinite(self.values).all()):
            raise InputError("editing direction values hold NaN/inf; compute or save them again")
        if self.names is not None and len(self.names) != len(self):
            raise InputError(f"got {len(self.names)} names for {len(self)} directions")
        if self.layers is not None:
            self.layers = sorted({int(i) for i in self.layers})

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.vectors, self.values))

    @property
    def w_dim(self) -> int:
        return int(self.vectors.shape[1])

    def vector(self, index: int) -> torch.Tensor:
        """Direction ``index`` as ``[w_dim]`` (0 = the strongest for SeFa/GANSpace)."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not -len(self) <= index < len(self):
            raise InputError(f"direction index {index!r} is out of range; this set has {len(self)} "
                             f"direction(s) (0..{len(self) - 1})")
        return self.vectors[int(index)]

    def label(self, index: int) -> str:
        self.vector(index)
        if self.names:
            return self.names[index]
        return f"{self.method}:{index if index >= 0 else len(self) + index}"


# ----------------------------------------------------------------------------------------------
# Style affines of any generator
# ----------------------------------------------------------------------------------------------


def _style_affines(G: Any) -> list[tuple[str, torch.nn.Module, int, str]]:
    """``(path, affine, w_index, kind)`` for every modulated layer; ``kind`` is ``"conv"`` or ``"torgb"``.

    Uses ``G.synthesis.style_affines()`` when the architecture provides it, else StyleGAN2's
    ``conv_for_w_index``/``torgb_for_w_index``. An affine's ``weight`` is ``[in_channels, w_dim]``.
    """
    syn = G.synthesis
    if hasattr(syn, "style_affines"):
        return [(str(p), m, int(i), str(k)) for p, m, i, k in syn.style_affines()]
    if not hasattr(syn, "conv_for_w_index"):
        raise InputError(f"{type(G).__name__} exposes no style affines; SeFa needs a StyleGAN generator")
    names = {id(m): n for n, m in G.named_modules()} if hasattr(G, "named_modules") else {}
    out = []
    for i in range(G.num_ws):
        conv = syn.conv_for_w_index(i)
        rgb = syn.torgb_for_w_index(i) if hasattr(syn, "torgb_for_w_index") else None
        for mod, kind in ((conv, "conv"), (rgb, "torgb")):
            if mod is not None:
                affine = mod.conv.affine
                out.append((names.get(id(affine), f"w{i}.{kind}.affine"), affine, i, kind))
    return out


def _layer_list(G: Any, layers: Any) -> list[int] | None:
    if layers is None or (isinstance(layers, str) and layers.strip().lower() in ("", "all")):
        return None
    from .interpolate import parse_layers

    return parse_layers(layers, G.num_ws)


def sefa_affines(G: Any, layers: Any = None, torgb: TorgbMode = "none") -> list[tuple[str, torch.nn.Module, int, str]]:
    """The style affines SeFa factorises for W+ entries ``layers`` (None/"all" = every entry).

    ``torgb``: ``"none"`` (default) uses only the styled convs; ``"last"`` adds the final toRGB,
    which alone reads the last W+ entry (this is the layer set of the SeFa authors' code for
    StyleGAN2 with ``layer_idx='all'``: one affine per W+ entry); ``"all"`` adds every toRGB.
    """
    if torgb not in ("none", "last", "all"):
        raise InputError(f"torgb must be 'none', 'last' or 'all', got {torgb!r}")
    chosen = _layer_list(G, layers)
    entries = set(range(G.num_ws)) if chosen is None else set(chosen)
    affines = _style_affines(G)
    conv_entries = {i for _, _, i, k in affines if k == "conv"}
    picked = []
    for path, mod, i, kind in affines:
        if i not in entries:
            continue
        if kind == "conv" or torgb == "all" or (torgb == "last" and i not in conv_entries):
            picked.append((path, mod, i, kind))
    if not picked:
        raise InputError(f"W+ entries {sorted(entries)} drive no styled convolution (only toRGB); pick other "
                         "layers or use torgb 'last'/'all'")
    return picked


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so its largest-magnitude component is positive (eigenvectors are sign-free)."""
    idx = vectors.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(vectors.gather(1, idx))
    sign[sign == 0] = 1
    return vectors * sign


def _check_k(k: int, w_dim: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= w_dim:
        raise InputError(f"number of directions must be a whole number in [1, {w_dim}] (w_dim), got {k!r}")
    return int(k)


@torch.no_grad()
def sefa_directions(G: Any, layers: Any = None, k: int = 10, torgb: TorgbMode = "none") -> Directions:
    """SeFa directions of generator ``G``: the top-``k`` eigenvectors of ``AᵀA`` (see module docs).

    ``layers``: W+ entries whose style affines are factorised (``"0-5"``, ``"coarse"``, a list;
    None/"all" = every entry) and to which :func:`edit` applies them by default. ``torgb``: see
    :func:`sefa_affines`. Returns :class:`Directions` (``vectors [k, w_dim]`` unit, ``values [k]``
    eigenvalues, descending); ``vectors, values = sefa_directions(G)`` unpacks them.
    """
    k = _check_k(k, G.w_dim)
    picked = sefa_affines(G, layers, torgb)
    rows = []
    for path, mod, _, _ in picked:
        w = mod.weight.detach().cpu().double()  # on the CPU first: MPS has no float64
        if w.ndim != 2 or w.shape[1] != G.w_dim:
            raise InputError(f"style affine {path} has weight shape {list(w.shape)}; expected [channels, {G.w_dim}]")
        rows.append(w)
    A = torch.cat(rows)  # [C_total, w_dim]
    norms = A.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()) or not bool(torch.isfinite(A).all()):
        raise CheckpointError("a style affine of this generator has an all-zero or non-finite weight row; "
                              "SeFa cannot normalise it (is the checkpoint damaged?)")
    A = A / norms
    evals, evecs = torch.linalg.eigh(A.T @ A)  # ascending; AᵀA is symmetric PSD
    order = torch.argsort(evals, descending=True)[:k]
    vectors = _fix_signs(evecs[:, order].T.contiguous())
    chosen = _layer_list(G, layers)
    prov = {"method": "sefa", "layers": "all" if chosen is None else chosen, "torgb": torgb,
            "affines": [p for p, _, _, _ in picked], "channels": int(A.shape[0])}
    return Directions(vectors.float(), evals[order].float(), "sefa", chosen, generator_lineage(G),
                      [f"sefa:{i}" for i in range(k)], prov)


@torch.no_grad()
def ganspace_directions(G: Any, n_samples: int = 50_000, k: int = 10, seed: int = 0,
                        batch_size: int = 4096, on_progress=None, should_stop=None) -> Directions:
    """GANSpace directions: PCA of ``n_samples`` W codes ``G.mapping(z)`` (no truncation).

    z is drawn as ``numpy.random.RandomState(seed).standard_normal((n_samples, z_dim))`` (in row
    chunks, the same stream), so a seed always gives the same directions. The covariance is
    accumulated in float64 on the CPU. Returns :class:`Directions` with ``vectors [k, w_dim]``
    (unit, orthogonal, largest variance first), ``values [k]`` = the standard deviation of W along
    each axis (sample std, ``n - 1``), and ``provenance["mean"]``, the mean W (list of floats).
    ``on_progress(done, total)`` after each batch; ``should_stop()`` -> True stops with
    :class:`~nada_core.errors.Interrupted`.
    """
    from ..errors import Interrupted
    from ..settings import EDIT, check

    k = _check_k(k, G.w_dim)
    n = check(EDIT["n_samples"], n_samples)
    seed = check(EDIT["seed"], seed)
    if n <= k:
        raise InputError(f"GANSpace needs more samples than directions ({n} samples for {k} directions)")
    rng = np.random.RandomState(seed)
    device = G.w_avg.device
    dtype = G.w_avg.dtype
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    outer = torch.zeros(G.w_dim, G.w_dim, dtype=torch.float64)
    done = 0
    while done < n:
        if should_stop is not None and should_stop():
            raise Interrupted("GANSpace stopped before it finished; nothing was computed")
        b = min(batch_size, n - done)
        z = torch.from_numpy(rng.standard_normal((b, G.z_dim))).to(device=device, dtype=dtype)
        w = G.mapping(z, truncation_psi=1.0)[:, 0].cpu().double()
        total += w.sum(0)
        outer += w.T @ w
        done += b
        if on_progress is not None:
            on_progress(done, n)
    mean = total / n
    cov = (outer - n * torch.outer(mean, mean)) / (n - 1)
    cov = (cov + cov.T) / 2
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:k]
    vectors = _fix_signs(evecs[:, order].T.contiguous())
    stdev = evals[order].clamp_min(0).sqrt()
    prov = {"method": "ganspace", "n_samples": n, "seed": seed, "mean": [float(x) for x in mean]}
    return Directions(vectors.float(), stdev.float(), "ganspace", None, generator_lineage(G),
                      [f"ganspace:{i}" for i in range(k)], prov)


def check_directions_compatible(directions: Directions, G: Any) -> None:
    """Refuse directions of another width or from another generator lineage (one line)."""
    if directions.w_dim != G.w_dim:
        raise InputError(f"these directions have {directions.w_dim} dimensions but the generator's W has "
                         f"{G.w_dim}; use directions found on (or made for) this generator family")
    g_sha, d_sha = generator_lineage(G), directions.lineage_sha256
    if g_sha and d_sha and g_sha != d_sha:
        raise CheckpointError(f"these directions were found on generator lineage {short_sha(d_sha)} but this "
                              f"generator descends from {short_sha(g_sha)}; find them on its source generator")
    if directions.layers is not None and max(directions.layers) >= G.num_ws:
        raise InputError(f"these directions were found for W+ entries up to {max(directions.layers)} but this "
                         f"generator has entries 0-{G.num_ws - 1}; choose the layers again")


# ----------------------------------------------------------------------------------------------
# Editing
# ----------------------------------------------------------------------------------------------


def _direction_vector(direction: Any, index: int | None) -> tuple[torch.Tensor, list[int] | None, str]:
    if isinstance(direction, Directions):
        if index is None:
            if len(direction) != 1:
                raise InputError(f"this direction set holds {len(direction)} directions; say which one (index)")
            index = 0
        return direction.vector(index), direction.layers, direction.label(index)
    if not isinstance(direction, torch.Tensor):
        direction = torch.as_tensor(np.asarray(direction, dtype=np.float32))
    d = direction.detach().float()
    if d.ndim == 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 1:
        raise InputError(f"an editing direction must have shape [w_dim] or [1, w_dim], got {list(direction.shape)}")
    return d, None, "vector"


def _resolve_layers(layers: Any, default: list[int] | None, num_ws: int) -> list[int] | None:
    if layers is None:
        return default
    if isinstance(layers, str) and layers.strip().lower() in ("", "all"):
        return None
    from .interpolate import parse_layers

    return parse_layers(layers, num_ws)


def edit(latents: Latents | torch.Tensor, direction: Directions | torch.Tensor, strength: float,
         layers: Any = None, index: int | None = None) -> Latents | torch.Tensor:
    """Move W+ codes along ``direction``: ``ws[:, layers] += strength * d``.

    ``latents``: :class:`Latents` or a ``[N, num_ws, w_dim]`` tensor (a tensor comes back).
    ``direction``: a ``[w_dim]``/``[1, w_dim]`` vector, or :class:`Directions` with ``index``.
    ``layers``: W+ entries to move (``"0-5"``, ``"coarse"``, a list, ``"all"``); None = the
    direction set's own layers (SeFa with a layer range) or every entry. Plain W codes
    (``num_ws == 1``) can only be moved as a whole; broadcast them first to edit some layers.
    The z codes are dropped (they no longer map to the edited codes); noise maps are kept.
    """
    from ..settings import EDIT, check

    strength = check(EDIT["strength"], strength) if not isinstance(strength, torch.Tensor) else float(strength)
    d, default_layers, label = _direction_vector(direction, index)
    ws = latents.ws if isinstance(latents, Latents) else latents
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3:
        raise InputError(f"latent codes must have shape [N, num_ws, w_dim], got {list(getattr(ws, 'shape', []))}")
    if d.shape[0] != ws.shape[2]:
        raise InputError(f"the direction has {d.shape[0]} dimensions but the codes' W has {ws.shape[2]}; use a "
                         "direction made for this generator")
    num_ws = int(ws.shape[1])
    if num_ws == 1:  # a plain W code stands for every entry: it can only move as a whole
        whole = (layers is None and default_layers is None) or (
            isinstance(layers, str) and layers.strip().lower() in ("", "all"))
        if not whole:
            raise InputError("these are plain W codes (one entry for all layers); broadcast them to the "
                             "generator's W+ entries before editing only some layers")
        chosen = None
    else:
        chosen = _resolve_layers(layers, default_layers, num_ws)
    mask = torch.zeros(num_ws, 1, dtype=ws.dtype, device=ws.device)
    mask[chosen if chosen is not None else slice(None)] = 1
    out = ws + float(strength) * mask * d.to(device=ws.device, dtype=ws.dtype)
    if not isinstance(latents, Latents):
        return out
    space = latents.space if chosen is None or chosen == list(range(num_ws)) else "w+"
    prov = {"source": "edit", "direction": label, "strength": float(strength),
            "layers": "all" if chosen is None else chosen, "from": latents.provenance}
    return Latents(out, space, latents.lineage_sha256, prov, None, latents.noise)


def parse_strengths(spec: str | float | Iterable[float]) -> list[float]:
    """``"-3,0,3"`` or ``"-3:3:7"`` (7 evenly spaced values from -3 to 3), a number or a list -> floats."""
    from ..settings import EDIT, check

    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        values = [float(spec)]
    elif isinstance(spec, str):
        text = spec.strip()
        m = text.split(":")
        if len(m) == 3:
            try:
                lo, hi, count = float(m[0]), float(m[1]), int(m[2])
            except ValueError:
                raise InputError(f"cannot read strengths {spec!r}; use '-3,0,3' or 'FROM:TO:COUNT' like '-3:3:7'") from None
            if not 2 <= count <= 10_000:
                raise InputError(f"strength count must be between 2 and 10000, got {count}")
            values = [float(v) for v in np.linspace(lo, hi, count)]
        else:
            try:
                values = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
            except ValueError:
                raise InputError(f"cannot read strengths {spec!r}; use '-3,0,3' or 'FROM:TO:COUNT' like '-3:3:7'") from None
    else:
        values = [float(v) for v in spec]
    if not values:
        raise InputError("no strengths given; use e.g. '-3,0,3'")
    if len(values) > 10_000:
        raise InputError(f"{len(values)} strengths is too many; use at most 10000")
    return [check(EDIT["strength"], v) for v in values]


def sweep(latents: Latents, direction: Directions | torch.Tensor, strengths: Sequence[float],
          layers: Any = None, index: int | None = None) -> Latents:
    """Every code at every strength: ``N * S`` codes, code-major (code 0 at each strength, then code 1...).

    Provenance ``strengths`` lists each output code's strength, ``codes`` its input index.
    """
    values = parse_strengths(list(strengths)) if not isinstance(strengths, str) else parse_strengths(strengths)
    parts = [edit(latents, direction, s, layers, index) for s in values]
    ws = torch.stack([p.ws for p in parts], dim=1).flatten(0, 1)  # [N, S, num_ws, w_dim] -> [N*S, ...]
    noise = None
    if latents.noise is not None:
        noise = [n.repeat_interleave(len(values), dim=0) for n in latents.noise]
    n = len(latents)
    prov = {"source": "sweep", "direction": parts[0].provenance["direction"], "layers": parts[0].provenance["layers"],
            "strengths": [s for _ in range(n) for s in values], "codes": [i for i in range(n) for _ in values],
            "from": latents.provenance}
    space = "w" if all(p.space == "w" for p in parts) else "w+"
    return Latents(ws, space, latents.lineage_sha256, prov, None, noise)


def walk_strengths(strengths: Sequence[float], frames: int) -> list[float]:
    """``frames`` strengths moving linearly through ``strengths`` as keyframes, ends included.

    One keyframe ``s`` walks from 0 to ``s``. E.g. ``walk_strengths([-3, 3], 5) == [-3, -1.5, 0, 1.5, 3]``.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames must be a whole number >= 1, got {frames!r}")
    keys = [float(s) for s in strengths]
    if not keys:
        raise InputError("no strengths given; use e.g. '-3,0,3'")
    if len(keys) == 1:
        keys = [0.0, keys[0]]
    if frames == 1:
        return [keys[0]]
    pos = np.linspace(0.0, len(keys) - 1, frames)
    return [float(np.interp(p, np.arange(len(keys)), keys)) for p in pos]
