"""CLIP-space domain directions: where "source -> target" points, per CLIP model.

Text direction (Sec. 4.1 of the paper), per CLIP model::

    dT = normalise( mean_t E_T(template_t(target)) - mean_t E_T(template_t(source)) )

with every text embedding L2-normalised before averaging; with ``templates=False`` the bare
prompts are used. Image direction (few-shot, Appendix C)::

    dT = normalise( mean_i E_I(target_image_i) - mean_j E_I(G_frozen(w_j)) ),  j = 1..N_s (16)

A :class:`Direction` also carries the unit target embedding each model should be pulled towards by
the global loss: the template-averaged target text, or the mean target-image embedding.
Bad inputs (empty or identical prompts, no images, non-finite pixels, a direction of (near) zero
length) raise :class:`InputError` before any training starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import InputError, Interrupted
from .templates import IMAGENET, TEMPLATE_SETS

#: Prompt templates averaged for text directions by default: CLIP's 79 ImageNet templates, as the
#: official code uses (:mod:`nada_core.guidance.templates`; ``templates="short"`` for the earlier 24).
DEFAULT_TEMPLATES: tuple[str, ...] = IMAGENET

#: A direction shorter than this (embeddings are unit vectors) carries no usable signal.
MIN_DIRECTION_NORM = 1e-5


def template_list(templates: bool | str | Sequence[str] | None) -> tuple[str, ...] | None:
    """The templates ``templates`` names: True -> :data:`DEFAULT_TEMPLATES`, a set name (``"imagenet"``,
    ``"short"``) -> that list, a sequence -> itself, False/None -> None (bare prompts)."""
    if templates is False or templates is None:
        return None
    if templates is True:
        return DEFAULT_TEMPLATES
    if isinstance(templates, str):
        try:
            return TEMPLATE_SETS[templates.strip().lower()]
        except KeyError:
            raise InputError(f"unknown template set {templates!r}; use one of {', '.join(TEMPLATE_SETS)}") from None
    return tuple(templates)


def apply_templates(prompt: str, templates: bool | str | Sequence[str] = True) -> list[str]:
    """``prompt`` inserted into each template (``True``: :data:`DEFAULT_TEMPLATES`; a set name of
    :data:`~nada_core.guidance.templates.TEMPLATE_SETS`), or ``[prompt]``."""
    tpl = template_list(templates)
    if tpl is None:
        return [prompt]
    if not tpl:
        raise InputError("the template list is empty; pass templates=True for the defaults or False for none")
    out = []
    for t in tpl:
        if "{}" not in t:
            raise InputError(f"prompt template {t!r} has no '{{}}' where the prompt goes")
        out.append(t.replace("{}", prompt))
    return out


def _clean_prompt(text, role: str) -> str:
    if not isinstance(text, str):
        raise InputError(f"the {role} prompt must be text, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        example = "'photo'" if role == "source" else "'pencil sketch'"
        raise InputError(f"the {role} prompt is empty; describe the {role} domain, e.g. {example}")
    return cleaned


def _unit(vec: torch.Tensor, what: str, model_name: str) -> torch.Tensor:
    """L2-normalise a [D] vector or raise InputError if it is non-finite or (near) zero."""
    if not torch.isfinite(vec).all():
        raise InputError(f"{what} for CLIP model {model_name} is not finite (NaN/inf); check the images and "
                         f"the CLIP weights")
    norm = float(vec.norm())
    if norm < MIN_DIRECTION_NORM:
        raise InputError(f"{what} for CLIP model {model_name} has (near) zero length ({norm:.2e}): CLIP sees no "
                         f"difference between source and target; describe a clearer change")
    return vec / norm


def _models(clip) -> list:
    from .clip import as_ensemble

    return as_ensemble(clip).models


@dataclass
class Guide:
    """One CLIP model's share of the guidance, carried by its direction.

    ``clip`` has ``encode_image(img [N, 3, H, W] in [-1, 1]) -> [N, D]`` (differentiable);
    ``weight``: its loss weight in the ensemble; ``vector``: unit ``[D]`` direction dT;
    ``target``: unit ``[D]`` embedding the global loss aims at.
    """

    name: str
    clip: object
    weight: float
    vector: torch.Tensor
    target: torch.Tensor


@dataclass
class Direction:
    """Per-CLIP-model unit direction vectors plus provenance.

    ``vectors``: ``{model name: [D] unit float32}``; ``targets``: ``{model name: [D] unit}``, the
    embedding the global loss aims at; ``sources``: ``{model name: [D] unit}``, the source anchor.
    ``kind`` is ``"text"`` or ``"image"``; ``target_text``/``source_text`` are the prompts (``None``
    for image directions).
    """

    vectors: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    sources: dict[str, torch.Tensor]
    kind: str
    source_text: str | None = None
    target_text: str | None = None
    templates: bool = False
    num_templates: int = 1
    details: dict = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.vectors)

    def vector(self, model_name: str) -> torch.Tensor:
        try:
            return self.vectors[model_name]
        except KeyError:
            raise InputError(f"the direction was computed for {', '.join(self.vectors)}, not for CLIP model "
                             f"{model_name}; compute it again with the same CLIP models") from None

    def target(self, model_name: str) -> torch.Tensor:
        self.vector(model_name)
        return self.targets[model_name]

    def guides(self, clip, device: torch.device | str | None = None) -> list[Guide]:
        """Pair each CLIP model of ``clip`` (a ``ClipModel`` or ``ClipEnsemble`` with the models this
        direction was computed with) with its weight, vector and target: the ONE place models and
        vectors are joined by name. ``device``: where the (detached, float32) vectors go."""
        from .clip import as_ensemble

        out = []
        for model, weight in as_ensemble(clip):
            vec, tgt = self.vector(model.name), self.target(model.name)
            if device is not None:
                vec = vec.detach().to(device, torch.float32).clone()
                tgt = tgt.detach().to(device, torch.float32).clone()
            out.append(Guide(model.name, model, float(weight), vec, tgt))
        return out

    def to(self, device: torch.device | str) -> "Direction":
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Direction(move(self.vectors), move(self.targets), move(self.sources), self.kind, self.source_text,
                         self.target_text, self.templates, self.num_templates, dict(self.details))

    def similarity(self, other: "Direction") -> dict[str, float]:
        """Cosine between this and another direction, per shared CLIP model."""
        return {k: float(torch.dot(v.float().cpu(), other.vectors[k].float().cpu()))
                for k, v in self.vectors.items() if k in other.vectors}

    def to_dict(self, include_vectors: bool = False) -> dict:
        """JSON-able provenance (kind, prompts, templates, models); vectors as lists on request."""
        out = {"kind": self.kind, "source_text": self.source_text, "target_text": self.target_text,
               "templates": self.templates, "num_templates": self.num_templates, "models": self.model_names,
               **self.details}
        if include_vectors:
            out["vectors"] = {k: [float(x) for x in v.cpu()] for k, v in self.vectors.items()}
            out["targets"] = {k: [float(x) for x in v.cpu()] for k, v in self.targets.items()}
            out["sources"] = {k: [float(x) for x in v.cpu()] for k, v in self.sources.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Direction":
        """Rebuild from ``to_dict(include_vectors=True)``."""
        try:
            vec = {k: torch.tensor(v, dtype=torch.float32) for k, v in data["vectors"].items()}
            tgt = {k: torch.tensor(v, dtype=torch.float32) for k, v in data["targets"].items()}
            src = {k: torch.tensor(v, dtype=torch.float32) for k, v in data["sources"].items()}
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"stored direction is incomplete ({err}); compute it again") from None
        known = {"kind", "source_text", "target_text", "templates", "num_templates", "models", "vectors",
                 "targets", "sources"}
        return cls(vec, tgt, src, data.get("kind", "text"), data.get("source_text"), data.get("target_text"),
                   bool(data.get("templates", False)), int(data.get("num_templates", 1)),
                   {k: v for k, v in data.items() if k not in known})


def mean_text_embedding(model, prompt: str, templates: bool | Sequence[str] = True) -> torch.Tensor:
    """Unit ``[D]``: mean over templates of the (unit) text embeddings of ``prompt``, renormalised."""
    emb = model.encode_text(apply_templates(prompt, templates))
    return _unit(emb.float().mean(dim=0), f"text embedding of {prompt!r}", model.name)


def text_direction(clip, source: str, target: str, templates: bool | str | Sequence[str] = True) -> Direction:
    """Direction from the ``source`` prompt to the ``target`` prompt for every model of ``clip``.

    ``clip``: a :class:`~nada_core.guidance.clip.ClipModel` or :class:`~nada_core.guidance.clip.ClipEnsemble`.
    ``templates``: True (default list: the 79 ImageNet templates), a set name (``"imagenet"``,
    ``"short"``: the earlier 24), False (bare prompts) or a list of ``"...{}..."`` strings.
    """
    src, tgt = _clean_prompt(source, "source"), _clean_prompt(target, "target")
    if src.casefold() == tgt.casefold():
        raise InputError(f"source and target prompts are the same ({src!r}); describe the domain you want "
                         f"to reach in the target prompt")
    vectors, targets, sources = {}, {}, {}
    for model in _models(clip):
        s_emb = model.encode_text(apply_templates(src, templates)).float()
        t_emb = model.encode_text(apply_templates(tgt, templates)).float()
        s_mean, t_mean = s_emb.mean(dim=0), t_emb.mean(dim=0)
        vectors[model.name] = _unit(t_mean - s_mean, f"text direction {src!r} -> {tgt!r}", model.name)
        targets[model.name] = _unit(t_mean, f"text embedding of {tgt!r}", model.name)
        sources[model.name] = _unit(s_mean, f"text embedding of {src!r}", model.name)
    used = templates is not False and templates is not None
    tpl = template_list(templates)
    named = next((name for name, lst in TEMPLATE_SETS.items() if tpl == lst), None)
    kind = ("default" if tpl == DEFAULT_TEMPLATES else named or "custom") if used else "none"
    return Direction(vectors, targets, sources, "text", src, tgt, used, len(apply_templates(src, templates)),
                     {"template_list": kind})


@dataclass(frozen=True)
class DirectionSet:
    """Several text directions from one source, one per target, in the order given (NADA Text Direction
    with one target per line). Training with a compact adapt makes one domain per direction in one
    run (:mod:`nada_core.training.multi_target`)."""

    directions: tuple[Direction, ...]

    def __len__(self) -> int:
        return len(self.directions)

    def __iter__(self):
        return iter(self.directions)

    def __getitem__(self, index: int) -> Direction:
        return self.directions[index]

    @property
    def target_texts(self) -> list[str]:
        return [d.target_text or f"target {i}" for i, d in enumerate(self.directions)]


def target_lines(text: str) -> list[str]:
    """The targets of a multi-line prompt: one per non-empty line, stripped, in order."""
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def text_directions(clip, source: str, targets: str, templates: bool | str | Sequence[str] = True
                    ) -> Direction | DirectionSet:
    """One target (a single line): :func:`text_direction` exactly as before; one target per line: a
    :class:`DirectionSet` of one direction per line (at most :data:`MAX_TARGETS`, no line twice)."""
    lines = target_lines(targets)
    if len(lines) <= 1:
        return text_direction(clip, source, targets, templates=templates)
    if len(lines) > MAX_TARGETS:
        raise InputError(f"{len(lines)} target lines; one run trains at most {MAX_TARGETS} domains (each adds a "
                         "batch to every step): split them over several runs")
    seen: set[str] = set()
    for line in lines:
        if line.casefold() in seen:
            raise InputError(f"target {line!r} is given twice; give each target once, one per line")
        seen.add(line.casefold())
    return DirectionSet(tuple(text_direction(clip, source, line, templates=templates) for line in lines))


#: Targets one multi-target run may train (each renders its own batch every step).
MAX_TARGETS = 16


def _image_batches(images) -> list[torch.Tensor]:
    """Target images as a list of ``[1, 3, H, W]`` in [0, 1]; validates shape and values."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise InputError(f"target images: expected [N, 3, H, W] or [3, H, W], got {list(images.shape)}")
    images = list(images) if images is not None else []
    if not images:
        raise InputError("no target images given; add at least one example image of the target domain")
    out = []
    for i, im in enumerate(images):
        if not isinstance(im, torch.Tensor):
            raise InputError(f"target image {i} is a {type(im).__name__}, not a tensor [3, H, W] in [0, 1]")
        if im.ndim == 4 and im.shape[0] == 1:
            im = im[0]
        if im.ndim != 3 or im.shape[0] not in (1, 3, 4) or min(im.shape[-2:]) < 1:
            raise InputError(f"target image {i}: expected [3, H, W], got shape {list(im.shape)}")
        if not torch.isfinite(im).all():
            raise InputError(f"target image {i} holds NaN/inf values; load it again")
        lo, hi = float(im.min()), float(im.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"target image {i} has values in [{lo:.3g}, {hi:.3g}]; expected [0, 1] "
                             f"(convert 8-bit images with / 255)")
        out.append(im.float().clamp(0, 1)[None])
    return out


