"""Several compact domains in one run: one domain per target, sharing each step's work.

``nada train --adapt domain --source photo --target sketch --target "oil painting"`` trains one
domain per target. Per step the training codes are drawn and mapped once, the frozen generator
renders them once (its images and their CLIP embeddings serve every target), and the trained
generator renders all targets in ONE batched pass: target ``t``'s vectors style rows
``t*B .. (t+1)*B - 1`` (see :mod:`nada_core.training.adapt`). The losses of the targets are summed;
their vectors are disjoint, so each domain receives exactly the gradient of its own loss.

Layer selection is shared: one pass ranks the W+ indices by the summed push of every target's
global loss (each target's images rendered with its own domain), and the chosen indices train in
every domain. ``noise_mode`` must be ``const`` (random noise could not be replayed per target).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import InputError
from ..guidance.losses import SELECTION_WEIGHTS, LossWeights, clip_losses
from .runtime import grad_mode
from .state import STATE_FILE, describe_direction
from .trainer import NadaTrainer, NonFiniteLossError, ProgressInfo


def target_slug(text: str) -> str:
    """A target prompt as a file-name-safe name: ``"Oil painting!"`` -> ``oil_painting`` (40 characters at most)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].strip("_") or "target"


class MultiTargetTrainer(NadaTrainer):
    """:class:`NadaTrainer` over ``directions`` (one compact domain each; config.adapt must be compact)."""

    def __init__(self, generator, clip, directions: Sequence, config=None, device=None) -> None:
        directions = list(directions)
        if len(directions) < 2:
            raise InputError("a multi-target run needs at least two directions")
        if config is not None and config.adapt == "full":
            raise InputError("several targets in one run train compact domains; add --adapt domain or "
                             "--adapt stylespace")
        if config is not None and config.noise_mode != "const":
            raise InputError("several targets in one run need --noise-mode const (each layer's stored noise)")
        self.num_targets = len(directions)
        self.directions = directions
        super().__init__(generator, clip, directions[0], config, device)
        with grad_mode():
            self.target_guides = [self.guides] + [d.guides(clip, device=self.device) for d in directions[1:]]

    # Losses ------------------------------------------------------------------------------------
    def _target_losses(self, trained: torch.Tensor, frozen: torch.Tensor | None, weights: LossWeights,
                       autocast=None) -> list:
        """One :class:`~nada_core.guidance.losses.ClipLoss` per target (:func:`~nada_core.guidance.losses.clip_losses`):
        ``trained`` ``[T*B, 3, H, W]`` (target ``t``'s images in rows ``t*B .. (t+1)*B - 1``), ``frozen``
        ``[B, 3, H, W]`` or None; ``autocast``: an optional mixed-precision context factory."""
        return clip_losses(self.target_guides, trained, frozen, weights, autocast)

    def _selection_loss(self, img: torch.Tensor) -> torch.Tensor:
        return sum(loss.total for loss in self._target_losses(img, None, SELECTION_WEIGHTS))

    def _losses(self, frozen: torch.Tensor, trained: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        weights = LossWeights(cfg.directional_weight, cfg.global_weight, cfg.angle_weight)
        out: dict[str, torch.Tensor] = {}
        total = None
        for t, loss in enumerate(self._target_losses(trained, frozen, weights, self._autocast)):
            rep = loss.report()
            total = rep["total"] if total is None else total + rep["total"]
            for k, v in rep.items():
                out[f"{k}_{t}"] = v.detach()
        return {"total": total, **out}

    # Outputs -----------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> torch.Tensor:
        """``[1 + T, P, 3, R, R]``: the source row, then one row per target."""
        rows = []
        try:
            for t in range(self.num_targets):
                self.adapter.active = t  # the trainer's preview, showing one target
                pair = super().preview()
                rows.append(pair[1])
        finally:
            self.adapter.active = None
        return torch.stack([pair[0], *rows])

    def view(self, target: int):
        """The trained generator showing only ``target``'s domain (live)."""
        self.adapter.active = target
        return self.G_train

    def domain(self, target: int = 0, extra_metadata: dict | None = None):
        """Target ``target``'s domain, named by its target (:meth:`target_names`)."""
        d = super().domain(target, extra_metadata)
        d.metadata["nada"]["direction"] = describe_direction(self.directions[target])
        d.metadata["nada"]["target_index"] = target
        d.name = self.target_names()[target]
        return d

    def domains(self, extra_metadata: list[dict] | None = None):
        """Every target's domain, as a :class:`~nada_core.domains.DomainSet` (target order)."""
        from ..domains.domain import DomainSet

        return DomainSet(tuple(self.domain(t, extra_metadata[t] if extra_metadata else None)
                               for t in range(self.num_targets)))

    def target_names(self) -> list[str]:
        """One distinct file-name-safe name per target: its slug (``pencil_sketch``), ``_<index>`` added
        where two targets reduce to the same slug."""
        names: list[str] = []
        for t, d in enumerate(self.directions):
            stem = target_slug(getattr(d, "target_text", None) or f"target{t}")
            if stem in names:
                stem = f"{stem}_{t}"
            names.append(stem)
        return names

    def domain_file_names(self) -> list[str]:
        """``domain_<target name>`` per target: the files ``nada train`` writes."""
        return [f"domain_{n}" for n in self.target_names()]

    def save(self, out_dir, extra_metadata: list[dict] | None = None) -> dict[str, Path]:
        out = Path(out_dir)
        paths = {}
        for t, stem in enumerate(self.domain_file_names()):
            extra = extra_metadata[t] if extra_metadata else None
            paths[stem] = self.save_domain(out / f"{stem}.safetensors", extra, target=t)
        paths["state"] = self.save_state(out / STATE_FILE)
        return paths

    def save_snapshot(self, out_dir) -> Path:
        out = Path(out_dir) / "snapshots"
        first = None
        for t, stem in enumerate(self.domain_file_names()):
            p = self.save_domain(out / f"{stem}_{self.step_index:06d}.safetensors", target=t)
            first = first or p
        self.save_state(Path(out_dir) / STATE_FILE)
        return first


@dataclasses.dataclass
class MultiRunOutcome:
    """What a multi-target run produced: ``metrics`` (the JSON-able summary written as ``metrics.json``,
    ``targets`` holding each target's before/after numbers, ``paths`` with an out_dir), ``after``: each
    target's raw :func:`~nada_core.training.metrics.evaluate` dict (None where skipped), ``interrupted``,
    ``loss_series`` (``{curve: [value per step]}``) and the ``trainer``."""

    metrics: dict
    after: list[dict | None]
    interrupted: bool
    loss_series: dict[str, list[float]]
    trainer: MultiTargetTrainer

    def comparison(self) -> torch.Tensor:
        """``[1, 3, H, W]``: the source row, then one row per target (preview seeds)."""
        from .run import comparison_image

        return comparison_image(self.trainer.preview())


def run_multi_training(trainer: MultiTargetTrainer, out_dir: str | Path | None = None,
                       eval_seeds: Sequence[int] | None = None,
                       on_progress: Callable[[ProgressInfo, torch.Tensor | None], None] | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       catch_interrupt: bool = True) -> MultiRunOutcome:
    """The multi-target counterpart of :func:`~nada_core.training.run.run_training`: previews, the
    loop, then (with ``out_dir``) one domain file per target (its own before/after metrics inside),
    the state, ``loss.png`` and ``metrics.json`` (``targets``: per-target metrics). A NaN/inf loss
    is re-raised after the last good vectors are saved; after a stop the "after" metrics are skipped."""
    from ..atomic import atomic_write_text
    from ..media.images import save_png
    from ..media.plots import save_loss_plot
    from .metrics import METRIC_NAMES, evaluate, reference
    from .run import comparison_image, loss_series

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    c = trainer.c  # the class a conditional generator is adapted for

    def step_done(info: ProgressInfo) -> None:
        grid = comparison_image(info.preview) if info.preview is not None else None
        if grid is not None and out is not None:
            save_png(grid, out / f"preview_{info.step:06d}.png")
        if on_progress is not None:
            on_progress(info, grid)

    # The source images are rendered and embedded once for every target, before and after.
    ref = reference(trainer.G_frozen, trainer.clip, eval_seeds, c=c) if eval_seeds else None
    before = [evaluate(trainer.G_frozen, trainer.G_frozen, trainer.clip, d, ref=ref)
              for d in trainer.directions] if ref else [None] * trainer.num_targets
    failure = None
    result = None
    try:
        result = trainer.run(on_progress=step_done, should_stop=should_stop, out_dir=out,
                             catch_interrupt=catch_interrupt)
    except NonFiniteLossError as err:
        failure = err
    interrupted = bool(result.interrupted) if result is not None else False
    per_target: list[dict] = [{} for _ in trainer.directions]
    after: list[dict | None] = [None] * trainer.num_targets
    try:
        for t, d in enumerate(trainer.directions):
            if before[t] is None:
                continue
            scores = per_target[t]
            scores["eval_seeds"] = list(eval_seeds)
            for key in METRIC_NAMES:
                scores[f"{key}_before"] = before[t][key]
            if interrupted:  # after a stop, exit promptly; after a NaN, measure the last good vectors
                continue
            after[t] = evaluate(trainer.G_frozen, trainer.view(t), trainer.clip, d, ref=ref)
            for key in METRIC_NAMES:
                scores[f"{key}_after"] = after[t][key]
    except KeyboardInterrupt:
        if not catch_interrupt:
            raise
        interrupted = True
    finally:
        trainer.adapter.active = None
    metrics = {"steps": trainer.step_index, "total_steps": trainer.config.steps, "interrupted": interrupted,
               "failed": str(failure) if failure else None, "device": str(trainer.device),
               "seconds_per_step": result.seconds_per_step if result and result.history else None,
               "targets": [{"direction": describe_direction(d), **s} for d, s in zip(trainer.directions, per_target)]}
    series = loss_series(trainer.history)
    if out is not None:
        paths = trainer.save(out, [{"metrics": s} for s in per_target])
        if trainer.history:
            save_loss_plot(series, out / "loss.png", title="nada train: several targets")
        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        metrics["paths"] = {k: str(v) for k, v in paths.items()}
    if failure is not None:
        raise failure
    return MultiRunOutcome(metrics, after, interrupted, series, trainer)


__all__ = ["MultiRunOutcome", "MultiTargetTrainer", "run_multi_training", "target_slug"]
