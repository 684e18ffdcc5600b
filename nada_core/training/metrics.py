"""CLIP-only quality measures of an adaptation, on held-out seeds.

All four come from ``docs/method.md``; embeddings are L2-normalised CLIP image embeddings.

- directional similarity: mean over samples of ``cos(E_I(G_adapted(w)) - E_I(G_frozen(w)), dT)``
  (higher = the change points where the prompts point; 0 before training, as there is no change);
- target score: mean ``cos(E_I(G_adapted(w)), t)`` with ``t`` the target text embedding (or the
  mean target-image embedding for image directions);
- diversity: mean over unordered pairs ``a < b`` of ``1 - cos(E_I(x_a), E_I(x_b))`` of the
  adapted samples (mode collapse drives it towards 0);
- source correspondence: mean ``cos(E_I(G_adapted(w)), E_I(G_frozen(w)))`` (how much of each
  source image survives).

Seeds default to 1000-1015, away from the few low seeds used for previews; training draws its
codes from its own seeded torch generator, never from these NVIDIA-style seeds. Samples use
truncation 0.7 as the paper's figures do. With several CLIP models the values are the
weight-normalised mean over models, and ``per_model`` holds each model's own numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

DEFAULT_EVAL_SEEDS: tuple[int, ...] = tuple(range(1000, 1016))
METRIC_NAMES = ("directional_similarity", "target_score", "diversity", "source_correspondence")


# ----------------------------------------------------------------------------------------------
# Pure functions on embeddings
# ----------------------------------------------------------------------------------------------


def directional_similarity(e_source: torch.Tensor, e_adapted: torch.Tensor, direction: torch.Tensor) -> float:
    """``e_*``: ``[N, D]`` embeddings of the same codes; ``direction``: ``[D]``. A zero image change
    counts as similarity 0 (not NaN)."""
    d_img = e_adapted.float() - e_source.float()
    cos = F.cosine_similarity(d_img, direction.float().reshape(1, -1).expand_as(d_img), dim=-1, eps=1e-12)
    return float(cos.mean())


def target_score(e_adapted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean cosine between each ``[N, D]`` embedding and the ``[D]`` target embedding."""
    e = e_adapted.float()
    return float(F.cosine_similarity(e, target.float().reshape(1, -1).expand_as(e), dim=-1).mean())


def diversity(embeddings: torch.Tensor) -> float:
    """Mean ``1 - cos`` over the ``N(N-1)/2`` unordered pairs of ``[N, D]`` embeddings (N >= 2)."""
    n = embeddings.shape[0]
    if n < 2:
        from ..settings import InvalidSetting

        raise InvalidSetting("diversity needs at least two samples; measure on two or more seeds")
    e = F.normalize(embeddings.float(), dim=-1)
    sim = e @ e.T
    iu = torch.triu_indices(n, n, offset=1)
    return float((1.0 - sim[iu[0], iu[1]]).mean())


def source_correspondence(e_source: torch.Tensor, e_adapted: torch.Tensor) -> float:
    """Mean cosine between paired ``[N, D]`` embeddings."""
    return float(F.cosine_similarity(e_source.float(), e_adapted.float(), dim=-1).mean())


def metrics_from_embeddings(e_source: torch.Tensor, e_adapted: torch.Tensor, direction: torch.Tensor,
                            target: torch.Tensor) -> dict[str, float]:
    """All four metrics for one CLIP model."""
    return {
        "directional_similarity": directional_similarity(e_source, e_adapted, direction),
        "target_score": target_score(e_adapted, target),
        "diversity": diversity(e_adapted),
        "source_correspondence": source_correspondence(e_source, e_adapted),
    }


# ----------------------------------------------------------------------------------------------
# Generators -> metrics
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def _embed(G, ws: torch.Tensor, encoders: Sequence, batch_size: int, noise_mode: str) -> list[torch.Tensor]:
    """Render ``ws`` with ``G.synthesis`` in chunks and embed them with each encoder -> list of ``[N, D]``."""
    outs: list[list[torch.Tensor]] = [[] for _ in encoders]
    dev = G.w_avg.device
    for start in range(0, ws.shape[0], batch_size):
        img = G.synthesis(ws[start:start + batch_size].to(dev), noise_mode=noise_mode)
        for i, enc in enumerate(encoders):
            outs[i].append(enc.encode_image(img).float().cpu())
    return [torch.cat(o) for o in outs]