@torch.no_grad()
def sample_source_images(G_frozen, num_samples: int = 16, seed: int = 0, truncation_psi: float = 1.0,
                         batch_size: int = 4, noise_mode: str = "const",
                         should_stop: Callable[[], bool] | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         class_index: int | None = None) -> torch.Tensor:
    """``num_samples`` images ``[N, C, R, R]`` in about [-1, 1] from seeds ``seed .. seed + N - 1``
    (of class ``class_index`` for a class-conditional generator; None/-1 = unconditional)."""
    from ..models.conditioning import class_one_hot

    from ..seeds import z_from_seeds

    if num_samples < 1:
        raise InputError(f"number of source samples must be at least 1, got {num_samples}")
    if not math.isfinite(truncation_psi):
        raise InputError(f"truncation must be a finite number, got {truncation_psi}")
    device = next(G_frozen.parameters()).device
    z = z_from_seeds(range(seed, seed + num_samples), G_frozen.z_dim, device=device)
    c = class_one_hot(getattr(G_frozen, "c_dim", 0), class_index, 1, device)
    out = []
    for start in range(0, num_samples, max(1, batch_size)):
        if should_stop is not None and should_stop():
            raise Interrupted("stopped while sampling source images for the image direction")
        zb = z[start: start + batch_size]
        ws = G_frozen.mapping(zb, c, truncation_psi=truncation_psi)
        out.append(G_frozen.synthesis(ws, noise_mode=noise_mode).float())
        if progress is not None:
            progress(min(num_samples, start + batch_size), num_samples)
    return torch.cat(out)


