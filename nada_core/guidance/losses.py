"""CLIP losses for StyleGAN-NADA, as pure functions of embeddings plus a thin runner.

All embeddings are ``[N, D]`` (any norm; they are L2-normalised here where the formula needs it),
directions and targets ``[D]``. Pairs are row-aligned: row ``i`` of the adapted batch and row ``i``
of the frozen batch come from the same latent ``w_i``.

- directional (the training loss, Sec. 4.1)::

      L_dir = mean_i ( 1 - cos( E_I(G_train(w_i)) - E_I(G_frozen(w_i)), dT ) )

  ``cos(d, dT) = d . dT / max(|d|, eps)``: at the very first step the two generators are
  identical and ``d = 0``; the ``eps`` floor keeps the loss (1) and its gradient finite there.
- global::

      L_global = mean_i ( 1 - cos( E_I(G(w_i)), e_target ) )

  with ``e_target`` the unit target embedding of the direction (template-averaged target text, or
  the mean target-image embedding for image directions).
- in-domain angle consistency (HyperDomainNet, Alanov et al. 2022): keep the pairwise CLIP
  similarities inside an adapted batch as they were inside the frozen batch::

      L_angle = mean_{i<j} ( cos(a_i, a_j) - cos(f_i, f_j) )^2

  (``a`` adapted, ``f`` frozen embeddings). The paper sums over all ordered pairs; the mean over
  unordered pairs ``i<j`` equals that sum divided by ``N (N - 1)``, so the weight does not depend on
  the batch size. It is 0 for a batch of one.

:func:`combine` is the one combination of the terms (weights ``directional=1, global_=0, angle=0``
as in the paper) over the guides of a direction (one per CLIP model):
``total = sum_g w_g * sum_term lambda_term * L_term^g``. The trainer's step and the adaptive layer
selection both call it (through :func:`clip_loss`). See ``docs/method.md``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import InputError

#: Floor on |E_I(train) - E_I(frozen)| in the directional cosine (unit embeddings; see module doc).
DIRECTION_EPS = 1e-5


def _check_pair(train_emb: torch.Tensor, frozen_emb: torch.Tensor) -> None:
    if train_emb.ndim != 2 or train_emb.shape != frozen_emb.shape:
        raise InputError(f"adapted and frozen embeddings must both be [N, D] with the same shape, got "
                         f"{list(train_emb.shape)} and {list(frozen_emb.shape)}")
    if train_emb.shape[0] == 0:
        raise InputError("empty batch: the loss needs at least one image")


def directional_loss(train_emb: torch.Tensor, frozen_emb: torch.Tensor, direction: torch.Tensor,
                     eps: float = DIRECTION_EPS) -> torch.Tensor:
    """Scalar ``mean_i (1 - cos(train_i - frozen_i, direction))``. Shapes ``[N, D]``, ``[N, D]``, ``[D]``."""
    _check_pair(train_emb, frozen_emb)
    t = F.normalize(train_emb.float(), dim=-1)
    f = F.normalize(frozen_emb.float(), dim=-1)
    d_t = F.normalize(direction.float().reshape(-1), dim=0).to(t.device)
    delta = t - f
    cos = (delta @ d_t) / delta.norm(dim=-1).clamp_min(eps)
    return (1.0 - cos).mean()


def global_loss(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scalar ``mean_i (1 - cos(emb_i, target))``. Shapes ``[N, D]``, ``[D]``."""
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise InputError(f"image embeddings must be a non-empty [N, D] batch, got {list(emb.shape)}")
    e = F.normalize(emb.float(), dim=-1)
    tgt = F.normalize(target.float().reshape(-1), dim=0).to(e.device)
    return (1.0 - e @ tgt).mean()


def angle_consistency_loss(train_emb: torch.Tensor, frozen_emb: torch.Tensor) -> torch.Tensor:
    """Scalar ``mean_{i<j} (cos(a_i, a_j) - cos(f_i, f_j))^2`` (0 when N < 2). Shapes ``[N, D]``."""
    _check_pair(train_emb, frozen_emb)
    n = train_emb.shape[0]
    a = F.normalize(train_emb.float(), dim=-1)
    if n < 2:
        return a.sum() * 0.0  # keeps the graph connected so backward() works
    f = F.normalize(frozen_emb.float(), dim=-1).to(a.device)
    rows, cols = torch.triu_indices(n, n, offset=1, device=a.device)
    diff = (a @ a.T - f @ f.T)[rows, cols]
    return (diff ** 2).mean()


