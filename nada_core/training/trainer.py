"""StyleGAN-NADA training: a frozen and a trained generator sharing one latent space, CLIP-guided.

Per step (see ``docs/method.md``):

1. re-select the trainable layers when the schedule says so (:mod:`nada_core.training.freezing`);
2. draw ``batch`` codes (style mixing with probability ``mixing``; the SAME crossover for the
   frozen and the trained image of a pair), map them once through the shared, frozen mapping;
3. render ``G_frozen`` under ``no_grad`` and ``G_train`` with grad, encode both with each CLIP
   model in ONE batched call, and combine the directional (and optional global and
   angle-consistency) losses;
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
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..errors import CheckpointError, InputError
from ..guidance.losses import angle_consistency_loss, directional_loss, global_loss
from .freezing import FreezeOptions, LayerSchedule, LayerSelector, apply_selection, candidate_w_indices, \
    trainable_parameter_names
from ..models.stylegan2 import Generator, ModulatedConv2d

STATE_FORMAT = "nada-train-state"
STATE_VERSION = 1
STATE_FILE = "train_state.safetensors"
GENERATOR_FILE = "generator.safetensors"

# Settings that may change between a saved run and its resumption without changing the maths.
_RESUMABLE_CHANGES = {"steps", "preview_every", "preview_seeds", "preview_truncation", "snapshot_every"}


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainConfig:
    """Every training setting. Defaults follow the paper's recipe (Appendix I) for style changes.

    ``layers``: how many W+ indices to train each step (adaptive selection), or ``"all"``
    (every styled conv, no selection pass). ``interval``/``falloff``: re-select every
    ``interval`` steps; shrink k by one every ``falloff`` steps (0 = never), down to 1.
    ``n_select_codes``/``select_steps``/``select_lr``: N_w, N_i and the SGD rate of a selection
    pass. ``mixing``: style-mixing probability. ``truncation``: psi of the training codes.
    Loss weights: ``directional_weight`` (the NADA loss), ``global_weight`` (1 - cos to the
    target), ``angle_weight`` (in-domain angle consistency between the samples of a batch).
    ``preview_every`` (0 = off) renders ``preview_seeds`` at ``preview_truncation``.
    ``snapshot_every`` (0 = off) saves the generator under ``snapshots/`` every N steps.
    ``mixed_precision``: bf16 autocast on CUDA, on by default (ignored on other devices and on GPUs
    without bf16; weights and optimiser state stay float32; fp16 is not offered as
    StyleGAN2's modulated convs overflow it without loss scaling). ``noise_mode``: "const"
    (each layer's stored noise) or "random" (fresh noise per step, identical for the frozen and
    trained image of a pair).
    """

    steps: int = 300
    batch: int = 2
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    layers: int | str = "all"
    interval: int = 1
    falloff: int = 0
    n_select_codes: int = 8
    select_steps: int = 1
    select_lr: float = 0.01
    mixing: float = 0.9
    truncation: float = 1.0
    directional_weight: float = 1.0
    global_weight: float = 0.0
    angle_weight: float = 0.0
    train_torgb: bool = False
    train_affine: bool = False
    train_const: bool = False
    seed: int = 0
    preview_every: int = 50
    preview_seeds: tuple[int, ...] = (0, 1, 2, 3)
    preview_truncation: float = 0.7
    snapshot_every: int = 0
    mixed_precision: bool = True
    noise_mode: str = "const"

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Raise :class:`InputError` naming the first bad setting; normalise types in place."""

        def whole(name: str, lo: int) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"{name} must be a whole number >= {lo}, got {v!r}")
            return v

        def number(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
                lo_s, hi_s = ("(" if lo_open else "[") + f"{lo}", f"{hi}" + (")" if hi_open else "]")
                raise InputError(f"{name} must be a number in {lo_s}, {hi_s}, got {v!r}")
            setattr(self, name, float(v))
            return float(v)

        whole("steps", 1)
        whole("batch", 1)
        number("lr", 0.0, 10.0, lo_open=True)
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in self.betas)):
            raise InputError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.layers = parse_layers(self.layers)
        whole("interval", 1)
        whole("falloff", 0)
        whole("n_select_codes", 1)
        whole("select_steps", 1)
        number("select_lr", 0.0, 1e3, lo_open=True)
        number("mixing", 0.0, 1.0)
        number("truncation", 0.0, 2.0, lo_open=True)
        number("preview_truncation", 0.0, 2.0, lo_open=True)
        for name in ("directional_weight", "global_weight", "angle_weight"):
            number(name, 0.0, 1e6)
        if self.directional_weight + self.global_weight + self.angle_weight <= 0:
            raise InputError("all loss weights are 0; set directional_weight (the NADA loss) above 0")
        whole("seed", 0)
        whole("preview_every", 0)
        whole("snapshot_every", 0)
        from ..seeds import parse_seeds

        self.preview_seeds = tuple(parse_seeds(self.preview_seeds if not isinstance(self.preview_seeds, tuple)
                                               else list(self.preview_seeds)))
        for name in ("train_torgb", "train_affine", "train_const", "mixed_precision"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.noise_mode not in ("const", "random"):
            raise InputError(f"noise_mode must be 'const' or 'random', got {self.noise_mode!r}")
        return self

    @property
    def k(self) -> int | None:
        """Layer count as an int, or None for all layers."""
        return None if self.layers == "all" else int(self.layers)

    @property
    def freeze_options(self) -> FreezeOptions:
        return FreezeOptions(self.train_torgb, self.train_affine, self.train_const)

    @property
    def schedule(self) -> LayerSchedule:
        return LayerSchedule(k=self.k, interval=self.interval, falloff=self.falloff)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["preview_seeds"] = list(self.preview_seeds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training settings {unknown}; this file may come from a newer version")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "preview_seeds" in d:
            d["preview_seeds"] = tuple(d["preview_seeds"])
        return cls(**d)


def parse_layers(value: int | str | None) -> int | str:
    """``"all"``/``None``/``"ALL"`` -> ``"all"``; ``"12"``/``12`` -> 12; anything else -> InputError."""
    if value is None:
        return "all"
    if isinstance(value, str):
        s = value.strip().lower()
        if s == "all":
            return "all"
        try:
            value = int(s)
        except ValueError:
            raise InputError(f"layers must be a whole number >= 1 or 'all', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"layers must be a whole number >= 1 or 'all', got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# CLIP guidance: one entry per CLIP model
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ClipGuide:
    """One CLIP model's share of the guidance.

    ``clip`` has ``encode_image(img [N, 3, H, W] in [-1, 1]) -> [N, D]`` (unit rows,
    differentiable). ``direction``: unit ``[D]`` CLIP-space direction dT. ``target``: unit ``[D]``
    target embedding for the global loss (target text, or mean target-image embedding).
    """

    name: str
    clip: Any
    weight: float
    direction: torch.Tensor
    target: torch.Tensor


def guides_for(clip, direction) -> list[ClipGuide]:
    """Pair each CLIP model of ``clip`` (a ``ClipModel`` or ``ClipEnsemble``) with its direction
    (a :class:`nada_core.guidance.directions.Direction` computed with the same models).

    A ready list of :class:`ClipGuide` passes through unchanged (custom encoders).
    """
    if isinstance(direction, (list, tuple)) and direction and all(isinstance(g, ClipGuide) for g in direction):
        return list(direction)
    from ..guidance.clip import as_ensemble

    if not (hasattr(direction, "vector") and hasattr(direction, "target")):
        raise InputError(f"expected a Direction from nada_core.guidance.directions, got {type(direction).__name__}")
    guides = []
    for model, weight in as_ensemble(clip):
        guides.append(ClipGuide(name=model.name, clip=model, weight=float(weight),
                                direction=direction.vector(model.name), target=direction.target(model.name)))
    return guides


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
    layers: list[int]
    selected: bool
    seconds: float


@dataclasses.dataclass
class ProgressInfo:
    """Passed to ``on_progress`` after each step. ``preview``: ``[2, P, 3, R, R]`` CPU float in
    about [-1, 1] (row 0 source, row 1 adapted, same seeds) on preview steps, else None."""

    step: int
    total_steps: int
    losses: dict[str, float]
    layers: list[int]
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


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _copy_generator(source: Generator, device: torch.device) -> Generator:
    """An independent copy of ``source`` on ``device`` made of ordinary (non-inference) tensors.

    The copy is built on the meta device (no random initialisation), then every parameter and
    buffer (non-persistent ones included) is cloned in from the source.
    """
    with torch.inference_mode(False), torch.no_grad():
        with torch.device("meta"):
            G = Generator(source.config)
        G = G.to_empty(device=device)
        src_params = dict(source.named_parameters())
        src_bufs = dict(source.named_buffers())
        for name, p in G.named_parameters():
            p.copy_(src_params[name].detach().clone())
        for name, b in G.named_buffers():
            b.copy_(src_bufs[name].detach().clone())
    return G.eval()


def _make_autograd_safe(module: torch.nn.Module) -> int:
    """Replace parameters/buffers of ``module`` that are inference tensors with ordinary copies.

    A CLIP model loaded under ``torch.inference_mode()`` (as ComfyUI loads everything) holds
    inference tensors, which autograd refuses to save for backward, so gradients could not flow
    through it to the generator. Values are unchanged; returns the number of tensors replaced.
    """
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for mod in module.modules():
            for name, p in list(mod._parameters.items()):
                if p is not None and p.is_inference():
                    mod._parameters[name] = torch.nn.Parameter(p.clone(), requires_grad=p.requires_grad)
                    replaced += 1
            for name, b in list(mod._buffers.items()):
                if b is not None and b.is_inference():
                    mod._buffers[name] = b.clone()
                    replaced += 1
    return replaced


@contextlib.contextmanager
def _grad_mode() -> Iterator[None]:
    """Inference mode off and grad on, whatever the caller had (ComfyUI runs under inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def _defer_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an optimiser update is never applied half-way.

    Only possible in the main thread; elsewhere (ComfyUI's worker) this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: received.append(a))
    except (ValueError, OSError):  # pragma: no cover - signals unavailable
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def _grad_norm(params, device: torch.device) -> torch.Tensor:
    """L2 norm of all existing gradients, as a 0-d float32 tensor (no device sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    try:
        norms = torch._foreach_norm(grads)
    except (AttributeError, RuntimeError):  # pragma: no cover - older/unusual backends
        norms = [g.norm() for g in grads]
    return torch.stack([n.float() for n in norms]).norm()


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
        self.source_metadata = dict(getattr(generator, "metadata", None) or {})
        with _grad_mode():
            self.guides = guides_for(clip, direction)
            for g in self.guides:  # move the fixed vectors once; no grad ever flows into them
                inner = getattr(g.clip, "model", None)
                if isinstance(inner, torch.nn.Module):
                    _make_autograd_safe(inner)
                g.direction = g.direction.detach().to(self.device, torch.float32).clone()
                g.target = g.target.detach().to(self.device, torch.float32).clone()
            self.G_frozen = _copy_generator(generator, self.device).requires_grad_(False)
            self.G_train = self._make_train_generator()
            # One formulation of the modulated convs for both twins, with or without autograd, so
            # that before the first update G_train(w) == G_frozen(w) bit for bit (dI starts at 0).
            for m in list(self.G_frozen.modules()) + list(self.G_train.modules()):
                if isinstance(m, ModulatedConv2d):
                    m.grouped = False
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        cfg = self.config
        self.freeze_options = cfg.freeze_options
        self.candidates = candidate_w_indices(self.G_train, self.freeze_options)
        if not self.candidates:
            raise InputError("no trainable layers under these settings")
        self.selector = LayerSelector(cfg.schedule, self.freeze_options, n_codes=cfg.n_select_codes,
                                      steps=cfg.select_steps, lr=cfg.select_lr)
        # The optimiser sees every parameter that may ever train; Adam skips those without grad.
        self._opt_names = trainable_parameter_names(self.G_train, self.candidates, self.freeze_options)
        params = dict(self.G_train.named_parameters())
        self.optimizer = torch.optim.Adam([params[n] for n in self._opt_names], lr=cfg.lr, betas=cfg.betas)
        apply_selection(self.G_train, [], self.freeze_options)
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.step_index = 0
        self.history: list[dict[str, float]] = []
        self.layer_history: list[list[int]] = []
        self._frozen_preview: torch.Tensor | None = None
        self.extra_info: dict = {}  # caller's JSON-able notes kept in the training state (CLI: inputs)
        self._amp = (cfg.mixed_precision and self.device.type == "cuda"
                     and torch.cuda.is_bf16_supported())

    # Construction -----------------------------------------------------------------------------
    def _make_train_generator(self) -> Generator:
        """A full Generator whose ``mapping`` IS ``G_frozen.mapping`` and whose synthesis is a copy."""
        with torch.device("meta"):
            G = Generator(self.G_frozen.config)
        G.mapping = self.G_frozen.mapping  # shared and frozen: keeps the latent spaces aligned
        synth = _copy_generator(self.G_frozen, self.device).synthesis
        G.synthesis = synth
        return G.eval()

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
        G = _copy_generator(self.G_train, torch.device(device) if device is not None else self.device)
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
                "kind": "adapted-generator",
                "direction": _describe_direction(self.direction),
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
        """Global CLIP loss towards the target, summed over models with their weights."""
        total = 0.0
        for g in self.guides:
            total = total + g.weight * global_loss(g.clip.encode_image(img).float(), g.target)
        return total

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
            ws = G.mapping(torch.cat([z, z2]).to(self.device), truncation_psi=cfg.truncation)
            w1, w2 = ws[:b], ws[b:]
            idx = torch.arange(G.num_ws)[None, :]
            take2 = (mix[:, None] & (idx >= cut[:, None])).to(self.device)  # [b, num_ws]
            return torch.where(take2[..., None], w2, w1)
        return G.mapping(z.to(self.device), truncation_psi=cfg.truncation)

    def _render_pair(self, ws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen image (no grad) and trained image (grad) for the same codes and the same noise.

        With ``noise_mode="random"`` the noise seed is drawn from ``self.rng`` and both passes run
        with it in a forked RNG, so the noise is identical for the pair, reproducible from the
        training seed and the caller's global RNG is left alone.
        """
        mode = self.config.noise_mode
        if mode != "random":
            with self._autocast():
                with torch.no_grad():
                    frozen = self.G_frozen.synthesis(ws, noise_mode=mode)
                trained = self.G_train.synthesis(ws, noise_mode=mode)
            return frozen, trained
        noise_seed = int(torch.randint(0, 2**62, (1,), generator=self.rng))
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():
            self._seed_device_rng(noise_seed)
            with torch.no_grad():
                frozen = self.G_frozen.synthesis(ws, noise_mode=mode)
            self._seed_device_rng(noise_seed)  # replay the same noise for the trained image
            trained = self.G_train.synthesis(ws, noise_mode=mode)
        return frozen, trained

    def _seed_device_rng(self, seed: int) -> None:
        """Seed the generator that ``torch.randn(device=self.device)`` draws from (only that one)."""
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                torch.cuda.manual_seed(seed)
        elif self.device.type == "mps":  # pragma: no cover - no MPS in CI
            torch.mps.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)

    def _losses(self, frozen: torch.Tensor, trained: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        n = frozen.shape[0]
        parts: dict[str, torch.Tensor] = {}
        total = None
        for g in self.guides:
            with self._autocast():
                emb = g.clip.encode_image(torch.cat([frozen, trained])).float()  # one batched CLIP call
            e_frozen, e_train = emb[:n].detach(), emb[n:]
            terms = {}  # only the weighted terms are computed
            if cfg.directional_weight > 0:
                terms["directional"] = directional_loss(e_train, e_frozen, g.direction)
            if cfg.global_weight > 0:
                terms["global"] = global_loss(e_train, g.target)
            if cfg.angle_weight > 0:
                terms["angle"] = angle_consistency_loss(e_train, e_frozen)
            weights = {"directional": cfg.directional_weight, "global": cfg.global_weight, "angle": cfg.angle_weight}
            model_total = sum(weights[k] * v for k, v in terms.items())
            total = g.weight * model_total if total is None else total + g.weight * model_total
            for k, v in terms.items():
                key = k if len(self.guides) == 1 else f"{k}/{g.name}"
                parts[key] = v.detach()
        parts = {"total": total, **parts}
        return parts

    def step(self) -> StepResult:
        """One training step. On any exception (Ctrl-C included) the trainer is left exactly as
        before the step: weights, optimiser, RNG and layer selection roll back or were never
        touched. A NaN/inf loss raises :class:`NonFiniteLossError` naming the step."""
        if self.step_index >= self.config.steps:
            raise InputError(f"training already finished its {self.config.steps} steps; raise steps to continue")
        with _grad_mode():
            return self._step()

    def _step(self) -> StepResult:
        t0 = time.perf_counter()
        rng_state = self.rng.get_state()
        sel_state = self.selector.state_dict()
        try:
            layers, changed = self.selector.indices_for_step(
                self.step_index, self.G_train, self._selection_loss, self.rng,
                noise_mode=self.config.noise_mode, autocast=self._autocast if self._amp else None)
            if changed:
                apply_selection(self.G_train, layers, self.freeze_options)
            ws = self._sample_ws()
            frozen, trained = self._render_pair(ws)
            losses = self._losses(frozen, trained)
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            # One device sync per step: the loss values are needed for the NaN check and the
            # report; the gradient norm rides along so an overflow in the backward pass is caught too.
            grad_norm = _grad_norm(self.optimizer.param_groups[0]["params"], self.device)
            values = torch.stack([v.float() for v in losses.values()] + [grad_norm]).cpu().tolist()
            grad_norm_value = values.pop()
            report = dict(zip(losses.keys(), values))
            if not all(math.isfinite(v) for v in values + [grad_norm_value]):
                bad = ", ".join(f"{k}={v}" for k, v in report.items() if not math.isfinite(v)) \
                    or f"gradient norm={grad_norm_value}"
                raise NonFiniteLossError(
                    f"loss became non-finite at step {self.step_index + 1} ({bad}); the weights from step "
                    f"{self.step_index} are kept; lower the learning rate (now {self.config.lr:g}), e.g. to "
                    f"{self.config.lr / 4:g}")
            with _defer_sigint():
                self.optimizer.step()
        except BaseException:
            self.rng.set_state(rng_state)
            self.selector.load_state_dict(sel_state)
            apply_selection(self.G_train, self.selector.current or [], self.freeze_options)
            self.optimizer.zero_grad(set_to_none=True)
            raise
        self.optimizer.zero_grad(set_to_none=True)
        selected = self.selector.ran_selection
        self.step_index += 1
        self.history.append(report)
        self.layer_history.append(list(layers))
        return StepResult(step=self.step_index, losses=report, total=report["total"], layers=list(layers),
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
            ws = self.G_frozen.mapping(z, truncation_psi=cfg.preview_truncation)
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
                                             layers=res.layers,
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
        self._tag_generator(self.G_train, meta)
        save_generator(self.G_train, path, metadata=meta)
        return Path(path)

    def save_snapshot(self, out_dir: str | Path) -> Path:
        """``out_dir/snapshots/generator_<step:06d>.safetensors`` plus the resumable state."""
        out = Path(out_dir)
        path = self.save_generator(out / "snapshots" / f"generator_{self.step_index:06d}.safetensors")
        self.save_state(out / STATE_FILE)
        return path

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``generator.safetensors`` and ``train_state.safetensors`` into ``out_dir`` (each atomic)."""
        out = Path(out_dir)
        return {"generator": self.save_generator(out / GENERATOR_FILE), "state": self.save_state(out / STATE_FILE)}

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict]:
        """Everything needed to continue bit-identically: ``(tensors, info)``.

        Tensors: the trained synthesis (``synthesis.*``), Adam moments (``adam.<param>.*``) and
        the RNG states (``rng.*``). ``info`` (JSON-able): step, settings, loss history, layer
        selection, source hash.
        """
        tensors: dict[str, torch.Tensor] = {}
        for name, t in self.G_train.synthesis.state_dict().items():
            tensors[f"synthesis.{name}"] = t.detach().cpu().contiguous()
        params = dict(self.G_train.named_parameters())
        for name in self._opt_names:
            st = self.optimizer.state.get(params[name], {})
            for key, val in st.items():
                if torch.is_tensor(val):
                    tensors[f"adam.{name}.{key}"] = val.detach().cpu().reshape(val.shape).contiguous()
        tensors["rng.train"] = self.rng.get_state()  # the only RNG training uses
        info = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "step": self.step_index,
            "config": self.config.to_dict(),
            "history": self.history,
            "layer_history": self.layer_history,
            "selector": self.selector.state_dict(),
            "source_sha256": self.source_sha256,
            "generator_config": self.G_frozen.config.to_dict(),
            "direction": _describe_direction(self.direction),
            "extra": self.extra_info,
        }
        return tensors, info

    def save_state(self, path: str | Path) -> Path:
        """Write the resumable state to one ``.safetensors`` file (atomic; self-contained, so
        resuming never mixes files from different steps)."""
        from safetensors.torch import save_file

        from ..atomic import atomic_write

        tensors, info = self.state_tensors()
        meta = {"format": STATE_FORMAT, "nada_train_state": json.dumps(info)}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    def load_state(self, path: str | Path, check_source: bool = True) -> "NadaTrainer":
        """Continue from a file written by :meth:`save_state` (or a folder holding one).

        The trainer must have been built from the same source generator; settings may differ
        only in ``steps``, previews and snapshots (anything else would not continue the same
        run) and are otherwise checked. Returns ``self``.
        """
        with torch.inference_mode(False):  # ordinary tensors: Adam updates its state in place
            tensors, info = read_state(path)
        cfg_saved = TrainConfig.from_dict(info["config"])
        diffs = [k for k, v in cfg_saved.to_dict().items()
                 if k not in _RESUMABLE_CHANGES and self.config.to_dict()[k] != v]
        if diffs:
            raise InputError(f"cannot resume: settings {diffs} differ from the saved run; "
                             "use the saved settings (only steps, previews and snapshots may change)")
        if info.get("generator_config") != self.G_frozen.config.to_dict():
            raise InputError("cannot resume: the saved run used a different generator architecture")
        if check_source and info.get("source_sha256") and self.source_sha256 \
                and info["source_sha256"] != self.source_sha256:
            raise InputError("cannot resume: the source generator file differs from the one the run started "
                             "from (sha256 mismatch); pass the original --generator")
        if int(info["step"]) > self.config.steps:
            raise InputError(f"the saved run is at step {info['step']}, beyond steps={self.config.steps}; "
                             "raise steps to continue")
        with _grad_mode(), torch.no_grad():
            synth = {k[len("synthesis."):]: v for k, v in tensors.items() if k.startswith("synthesis.")}
            try:
                self.G_train.synthesis.load_state_dict(synth, strict=True)
            except RuntimeError as err:
                raise CheckpointError(f"training state {path} does not fit this generator: {err}") from None
            params = dict(self.G_train.named_parameters())
            opt_sd = self.optimizer.state_dict()
            state: dict[int, dict] = {}
            for i, name in enumerate(self._opt_names):
                entry = {key: tensors[f"adam.{name}.{key}"] for key in ("step", "exp_avg", "exp_avg_sq")
                         if f"adam.{name}.{key}" in tensors}
                if entry:
                    if len(entry) != 3:
                        raise CheckpointError(f"training state {path} has incomplete optimiser state for {name}")
                    state[i] = entry
            opt_sd["state"] = state
            self.optimizer.load_state_dict(opt_sd)
            del params
        if "rng.train" not in tensors:
            raise CheckpointError(f"training state {path} has no RNG state; it is incomplete")
        self.rng.set_state(tensors["rng.train"])
        self.step_index = int(info["step"])
        self.history = [dict(h) for h in info.get("history", [])]
        self.layer_history = [list(x) for x in info.get("layer_history", [])]
        self.selector.load_state_dict(info.get("selector", {}))
        apply_selection(self.G_train, self.selector.current or [], self.freeze_options)
        return self


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a training-state file (or ``DIR/train_state.safetensors``) -> ``(tensors, info)``."""
    from safetensors import safe_open

    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    if not p.is_file():
        raise InputError(f"no training state at {p}; resume from the --out folder of an earlier `nada train`")
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises several types for damaged files
        raise CheckpointError(f"cannot read training state {p}: {err}") from None
    if meta.get("format") != STATE_FORMAT or "nada_train_state" not in meta:
        raise CheckpointError(f"{p} is not a nada training-state file")
    info = json.loads(meta["nada_train_state"])
    if int(info.get("version", 0)) > STATE_VERSION:
        raise CheckpointError(f"{p} was written by a newer version of nada; update to resume it")
    return tensors, info


def read_config(path: str | Path) -> TrainConfig:
    """The settings stored in a training-state file (for resuming with the same settings)."""
    return TrainConfig.from_dict(read_state(path)[1]["config"])


def _describe_direction(direction) -> dict:
    """JSON-able provenance of a direction (prompts or image files), whatever its type offers."""
    to_dict = getattr(direction, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    out: dict = {"type": type(direction).__name__}
    for key in ("source", "target", "source_text", "target_text", "templates", "image_paths", "kind"):
        val = getattr(direction, key, None)
        if isinstance(val, (str, int, float, bool)) or (isinstance(val, (list, tuple))
                                                         and all(isinstance(x, (str, int, float)) for x in val)):
            out[key] = list(val) if isinstance(val, tuple) else val
    return out
