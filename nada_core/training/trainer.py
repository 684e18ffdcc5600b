"""StyleGAN-NADA training: a frozen and a trained generator sharing one latent space, CLIP-guided.

Per step (see ``docs/method.md``):

1. re-select the trainable layers when the schedule says so (:mod:`nada_core.training.freezing`);
2. draw ``batch`` codes (style mixing with probability ``mixing``; the SAME crossover for the
   frozen and the trained image of a pair), map them once through the shared, frozen mapping;
3. render ``G_frozen`` under ``no_grad`` and ``G_train`` with grad, encode both with each CLIP
   model (the frozen images without autograd, so CLIP's backward pass covers only the trained
   ones), and combine the directional (and optional global and angle-consistency) losses;
4. Adam step on the trainable synthesis parameters; frozen ones get no gradient and stay
   bit-identical.

Everything random comes from one CPU ``torch.Generator`` seeded with ``TrainConfig.seed``, so a
run is reproducible on CPU and a resumed run continues exactly as an uninterrupted one would.
The trainer works when called under ``torch.inference_mode()`` (ComfyUI runs nodes that way)
and with source tensors created there: it copies the source into ordinary tensors and runs its
own work with inference mode off and grad on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import torch

from ..cpu_memory import reuse_freed_memory
from ..errors import InputError
from ..guidance.losses import SELECTION_WEIGHTS, LossWeights, clip_loss
from .freezing import LayerSelector, apply_selection, candidate_w_indices, \
    trainable_parameter_names
from ..models.conditioning import class_one_hot
from ..models.registry import AnyGenerator as Generator, build_generator
from ..models.stylegan2 import ModulatedConv2d
from .runtime import copy_generator, defer_sigint, grad_mode, grad_norm, forked_noise, make_autograd_safe, \
    seed_device_rng
from .adapt import make_adapter
from ..formats.checkpoints import lineage_sha256

from .config import TrainConfig, parse_layers  # noqa: F401  (re-exported: the old home of both)
from .state import GENERATOR_FILE, STATE_FILE, describe_direction, read_config, read_state  # noqa: F401


# ----------------------------------------------------------------------------------------------
# Results passed back to callers
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StepResult:
    """One finished step. ``step`` is 1-based; ``losses`` holds floats (``total`` included);
    ``layers`` the W+ indices trained this step; ``selected`` whether a selection pass ran."""

    step: int
    losses: dict[str, float]
    total: float
    layer_indices: list[int]
    selected: bool
    seconds: float


@dataclasses.dataclass
class ProgressInfo:
    """Passed to ``on_progress`` after each step. ``preview``: ``[2, P, 3, R, R]`` CPU float in
    about [-1, 1] (row 0 source, row 1 adapted, same seeds) on preview steps, else None."""

    step: int
    total_steps: int
    losses: dict[str, float]
    layer_indices: list[int]
    seconds_per_step: float
    preview: torch.Tensor | None = None
    snapshot: Path | None = None


@dataclasses.dataclass
class TrainResult:
    steps_done: int
    total_steps: int
    interrupted: bool
    seconds: float
    history: list[dict[str, float]]

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, len(self.history))


class NonFiniteLossError(InputError):
    """The loss became NaN/inf; the weights of the previous step were kept."""


# ----------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------


class NadaTrainer:
    """Trains a copy of ``generator`` so that CLIP sees the change given by ``direction``.

    ``generator``: source :class:`Generator` (any device, may hold inference tensors; it is
    copied, never modified). ``clip``: ``ClipModel`` or ``ClipEnsemble``. ``direction``: from
    :mod:`nada_core.guidance.directions`. ``device``: where training runs (default: the generator's).

    Attributes: ``G_frozen`` (source copy, never changes), ``G_train`` (trained synthesis, same
    mapping module as ``G_frozen``), ``optimizer`` (Adam over every synthesis parameter that the
    freezing options allow; frozen ones simply get no gradient), ``step_index`` (steps done),
    ``history`` (per-step loss dicts).
    """

    num_targets = 1  # compact domains trained at once (see training/multi_target.py)

    def __init__(self, generator: Generator, clip, direction, config: TrainConfig | None = None,
                 device: str | torch.device | None = None) -> None:
        self.config = (config or TrainConfig()).validate()
        if device is None:
            device = next(generator.parameters()).device
        from ..devices import resolve_device

        self.device = resolve_device(device)
        self.clip = clip
        self.direction = direction
        self.source_sha256 = getattr(generator, "source_sha256", None)
        self.source_lineage = lineage_sha256(generator)  # what a compact domain records as its source
        self.source_metadata = dict(getattr(generator, "metadata", None) or {})
        with grad_mode():
            if not callable(getattr(direction, "guides", None)):
                raise InputError(f"expected a Direction from nada_core.guidance.directions, got "
                                 f"{type(direction).__name__}")
            # The fixed vectors move once; no grad ever flows into them.
            self.guides = direction.guides(clip, device=self.device)
            for g in self.guides:
                inner = getattr(g.clip, "model", None)
                if isinstance(inner, torch.nn.Module):
                    make_autograd_safe(inner)
            self.G_frozen = copy_generator(generator, self.device).requires_grad_(False)
            # Compact domains (--adapt domain|stylespace) train small vectors on a light copy instead.
            self.adapter = make_adapter(self.config, self.G_frozen, targets=self.num_targets)
            self.G_train = self._make_train_generator() if self.adapter is None else self.adapter.generator
            # Full runs: each modulated conv picks its cheaper formulation, the same in both twins for
            # the same shapes (grad only on weights or activations, never on styles alone), so before
            # the first update G_train(w) == G_frozen(w) bit for bit (dI starts at 0). Compact domains
            # restyle G_train (style gradients only): one formulation for both twins instead.
            for m in list(self.G_frozen.modules()) + list(self.G_train.modules()):
                if isinstance(m, ModulatedConv2d):
                    m.grouped = None if self.adapter is None else False
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        cfg = self.config
        self.freeze_options = cfg.freeze_options
        self.candidates = candidate_w_indices(self.G_train, self.freeze_options)
        allowed = None if self.adapter is None else self.adapter.w_indices  # a compact domain's own layers
        if allowed is not None:
            self.candidates = [i for i in self.candidates if i in allowed]
        if not self.candidates:
            raise InputError("no trainable layers under these settings")
        # A conditional generator adapts one class: every code (training, selection, previews) uses it.
        with torch.inference_mode(False):  # a normal tensor even when ComfyUI builds the trainer
            self.c = class_one_hot(self.G_frozen.c_dim, cfg.class_index, 1, self.device)
        # Selection chunks of one training batch keep the pass's memory peak at or below a step's.
        # Checkpointing asks for memory: its selection passes keep the weights' own layout. On a CPU
        # channels-last weights (the pass's default there) are faster but cost 14% more peak over
        # several steps (README, Memory).
        self.selector = LayerSelector(cfg.schedule, self.freeze_options, n_codes=cfg.n_select_codes,
                                      steps=cfg.select_steps, lr=cfg.select_lr,
                                      chunk=cfg.select_chunk or cfg.batch, c=self.c, allowed=allowed,
                                      channels_last=False if cfg.checkpointing else None)
        # The optimiser sees every parameter that may ever train; Adam skips those without grad.
        if self.adapter is None:
            self._opt_names = trainable_parameter_names(self.G_train, self.candidates, self.freeze_options)
        else:
            self._opt_names = list(self.adapter.named_parameters())
        params = self.trainable_parameters()
        # lr * adam_ratio and betas ** adam_ratio: with the default 0.8 the official code's optimiser.
        self.optimizer = torch.optim.Adam([params[n] for n in self._opt_names], lr=cfg.adam_lr,
                                          betas=cfg.adam_betas)
        self._apply_selection([])
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.step_index = 0
        self.history: list[dict[str, float]] = []
        self.layer_history: list[list[int]] = []
        self._frozen_preview: torch.Tensor | None = None
        # Parameters ever updated (they make their block differ from G_frozen's); None = recompute.
        self._touched: set[str] | None = set()
        syn = self.G_train.synthesis
        self._block_names = [[f"synthesis.{n}" for n in syn.block_parameter_names(b)]
                             for b in range(syn.num_blocks)] if hasattr(syn, "block_parameter_names") else []
        self.extra_info: dict = {}  # caller's JSON-able notes kept in the training state (CLI: inputs)
        self._amp = (cfg.mixed_precision and self.device.type == "cuda"
                     and torch.cuda.is_bf16_supported())

    # Construction -----------------------------------------------------------------------------
    def _make_train_generator(self) -> Generator:
        """A full Generator whose ``mapping`` IS ``G_frozen.mapping`` and whose synthesis is a copy."""
        with torch.device("meta"):
            G = build_generator(self.G_frozen.config)
        G.mapping = self.G_frozen.mapping  # shared and frozen: keeps the latent spaces aligned
        synth = copy_generator(self.G_frozen, self.device).synthesis
        G.synthesis = synth
        return G.eval()

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Every parameter the optimiser holds, by name (synthesis weights, or the domain vectors)."""
        if self.adapter is not None:
            return self.adapter.named_parameters()
        params = dict(self.G_train.named_parameters())
        return {n: params[n] for n in self._opt_names}

    def _apply_selection(self, indices) -> None:
        """Gradients on exactly what W+ ``indices`` train (their layers' weights or domain vectors)."""
        if self.adapter is None:
            apply_selection(self.G_train, indices, self.freeze_options)
        else:
            self.adapter.apply_selection(indices)

    # Properties ---------------------------------------------------------------------------------
    @property
    def generator(self) -> Generator:
        """The adapted generator (live: it keeps changing while training continues), tagged with
        ``source_sha256`` and provenance ``metadata`` so ``save_generator(trainer.generator, path)``
        records where it came from."""
        self._tag_generator(self.G_train, self.metadata())
        return self.G_train

    def export_generator(self, device: str | torch.device | None = None) -> Generator:
        """An independent, frozen copy of the adapted generator (eval mode, no grad), carrying
        ``source_sha256`` and training ``metadata``."""
        if self.adapter is not None:  # compact: the domain baked into a plain generator
            from ..domains.apply import bake

            G = bake(self.G_frozen, [(self.domain(), 1.0)]).to(torch.device(device) if device is not None
                                                               else self.device)
        else:
            G = copy_generator(self.G_train, torch.device(device) if device is not None else self.device)
        G.requires_grad_(False)
        self._tag_generator(G, self.metadata())
        return G

    def _tag_generator(self, G: Generator, provenance: dict) -> None:
        """Attach ``source_sha256`` and a ``metadata`` dict in the layout :mod:`nada_core.formats.checkpoints` uses."""
        G.source_sha256 = self.source_sha256
        G.metadata = {
            "format": "nada-safetensors",
            "source_sha256": self.source_sha256 or "",
            "source_format": self.source_metadata.get("format", ""),
            "w_avg_origin": self.source_metadata.get("w_avg_origin") or "stored",
            "provenance": provenance,
        }

    def metadata(self) -> dict:
        """Provenance written next to the adapted weights (JSON-able)."""
        return {
            "nada": {
                "kind": "adapted-generator" if self.adapter is None else "compact-domain",
                "direction": describe_direction(self.direction),
                "clip_models": [{"name": g.name, "weight": g.weight} for g in self.guides],
                "settings": self.config.to_dict(),
                "steps_done": self.step_index,
                "source_sha256": self.source_sha256,
                "source_file": self.source_metadata.get("source_file"),
            }
        }

    # One step -----------------------------------------------------------------------------------
    def _autocast(self):
        if self._amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _selection_loss(self, img: torch.Tensor) -> torch.Tensor:
        """Global CLIP loss towards the target, summed over the guides with their weights."""
        return clip_loss(self.guides, img, None, SELECTION_WEIGHTS).total

    @torch.no_grad()
    def _sample_ws(self) -> torch.Tensor:
        """Training codes ``[batch, num_ws, w_dim]`` with style mixing, from ``self.rng``."""
        cfg, G = self.config, self.G_frozen
        b = cfg.batch
        z = torch.randn(b, G.z_dim, generator=self.rng)
        if cfg.mixing > 0:
            z2 = torch.randn(b, G.z_dim, generator=self.rng)
            mix = torch.rand(b, generator=self.rng) < cfg.mixing
            cut = torch.randint(1, G.num_ws, (b,), generator=self.rng)
            ws = G.mapping(torch.cat([z, z2]).to(self.device), self.c, truncation_psi=cfg.truncation)
            w1, w2 = ws[:b], ws[b:]
            idx = torch.arange(G.num_ws)[None, :]
            take2 = (mix[:, None] & (idx >= cut[:, None])).to(self.device)  # [b, num_ws]
            return torch.where(take2[..., None], w2, w1)
        return G.mapping(z.to(self.device), self.c, truncation_psi=cfg.truncation)

    def _render_pair(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen image (no grad) and trained image (grad) for the same codes and the same noise.

        With ``noise_mode="random"`` the noise seed is drawn from ``self.rng`` and both passes run
        with it in a forked RNG, so the noise is identical for the pair, reproducible from the
        training seed and the caller's global RNG is left alone.

        The first :meth:`shared_prefix_blocks` synthesis blocks are equal in both generators, so
        their output is computed once (no grad) and both generators continue from it; the images
        are the same as two full passes (``tests/test_trainer.py`` checks it).
        """
        mode = self.config.noise_mode
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=self.rng)) if mode == "random" else None
        start = self.shared_prefix_blocks()
        syn_f, syn_t = self.G_frozen.synthesis, self.G_train.synthesis
        with forked_noise(self.device, noise_seed), self._autocast():
            with torch.no_grad():
                state = syn_f.forward_prefix(ws, start, noise_mode=mode) if start else None
                after_prefix = self._rng_state() if noise_seed is not None else None
                frozen = syn_f.forward_from(ws, state, start, noise_mode=mode) if start else syn_f(ws, noise_mode=mode)
            if after_prefix is not None:
                self._set_rng_state(after_prefix)  # replay the same noise for the trained image
            if start or (self.config.checkpointing and hasattr(syn_t, "forward_from")):
                trained = syn_t.forward_from(ws, state, start, noise_mode=mode, checkpoint=self.config.checkpointing)
            else:
                trained = syn_t(ws, noise_mode=mode)
        return frozen, trained

    def shared_prefix_blocks(self) -> int:
        """How many leading synthesis blocks the trained generator shares with the frozen one this
        step: blocks none of whose parameters trains now or has ever been updated."""
        if not self._block_names:  # a synthesis network without blocks (no shared-prefix support)
            return 0
        if getattr(self, "adapter", None) is not None:  # compact domains restyle every layer, from the first
            return 0
        if self._touched is None:  # after a resume: what differs from the source has been trained
            frozen = dict(self.G_frozen.named_parameters())
            self._touched = {n for n, p in self.G_train.named_parameters() if not torch.equal(p, frozen[n])}
        dirty = self._touched | {n for n, p in self.G_train.named_parameters() if p.requires_grad}
        for b, names in enumerate(self._block_names):
            if dirty.intersection(names):
                return b
        return len(self._block_names) - 1  # nothing trains: keep one block so the image has a graph

    def _rng_state(self) -> torch.Tensor:
        if self.device.type == "cuda":
            return torch.cuda.get_rng_state(self.device)
        return torch.get_rng_state()

    def _set_rng_state(self, state: torch.Tensor) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)
        else:
            torch.set_rng_state(state)

    def _seed_device_rng(self, seed: int) -> None:
        """Seed the generator that ``torch.randn(device=self.device)`` draws from (only that one)."""
        seed_device_rng(self.device, seed)

    def _losses(self, frozen: torch.Tensor, trained: torch.Tensor) -> dict[str, torch.Tensor]:
        """The step's loss report (``total`` with grad, then the detached terms)."""
        cfg = self.config
        weights = LossWeights(cfg.directional_weight, cfg.global_weight, cfg.angle_weight)
        return clip_loss(self.guides, trained, frozen, weights, autocast=self._autocast).report()

    def step(self) -> StepResult:
        """One training step. On any exception (Ctrl-C included) the trainer is left exactly as
        before the step: weights, optimiser, RNG and layer selection roll back or were never
        touched. A NaN/inf loss raises :class:`NonFiniteLossError` naming the step."""
        if self.step_index >= self.config.steps:
            raise InputError(f"training already finished its {self.config.steps} steps; raise steps to continue")
        with grad_mode():
            return self._step()

    def _step(self) -> StepResult:
        t0 = time.perf_counter()
        rng_state = self.rng.get_state()
        sel_state = self.selector.state_dict()
        try:
            layer_indices, changed = self.selector.indices_for_step(
                self.step_index, self.G_train, self._selection_loss, self.rng,
                noise_mode=self.config.noise_mode, autocast=self._autocast if self._amp else None)
            if changed:
                self._apply_selection(layer_indices)
            ws = self._sample_ws()
            frozen, trained = self._render_pair(ws)
            losses = self._losses(frozen, trained)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            # One device sync per step: the loss values are needed for the NaN check and the
            # report; the gradient norm rides along so an overflow in the backward pass is caught too.
            norm = grad_norm(self.optimizer.param_groups[0]["params"], self.device)
            values = torch.stack([v.float() for v in losses.values()] + [norm]).cpu().tolist()
            grad_norm_value = values.pop()
            report = dict(zip(losses.keys(), values))
            if not all(math.isfinite(v) for v in values + [grad_norm_value]):
                bad = ", ".join(f"{k}={v}" for k, v in report.items() if not math.isfinite(v)) \
                    or f"gradient norm={grad_norm_value}"
                raise NonFiniteLossError(
                    f"loss became non-finite at step {self.step_index + 1} ({bad}); the weights from step "
                    f"{self.step_index} are kept; lower the learning rate (now {self.config.lr:g}), e.g. to "
                    f"{self.config.lr / 4:g}")
            with defer_sigint():
                self.optimizer.step()
                if self._touched is not None:
                    self._touched.update(n for n, p in self.G_train.named_parameters() if p.grad is not None)
        except BaseException:
            self.rng.set_state(rng_state)
            self.selector.load_state_dict(sel_state)
            self._apply_selection(self.selector.current or [])
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.zero_grad(set_to_none=True)
        selected = self.selector.ran_selection
        self.step_index += 1
        self.history.append(report)
        self.layer_history.append(list(layer_indices))
        return StepResult(step=self.step_index, losses=report, total=report["total"],
                          layer_indices=list(layer_indices),
                          selected=bool(selected), seconds=time.perf_counter() - t0)

    # Previews -----------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> torch.Tensor:
        """``[2, P, 3, R, R]`` CPU float: row 0 the source, row 1 the adapted generator, for
        ``config.preview_seeds`` at ``config.preview_truncation`` (const noise)."""
        from ..seeds import z_from_seeds

        with torch.inference_mode(False):
            cfg = self.config
            z = z_from_seeds(cfg.preview_seeds, self.G_frozen.z_dim, device=self.device)
            ws = self.G_frozen.mapping(z, self.c, truncation_psi=cfg.preview_truncation)
            if self._frozen_preview is None or self._frozen_preview.shape[0] != len(cfg.preview_seeds):
                self._frozen_preview = self.G_frozen.synthesis(ws, noise_mode="const").float().cpu()
            adapted = self.G_train.synthesis(ws, noise_mode="const").float().cpu()
            return torch.stack([self._frozen_preview, adapted])

    # Loop ---------------------------------------------------------------------------------------
    def run(self, on_progress: Callable[[ProgressInfo], None] | None = None,
            should_stop: Callable[[], bool] | None = None, out_dir: str | Path | None = None,
            catch_interrupt: bool = True) -> TrainResult:
        """Train until ``config.steps`` steps are done.

        ``should_stop()`` is checked before every step: when it returns True the loop ends
        after at most the step in progress, with ``interrupted=True``. With ``catch_interrupt``
        a Ctrl-C (KeyboardInterrupt) ends the loop the same way; the step it hit is rolled back,
        so the generator is that of the last completed step. With ``out_dir`` and
        ``snapshot_every > 0`` the generator is saved as ``out_dir/snapshots/generator_<step>.safetensors``
        and the resumable state as ``out_dir/train_state.safetensors`` every ``snapshot_every`` steps.
        """
        cfg = self.config
        t_start = time.perf_counter()
        done_before = self.step_index
        interrupted = False
        try:
            # On a CPU each step reuses the memory the last one freed (see nada_core.cpu_memory),
            # unless the run asked to save memory (checkpointing): the reuse costs peak memory.
            with reuse_freed_memory(self.device, enabled=not cfg.checkpointing):
                while self.step_index < cfg.steps:
                    if should_stop is not None and should_stop():
                        interrupted = True
                        break
                    res = self.step()
                    preview = None
                    if cfg.preview_every and (res.step % cfg.preview_every == 0 or res.step == cfg.steps):
                        preview = self.preview()
                    snap = None
                    if out_dir is not None and cfg.snapshot_every and res.step % cfg.snapshot_every == 0:
                        snap = self.save_snapshot(out_dir)
                    if on_progress is not None:
                        elapsed = time.perf_counter() - t_start
                        on_progress(ProgressInfo(step=res.step, total_steps=cfg.steps, losses=res.losses,
                                                 layer_indices=res.layer_indices,
                                                 seconds_per_step=elapsed / (self.step_index - done_before),
                                                 preview=preview, snapshot=snap))
        except KeyboardInterrupt:
            if not catch_interrupt:
                raise
            interrupted = True
        seconds = time.perf_counter() - t_start
        return TrainResult(steps_done=self.step_index, total_steps=cfg.steps, interrupted=interrupted,
                           seconds=seconds, history=list(self.history[done_before:]))

    # Saving / resuming ----------------------------------------------------------------------------
    def save_generator(self, path: str | Path, extra_metadata: dict | None = None) -> Path:
        """Save the adapted generator as ``.safetensors`` (atomic) with provenance metadata."""
        from ..formats.checkpoints import save_generator

        meta = self.metadata()
        if extra_metadata:
            meta.update(extra_metadata)
        # A compact run's G_train renders through hooks on the frozen weights: save it baked.
        G = self.G_train if self.adapter is None else self.export_generator()
        self._tag_generator(G, meta)
        save_generator(G, path, metadata=meta)
        return Path(path)

    def domain(self, target: int = 0, extra_metadata: dict | None = None):
        """The trained compact domain of ``target`` (a :class:`~nada_core.domains.Domain`, CPU copy)."""
        if self.adapter is None:
            raise InputError("this run trains the full generator (adapt 'full'); it has no compact domain")
        meta = self.metadata()
        if extra_metadata:
            meta.update(extra_metadata)
        return self.adapter.domain(target, self.source_lineage, self.G_frozen.config.to_dict(), meta)

    def save_domain(self, path: str | Path, extra_metadata: dict | None = None, target: int = 0) -> Path:
        """Write the compact domain as ``.safetensors`` (atomic; see :mod:`nada_core.domains.files`)."""
        from ..domains.files import save_domain

        return save_domain(self.domain(target, extra_metadata), path)

    def _save_result(self, out: Path, stem: str, extra_metadata: dict | None = None) -> Path:
        """``out/<stem>.safetensors`` (full) or ``out/<domain stem>.safetensors`` (compact)."""
        if self.adapter is None:
            return self.save_generator(out / f"{stem}.safetensors", extra_metadata)
        return self.save_domain(out / f"{stem.replace('generator', 'domain')}.safetensors", extra_metadata)

    def save_snapshot(self, out_dir: str | Path) -> Path:
        """``out_dir/snapshots/generator_<step:06d>.safetensors`` (compact: ``domain_<step>``) plus the
        resumable state."""
        out = Path(out_dir)
        path = self._save_result(out / "snapshots", f"generator_{self.step_index:06d}")
        self.save_state(out / STATE_FILE)
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``generator.safetensors`` and ``train_state.safetensors`` into ``out_dir`` (each atomic)."""
        out = Path(out_dir)
        key = "generator" if self.adapter is None else "domain"
        return {key: self._save_result(out, Path(GENERATOR_FILE).stem), "state": self.save_state(out / STATE_FILE)}

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything needed to continue bit-identically (see :func:`nada_core.training.state.state_tensors`)."""
        from .state import state_tensors

        return state_tensors(self)

    def save_state(self, path: str | Path) -> Path:
        """Write the resumable state to one ``.safetensors`` file (atomic; see :mod:`nada_core.training.state`)."""
        from .state import save_state

        return save_state(self, path)

    def load_state(self, path: str | Path, check_source: bool = True) -> "NadaTrainer":
        """Continue from a file written by :meth:`save_state` (or a folder holding one); returns ``self``."""
        from .state import load_state

        load_state(self, path, check_source=check_source)
        self._touched = None  # the loaded weights decide which blocks still equal the source's
        return self