def image_direction(clip, target_images, G_frozen=None, *, source_images: torch.Tensor | None = None,
                    num_samples: int = 16, seed: int = 0, truncation_psi: float = 1.0, batch_size: int = 4,
                    should_stop: Callable[[], bool] | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    class_index: int | None = None) -> Direction:
    """Few-shot direction from frozen-generator samples to example images of the target domain.

    ``target_images``: list of ``[3, H, W]`` (any sizes) or a batch ``[N, 3, H, W]``, in [0, 1].
    Source side: ``source_images`` (generator space ``[M, C, H, W]``) if given, else
    ``num_samples`` images of ``G_frozen`` from seeds ``seed..seed+num_samples-1`` at
    ``truncation_psi`` (and class ``class_index`` of a conditional generator). The target embedding
    for the global loss is the mean target image embedding.
    """
    targets_px = _image_batches(target_images)
    if source_images is None:
        if G_frozen is None:
            raise InputError("image direction needs the frozen generator (or source_images)")
        source_images = sample_source_images(G_frozen, num_samples, seed, truncation_psi, batch_size,
                                             should_stop=should_stop, progress=progress, class_index=class_index)
    elif not isinstance(source_images, torch.Tensor) or source_images.ndim != 4 or source_images.shape[0] == 0:
        raise InputError("source_images must be a non-empty batch [M, C, H, W] in generator space [-1, 1]")
    if not torch.isfinite(source_images).all():
        raise InputError("the source samples hold NaN/inf values; check the generator")
    vectors, tgt_means, src_means = {}, {}, {}
    with torch.no_grad():
        for model in _models(clip):
            if should_stop is not None and should_stop():
                raise Interrupted("stopped while computing the image direction")
            t_emb = model.encode_unit_images(targets_px).float()
            s_emb = torch.cat([model.encode_image(source_images[i: i + batch_size]).float()
                               for i in range(0, source_images.shape[0], max(1, batch_size))])
            t_mean, s_mean = t_emb.mean(dim=0), s_emb.mean(dim=0)
            vectors[model.name] = _unit(t_mean - s_mean, "image direction", model.name)
            tgt_means[model.name] = _unit(t_mean, "mean target image embedding", model.name)
            src_means[model.name] = _unit(s_mean, "mean source sample embedding", model.name)
    details = {"num_target_images": len(targets_px), "num_source_samples": int(source_images.shape[0]),
               "source_seed": seed if G_frozen is not None else None,
               "truncation_psi": truncation_psi if G_frozen is not None else None}
    return Direction(vectors, tgt_means, src_means, "image", None, None, False, 1, details)


__all__ = ["DEFAULT_TEMPLATES", "Direction", "DirectionSet", "Guide", "MAX_TARGETS", "target_lines",
           "text_directions", "apply_templates", "mean_text_embedding", "text_direction",
           "image_direction", "sample_source_images", "template_list", "MIN_DIRECTION_NORM"]