@dataclass(frozen=True)
class LossWeights:
    """Term weights ``lambda`` of the CLIP loss (the paper: directional 1, global 0, angle 0; the
    follow-up work used 0.8 / 0.2). Validated once, with the other settings, in
    :mod:`nada_core.settings`; ``global_`` avoids the Python keyword."""

    directional: float = 1.0
    global_: float = 0.0
    angle: float = 0.0

    @property
    def needs_frozen(self) -> bool:
        """Whether a term compares with the frozen generator's images."""
        return self.directional > 0 or self.angle > 0

    def items(self) -> list[tuple[str, float]]:
        """``[(term, lambda)]`` of the weighted terms only, in report order."""
        return [(k, w) for k, w in (("directional", self.directional), ("global", self.global_),
                                    ("angle", self.angle)) if w > 0]


#: What the adaptive layer selection optimises the W+ codes against: the global loss alone.
SELECTION_WEIGHTS = LossWeights(directional=0.0, global_=1.0, angle=0.0)


@dataclass
class ClipLoss:
    """One evaluation of the CLIP loss over the guides.

    ``total``: scalar tensor to back-propagate, ``sum_g w_g * sum_term lambda_term * L_term^g``.
    ``per_guide``: ``{guide name: {term: scalar tensor}}`` (weighted terms only), ``weights``:
    ``{guide name: w_g}`` (guides of weight 0 are skipped and absent).
    """

    total: torch.Tensor
    per_guide: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict[str, torch.Tensor]:
        """Detached tensors for the step report: ``total`` then each term, keyed ``term`` with one
        guide and ``term/<guide name>`` with several (one loss curve per guide)."""
        out = {"total": self.total}
        many = len(self.per_guide) > 1
        for name, terms in self.per_guide.items():
            for k, v in terms.items():
                out[f"{k}/{name}" if many else k] = v.detach()
        return out

    def averaged(self) -> dict[str, float]:
        """Each term averaged over the guides with their weights (before ``lambda``), as floats."""
        w_sum = sum(self.weights.values())
        out: dict[str, float] = {}
        for name, terms in self.per_guide.items():
            for k, v in terms.items():
                out[k] = out.get(k, 0.0) + self.weights[name] * float(v.detach()) / w_sum
        return out


def combine(embeddings: dict[str, tuple[torch.Tensor, torch.Tensor | None]], guides,
            weights: LossWeights) -> ClipLoss:
    """THE combination of the terms, from embeddings (pure part; the trainer's step and the
    layer-selection pass both come through here via :func:`clip_loss`).

    ``embeddings``: ``{guide name: (adapted [N, D], frozen [N, D] or None)}``; ``guides``: objects
    with ``name``, ``weight``, ``vector`` ``[D]`` and ``target`` ``[D]``
    (:class:`nada_core.guidance.directions.Guide`).
    """
    total = None
    per_guide: dict[str, dict[str, torch.Tensor]] = {}
    used: dict[str, float] = {}
    for g in guides:
        if g.weight == 0.0:
            continue
        train_emb, frozen_emb = embeddings[g.name]
        if frozen_emb is None and weights.needs_frozen:
            raise InputError("the directional and angle losses need the frozen generator's images too")
        terms: dict[str, torch.Tensor] = {}  # only the weighted terms are computed
        for key, _ in weights.items():
            if key == "directional":
                terms[key] = directional_loss(train_emb, frozen_emb, g.vector)
            elif key == "global":
                terms[key] = global_loss(train_emb, g.target)
            else:
                terms[key] = angle_consistency_loss(train_emb, frozen_emb)
        model_total = sum(lam * terms[key] for key, lam in weights.items())
        total = g.weight * model_total if total is None else total + g.weight * model_total
        per_guide[g.name], used[g.name] = terms, float(g.weight)
    if total is None:
        raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
    return ClipLoss(total, per_guide, used)