@dataclass(frozen=True)
class Reference:
    """The frozen generator's half of an evaluation, rendered and embedded once and reused by every
    :func:`evaluate` of a run (before and after training, every target of a multi-target run).

    ``ws``: ``[N, num_ws, w_dim]`` codes of ``seeds`` (on the generator's device); ``embeddings``:
    ``{CLIP model name: [N, D]}`` float32 on the CPU of ``G_frozen``'s images; ``seeds``,
    ``truncation``, ``noise_mode``, ``batch_size``: what they were made with.
    """

    ws: torch.Tensor
    embeddings: dict[str, torch.Tensor]
    seeds: tuple[int, ...]
    truncation: float
    noise_mode: str
    batch_size: int


def reference(G_frozen, clip, seeds: Sequence[int] = DEFAULT_EVAL_SEEDS, truncation: float = 0.7,
              batch_size: int = 8, noise_mode: str = "const", c: torch.Tensor | None = None) -> Reference:
    """Map ``seeds`` (:func:`nada_core.seeds.z_from_seeds`) through ``G_frozen.mapping`` and embed its
    images with every CLIP model of ``clip`` (a ``ClipModel`` or ``ClipEnsemble``). ``c``: one-hot
    class ``[1, c_dim]`` for a class-conditional generator (None otherwise)."""
    from ..errors import InputError
    from ..guidance.clip import as_ensemble
    from ..seeds import z_from_seeds

    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2:
        raise InputError("evaluation needs at least two seeds (diversity compares pairs)")
    with torch.inference_mode(False):
        models = [m for m, _ in as_ensemble(clip)]
        dev = G_frozen.w_avg.device
        z = z_from_seeds(list(seeds), G_frozen.z_dim, device=dev)
        with torch.no_grad():
            ws = G_frozen.mapping(z, None if c is None else c.to(dev), truncation_psi=truncation)
        emb = _embed(G_frozen, ws, models, batch_size, noise_mode)
    return Reference(ws, {m.name: e for m, e in zip(models, emb)}, seeds, float(truncation), noise_mode,
                     int(batch_size))


def evaluate(G_frozen, G_adapted, clip, direction, seeds: Sequence[int] = DEFAULT_EVAL_SEEDS,
             truncation: float = 0.7, batch_size: int = 8, noise_mode: str = "const",
             c: torch.Tensor | None = None, ref: Reference | None = None) -> dict:
    """Compare ``G_adapted`` with ``G_frozen`` on ``seeds`` (codes from :func:`nada_core.seeds.z_from_seeds`).

    ``clip``: a ``ClipModel`` or ``ClipEnsemble``; ``direction``: the training direction (see
    :mod:`nada_core.guidance.directions`). Both generators are mapped through ``G_frozen.mapping`` (they
    share it). Returns ``{directional_similarity, target_score, diversity, source_correspondence,
    num_samples, seeds, truncation}`` plus ``per_model`` when several CLIP models guide.
    Pass ``G_adapted = G_frozen`` for the "before" numbers (directional similarity is then 0).
    ``c``: one-hot class ``[1, c_dim]`` for a class-conditional generator (None otherwise).
    ``ref``: the frozen half made once by :func:`reference` (its seeds, truncation, noise mode and
    batch size then stand; ``seeds`` etc. are not read), so a run renders the source images once.
    """
    if ref is None:
        ref = reference(G_frozen, clip, seeds, truncation, batch_size, noise_mode, c)
    with torch.inference_mode(False):
        guides = direction.guides(clip)
        missing = [g.name for g in guides if g.name not in ref.embeddings]
        if missing:
            raise ValueError(f"the evaluation reference has no embeddings for CLIP model(s) {missing}")
        e_src = [ref.embeddings[g.name] for g in guides]
        e_adp = e_src if G_adapted is G_frozen else _embed(G_adapted, ref.ws, [g.clip for g in guides],
                                                           ref.batch_size, ref.noise_mode)
    per_model = []
    for g, es, ea in zip(guides, e_src, e_adp):
        m = metrics_from_embeddings(es, ea, g.vector.cpu(), g.target.cpu())
        m["clip"] = g.name
        m["weight"] = g.weight
        per_model.append(m)
    total_w = sum(g.weight for g in guides) or 1.0
    result: dict = {name: sum(m[name] * m["weight"] for m in per_model) / total_w for name in METRIC_NAMES}
    result.update(num_samples=len(ref.seeds), seeds=list(ref.seeds), truncation=ref.truncation)
    if len(per_model) > 1:
        result["per_model"] = per_model
    return result
