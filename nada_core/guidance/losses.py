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

:class:`NadaLoss` combines the terms (weights ``directional=1, global_=0, angle=0`` as in the
paper) over every CLIP model of a guide: ``total = sum_m w_m * sum_term lambda_term * L_term^m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import InputError, non_negative_weight

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


@dataclass
class LossResult:
    """``total``: scalar tensor to back-propagate. ``components``: floats ``total``, ``directional``,
    ``global``, ``angle`` (each term averaged over CLIP models with their weights, before the term
    weight), ``per_model``: ``{model name: {term: float}}``."""

    total: torch.Tensor
    components: dict[str, float]
    per_model: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class NadaLoss:
    """Term weights of the CLIP loss. ``global_`` avoids the Python keyword; the follow-up work
    used ``directional=0.8, global_=0.2``. ``batched``: encode adapted and frozen images in one
    CLIP call per model (faster; keeps activations for both halves) instead of two."""

    directional: float = 1.0
    global_: float = 0.0
    angle: float = 0.0
    eps: float = DIRECTION_EPS
    batched: bool = True

    def __post_init__(self) -> None:
        for name in ("directional", "global_", "angle"):
            setattr(self, name, non_negative_weight(getattr(self, name), f"loss weight {name.rstrip('_')}"))
        if self.directional == 0 and self.global_ == 0 and self.angle == 0:
            raise InputError("all CLIP loss weights are 0; give the directional loss a weight (1.0 is the default)")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise InputError(f"eps must be a small positive number, got {self.eps!r}")

    @property
    def needs_frozen(self) -> bool:
        return self.directional > 0 or self.angle > 0

    def to_dict(self) -> dict:
        return {"directional": self.directional, "global": self.global_, "angle": self.angle}

    # -- pure part ------------------------------------------------------------------------------
    def from_embeddings(self, embeddings: dict[str, tuple[torch.Tensor, torch.Tensor | None]], direction,
                        model_weights: dict[str, float] | None = None) -> LossResult:
        """Combine the terms from precomputed embeddings.

        ``embeddings``: ``{model name: (adapted [N, D], frozen [N, D] or None)}``; ``direction``:
        a :class:`~nada_core.guidance.directions.Direction` with vectors/targets for those models;
        ``model_weights``: ``{model name: weight}`` (default 1 each).
        """
        if not embeddings:
            raise InputError("no CLIP embeddings to compute the loss from")
        weights = model_weights or {name: 1.0 for name in embeddings}
        total = None
        sums = {"directional": 0.0, "global": 0.0, "angle": 0.0}
        per_model: dict[str, dict[str, float]] = {}
        weight_sum = 0.0
        for name, (train_emb, frozen_emb) in embeddings.items():
            w = float(weights.get(name, 0.0))
            if w == 0.0:
                continue
            terms: dict[str, torch.Tensor] = {"global": global_loss(train_emb, direction.target(name))}
            if frozen_emb is not None:
                terms["directional"] = directional_loss(train_emb, frozen_emb, direction.vector(name), self.eps)
                terms["angle"] = angle_consistency_loss(train_emb, frozen_emb)
            elif self.needs_frozen:
                raise InputError("the directional and angle losses need the frozen generator's images too")
            model_total = sum(lam * terms[key] for key, lam in
                              (("directional", self.directional), ("global", self.global_), ("angle", self.angle))
                              if lam > 0)
            total = w * model_total if total is None else total + w * model_total
            per_model[name] = {k: float(v.detach()) for k, v in terms.items()}
            for k, v in per_model[name].items():
                sums[k] += w * v
            weight_sum += w
        if total is None:
            raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
        components = {k: v / weight_sum for k, v in sums.items()
                      if any(k in pm for pm in per_model.values())}
        components["total"] = float(total.detach())
        return LossResult(total, components, per_model)

    # -- runner ---------------------------------------------------------------------------------
    def __call__(self, guide, train_images: torch.Tensor, frozen_images: torch.Tensor | None,
                 direction) -> LossResult:
        """Encode ``G_train(w)`` (``train_images``, with grad) and ``G_frozen(w)`` (``frozen_images``,
        no grad needed) with every CLIP model of ``guide`` and combine the terms.

        Images are generator space ``[N, C, H, W]`` in [-1, 1]; ``frozen_images`` may be None when
        only the global loss is weighted.
        """
        from .clip import as_ensemble

        ens = as_ensemble(guide)
        if frozen_images is not None and frozen_images.shape != train_images.shape:
            raise InputError(f"adapted and frozen image batches differ in shape: {list(train_images.shape)} vs "
                             f"{list(frozen_images.shape)}")
        embeddings = {}
        for model, _ in ens:
            embeddings[model.name] = encode_pair(model, train_images, frozen_images, batched=self.batched)
        return self.from_embeddings(embeddings, direction, ens.weights)


def encode_pair(model, train_images: torch.Tensor, frozen_images: torch.Tensor | None,
                batched: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(E_I(train) [N, D], E_I(frozen) [N, D] or None)`` with one CLIP call when ``batched``.

    The frozen half never carries gradients (it is detached before encoding).
    """
    if frozen_images is None:
        return model.encode_image(train_images), None
    n = train_images.shape[0]
    if batched:
        emb = model.encode_image(torch.cat([train_images, frozen_images.detach().to(train_images.device)]))
        return emb[:n], emb[n:].detach()
    train_emb = model.encode_image(train_images)
    with torch.no_grad():
        frozen_emb = model.encode_image(frozen_images)
    return train_emb, frozen_emb


def ensemble_global_loss(guide, images: torch.Tensor, direction) -> torch.Tensor:
    """Weighted ``sum_m w_m L_global^m`` of generator images ``[N, C, H, W]`` (differentiable);
    what adaptive layer selection optimises the W+ codes against."""
    from .clip import as_ensemble

    total = None
    for model, w in as_ensemble(guide):
        term = w * global_loss(model.encode_image(images), direction.target(model.name))
        total = term if total is None else total + term
    return total


__all__ = ["DIRECTION_EPS", "LossResult", "NadaLoss", "angle_consistency_loss", "directional_loss",
           "encode_pair", "ensemble_global_loss", "global_loss"]