def encode_images(guides, images: torch.Tensor, autocast: Callable[[], Any] | None = None) -> dict[str, torch.Tensor]:
    """``{guide name: [N, D] float32}``: ``images`` (generator space ``[N, C, H, W]`` in [-1, 1])
    encoded once by each weighted guide's CLIP model, with autograd as the caller has it.
    ``autocast`` optionally returns a mixed-precision context for the calls."""
    ctx = autocast if autocast is not None else contextlib.nullcontext
    out: dict[str, torch.Tensor] = {}
    for g in guides:
        if g.weight == 0.0:
            continue
        with ctx():
            out[g.name] = g.clip.encode_image(images).float()
    return out


def pair_embeddings(train: dict[str, torch.Tensor],
                    frozen: dict[str, torch.Tensor] | None) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """The ``{guide name: (adapted, frozen or None)}`` pairs :func:`combine` takes."""
    return {name: (emb, None if frozen is None else frozen[name]) for name, emb in train.items()}


def clip_loss(guides, train_images: torch.Tensor, frozen_images: torch.Tensor | None, weights: LossWeights,
              autocast: Callable[[], Any] | None = None) -> ClipLoss:
    """Encode ``G_train(w)`` (``train_images``, with grad) and ``G_frozen(w)`` (``frozen_images``;
    never carries grad) with every guide's CLIP model and :func:`combine` the terms.

    Images are generator space ``[N, C, H, W]`` in [-1, 1]; ``frozen_images`` is None when only
    the global loss is weighted (layer selection), and is not encoded when no weighted term needs
    it. The frozen images are encoded without autograd and the trained ones with it, in two calls:
    one batched call would carry the frozen half through CLIP's backward pass for nothing (about
    0.2 s of a 256 px CPU step). ``autocast`` optionally returns a mixed-precision context.
    """
    return clip_losses([guides], train_images, frozen_images, weights, autocast)[0]


def clip_losses(guide_sets, train_images: torch.Tensor, frozen_images: torch.Tensor | None, weights: LossWeights,
                autocast: Callable[[], Any] | None = None) -> list[ClipLoss]:
    """:func:`clip_loss` for ``T = len(guide_sets)`` targets at once (a multi-target step): target
    ``t``'s trained images are rows ``t*B .. (t+1)*B - 1`` of ``train_images`` ``[T*B, C, H, W]``, all
    compared with the same ``frozen_images`` ``[B, C, H, W]``. The guide sets share their CLIP models
    (they differ only in vectors and targets), so each model encodes the frozen images once and all
    trained images in ONE call. Returns one :class:`ClipLoss` per target."""
    t = len(guide_sets)
    if frozen_images is not None:
        b = frozen_images.shape[0]
        if t == 1 and frozen_images.shape != train_images.shape:
            raise InputError(f"adapted and frozen image batches differ in shape: {list(train_images.shape)} vs "
                             f"{list(frozen_images.shape)}")
        if train_images.shape[0] != t * b or train_images.shape[1:] != frozen_images.shape[1:]:
            raise InputError(f"{t} targets need {t} x {b} trained images of {list(frozen_images.shape[1:])}, got "
                             f"{list(train_images.shape)}")
    elif train_images.shape[0] % t:
        raise InputError(f"{t} targets need a multiple of {t} trained images, got {train_images.shape[0]}")
    frozen = None
    if frozen_images is not None and weights.needs_frozen:
        with torch.no_grad():
            frozen = encode_images(guide_sets[0], frozen_images, autocast)
    trained = {name: e.chunk(t, dim=0) for name, e in encode_images(guide_sets[0], train_images, autocast).items()}
    return [combine(pair_embeddings({n: parts[i] for n, parts in trained.items()}, frozen), guides, weights)
            for i, guides in enumerate(guide_sets)]


__all__ = ["DIRECTION_EPS", "SELECTION_WEIGHTS", "ClipLoss", "LossWeights", "angle_consistency_loss", "clip_loss",
           "clip_losses", "combine", "directional_loss", "encode_images", "global_loss", "pair_embeddings"]
