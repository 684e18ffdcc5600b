"""One training run, end to end: the pipeline the CLI, the demo and the NadaTrain node all call.

:func:`run_training` takes a built :class:`~nada_core.training.trainer.NadaTrainer` and does,
in order: CLIP metrics of the source on held-out seeds ("before"), the training loop (previews as
they come, snapshots), then the loss curve, the final source-vs-adapted comparison, the metrics
of the adapted generator ("after") and, with ``out_dir``, every file ``nada train`` writes.
Callers only translate their arguments and show progress through ``on_progress`` (tqdm on the
CLI, the ComfyUI progress bar in the node). See ``docs/method.md`` for the metrics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..domains.files import DOMAIN_FILE
from .state import STATE_FILE
from .trainer import NadaTrainer, NonFiniteLossError, ProgressInfo, TrainResult

METRIC_LABELS = {
    "directional_similarity": "directional similarity (higher = change matches the prompts)",
    "target_score": "target score (CLIP similarity to the target)",
    "diversity": "diversity (near 0 = collapsed to one image)",
    "source_correspondence": "source correspondence (how much of each source image survives)",
}


@dataclasses.dataclass
class RunOutcome:
    """What a run produced.

    ``result``: the loop's :class:`TrainResult` (None when the first step failed); ``metrics``:
    the JSON-able summary written as ``metrics.json`` (``<metric>_before``/``_after``, steps,
    seconds per step, device, ``paths`` with ``out_dir``); ``before``/``after``: the raw
    :func:`~nada_core.training.metrics.evaluate` dicts (None when skipped); ``comparison()``:
    ``[1, 3, H, W]`` grid in about [-1, 1], source row above adapted row (preview seeds, rendered
    on request); ``loss_series``: ``{curve name: [value per step]}``; ``failure``: the NaN/inf error, if any.
    """

    result: TrainResult | None
    metrics: dict
    before: dict | None
    after: dict | None
    trainer: NadaTrainer
    loss_series: dict[str, list[float]]
    interrupted: bool
    failure: NonFiniteLossError | None = None

    def comparison(self) -> torch.Tensor:
        return comparison_image(self.trainer.preview())


def comparison_image(pair: torch.Tensor) -> torch.Tensor:
    """Trainer preview ``[2, P, 3, R, R]`` (row 0 source, row 1 adapted) -> ``[1, 3, H, W]`` grid."""
    from ..media.images import make_grid

    rows, count = pair.shape[0], pair.shape[1]
    return make_grid(pair.reshape(rows * count, *pair.shape[2:]), ncols=count, pad=2, pad_value=1.0)


def loss_series(history: list[dict]) -> dict[str, list[float]]:
    """Per-step loss dicts -> ``{name: [value per step]}`` for the plot (NaN where a step lacks a
    name). With one weighted term at weight 1 the total is the same curve: it is drawn once, as
    ``"total (= <term>)"``, rather than two curves on top of each other (the second hiding the first)."""
    names: list[str] = []
    for h in history:
        names.extend(k for k in h if k not in names)
    series = {n: [h.get(n, float("nan")) for h in history] for n in names}
    others = [k for k in series if k != "total"]
    if len(others) == 1 and series[others[0]] == series.get("total"):
        series = {f"total (= {others[0]})": series["total"]}
    return series


def format_metrics(result: dict, title: str = "NADA metrics") -> str:
    """:func:`~nada_core.training.metrics.evaluate` result -> readable lines for a text output."""
    lines = [f"{title} on {result.get('num_samples', '?')} held-out seeds "
             f"(truncation {result.get('truncation', 0.7):g}):"]
    for key, label in METRIC_LABELS.items():
        if key in result:
            lines.append(f"  {label}: {result[key]:.4f}")
    for m in result.get("per_model", []) or []:
        vals = ", ".join(f"{k.split('_')[0]} {m[k]:.4f}" for k in METRIC_LABELS if k in m)
        lines.append(f"  [{m.get('clip', '?')} x{m.get('weight', 1):g}] {vals}")
    return "\n".join(lines)


def describe(direction) -> str:
    """Short label of a direction for plot titles."""
    if getattr(direction, "kind", None) == "image":
        return "image direction"
    return f"{direction.source_text!r} -> {direction.target_text!r}"


def run_training(trainer: NadaTrainer, out_dir: str | Path | None = None,
                 eval_seeds: Sequence[int] | None = None,
                 on_progress: Callable[[ProgressInfo, torch.Tensor | None], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, catch_interrupt: bool = True) -> RunOutcome:
    """Train ``trainer`` to its ``config.steps`` and collect (and with ``out_dir`` write) every output.

    ``on_progress(info, comparison)`` after each step; ``comparison`` is the ``[1, 3, H, W]``
    preview grid on preview steps, else None. ``eval_seeds``: held-out seeds for the
    before/after metrics (None = skip). With ``out_dir``: ``preview_<step>.png`` as they come,
    ``snapshots/`` (``snapshot_every``), then (also after a stop or a NaN loss: the last good
    weights) ``generator.safetensors`` (compact adapt: ``domain.safetensors``, with the metrics in
    its metadata), ``train_state.safetensors``, ``loss.png`` and
    ``metrics.json``. A NaN/inf loss is re-raised after that. After an interrupt the "after"
    metrics are skipped, so the caller can exit promptly.
    """
    from ..media.images import save_png
    from ..media.plots import save_loss_plot
    from .metrics import METRIC_NAMES, evaluate, reference

    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    cfg, clip, direction = trainer.config, trainer.clip, trainer.direction
    c = getattr(trainer, "c", None)  # the class a conditional generator is adapted for
    # The source images are rendered and embedded once, for the "before" and the "after" numbers.
    ref = reference(trainer.G_frozen, clip, eval_seeds, c=c) if eval_seeds else None
    before = evaluate(trainer.G_frozen, trainer.G_frozen, clip, direction, ref=ref) if ref else None

    def step_done(info: ProgressInfo) -> None:
        grid = comparison_image(info.preview) if info.preview is not None else None
        if grid is not None and out is not None:
            save_png(grid, out / f"preview_{info.step:06d}.png")
        if on_progress is not None:
            on_progress(info, grid)

    failure: NonFiniteLossError | None = None
    result = None
    try:
        result = trainer.run(on_progress=step_done, should_stop=should_stop, out_dir=out,
                             catch_interrupt=catch_interrupt)
    except NonFiniteLossError as err:
        failure = err
    interrupted = bool(result.interrupted) if result is not None else False

    series = loss_series(trainer.history)
    paths = trainer.save(out) if out is not None else {}
    if out is not None and trainer.history:
        save_loss_plot(series, out / "loss.png", title=f"nada train: {describe(direction)}")
    metrics: dict = {"steps": trainer.step_index, "total_steps": cfg.steps, "interrupted": interrupted,
                     "failed": str(failure) if failure else None,
                     "seconds_per_step": result.seconds_per_step if result and result.history else None,
                     "device": str(trainer.device)}
    after = None
    if before is not None:
        metrics["eval_seeds"] = list(eval_seeds)
        metrics["eval_truncation"] = before["truncation"]
        for key in METRIC_NAMES:
            metrics[f"{key}_before"] = before[key]
        if not interrupted:  # after a stop, exit promptly; after a NaN, measure the last good weights
            try:
                after = evaluate(trainer.G_frozen, trainer.G_train, clip, direction, ref=ref)
                for key in METRIC_NAMES:
                    metrics[f"{key}_after"] = after[key]
            except KeyboardInterrupt:
                if not catch_interrupt:
                    raise
                interrupted = True
                metrics["interrupted"] = True
    if out is not None and getattr(trainer, "adapter", None) is not None:
        # The domain file carries its own before/after numbers (it travels without metrics.json).
        scores = {k: v for k, v in metrics.items() if k.endswith(("_before", "_after")) or k == "eval_seeds"}
        paths["domain"] = trainer.save_domain(out / DOMAIN_FILE, {"metrics": scores})
    if out is not None:
        from ..atomic import atomic_write_text

        atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        metrics["paths"] = {k: str(v) for k, v in paths.items()}
    if failure is not None:
        raise failure
    return RunOutcome(result=result, metrics=metrics, before=before, after=after,
                      trainer=trainer, loss_series=series,
                      interrupted=interrupted)


__all__ = ["METRIC_LABELS", "RunOutcome", "comparison_image", "describe", "format_metrics", "loss_series",
           "run_training", "STATE_FILE"]
