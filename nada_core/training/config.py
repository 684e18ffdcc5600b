"""Every training setting in one dataclass, :class:`TrainConfig` (see ``docs/method.md``).

Defaults reproduce the official StyleGAN-NADA code's default run (the one behind the paper's images;
``docs/method.md`` section 2 says where each comes from), keeping our fixes of its W+ -> layer map and of
its style-mixing crossover; :meth:`TrainConfig.previous_defaults` gives the earlier defaults. The settings are validated once, here, when
the config is built (CLI, node, demo or a saved run all come through this boundary).
"""

from __future__ import annotations

import dataclasses

from ..errors import InputError
from ..settings import AUTO_LR, TRAIN, optimizer_recipe
from .freezing import FreezeOptions, LayerSchedule, parse_layers

_D = TRAIN.defaults()



@dataclasses.dataclass
class TrainConfig:
    """Every training setting. Defaults follow the official code's default run (see the module docstring).

    ``num_layers``: how many W+ indices to train each step (adaptive selection), or ``"all"``
    (every styled conv, no selection pass). ``interval``/``falloff``: re-select every
    ``interval`` steps; shrink k by one every ``falloff`` steps (0 = never), down to 1.
    ``n_select_codes``/``select_steps``/``select_lr``: N_w, N_i and the SGD rate of a selection
    pass. ``mixing``: style-mixing probability. ``truncation``: psi of the training codes.
    Loss weights: ``directional_weight`` (the NADA loss), ``global_weight`` (1 - cos to the
    target), ``angle_weight`` (in-domain angle consistency between the samples of a batch).
    ``preview_every`` (0 = off) renders ``preview_seeds`` at ``preview_truncation``.
    ``snapshot_every`` (0 = off) saves the generator under ``snapshots/`` every N steps.
    ``adapt``: ``full`` (the synthesis weights) or a compact domain, ``domain`` / ``stylespace``
    (:mod:`nada_core.training.adapt`); ``domain_layers``: the W+ entries whose layers a compact domain
    has (``""`` = all; e.g. ``"coarse"``, ``"0-7"``).
    ``lr`` 0 is "auto": the recipe of ``adapt`` (:data:`nada_core.settings.ADAPT_RECIPES`; for a compact
    kind its betas and plain Adam too); the config then holds the numbers it runs with.
    ``adam_ratio``: Adam runs at ``lr * adam_ratio`` with ``betas ** adam_ratio`` (0.8: the official
    code's rosinality-derived optimiser). ``train_const``: ``"auto"`` (constant trains when every
    layer does), ``"on"``, ``"off"``. ``select_chunk``: codes per chunk of a selection pass (0 = batch).
    ``checkpointing``: recompute the trained synthesis activations in the backward pass.
    ``mixed_precision``: bf16 autocast on CUDA, on by default (ignored on other devices and on GPUs
    without bf16; weights and optimiser state stay float32; fp16 is not offered as
    StyleGAN2's modulated convs overflow it without loss scaling). ``noise_mode``: "const"
    (each layer's stored noise) or "random" (fresh noise per step, identical for the frozen and
    trained image of a pair).
    """

    # Defaults come from the settings table (written once there).
    steps: int = _D["steps"]
    batch: int = _D["batch"]
    lr: float = _D["lr"]
    betas: tuple[float, float] = _D["betas"]
    adam_ratio: float = _D["adam_ratio"]
    num_layers: int | str = _D["num_layers"]
    interval: int = _D["interval"]
    falloff: int = _D["falloff"]
    n_select_codes: int = _D["n_select_codes"]
    select_steps: int = _D["select_steps"]
    select_lr: float = _D["select_lr"]
    mixing: float = _D["mixing"]
    truncation: float = _D["truncation"]
    directional_weight: float = _D["directional_weight"]
    global_weight: float = _D["global_weight"]
    angle_weight: float = _D["angle_weight"]
    adapt: str = _D["adapt"]
    domain_layers: str = _D["domain_layers"]
    train_torgb: bool = _D["train_torgb"]
    train_affine: bool = _D["train_affine"]
    train_const: str = _D["train_const"]
    seed: int = _D["seed"]
    preview_every: int = _D["preview_every"]
    preview_seeds: tuple[int, ...] = _D["preview_seeds"]
    preview_truncation: float = _D["preview_truncation"]
    snapshot_every: int = _D["snapshot_every"]
    mixed_precision: bool = _D["mixed_precision"]
    noise_mode: str = _D["noise_mode"]
    class_index: int = _D["class_index"]  # class of a conditional generator (-1 = none)
    select_chunk: int = _D["select_chunk"]
    checkpointing: bool = _D["checkpointing"]

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check every field against :data:`nada_core.settings.TRAIN` (one :class:`InputError` line
        naming the first bad setting and its allowed range); normalise types in place."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, TRAIN.check(f.name, getattr(self, f.name)))
        if self.lr == AUTO_LR:  # auto: the adapt kind's recipe (a compact kind's plain Adam included)
            recipe = optimizer_recipe(self.adapt)
            self.lr = recipe["lr"]
            if self.adapt != "full":
                self.betas, self.adam_ratio = recipe["betas"], recipe["adam_ratio"]
        if self.domain_layers.strip() and self.adapt == "full":
            raise InputError("domain_layers picks the layers of a compact domain; with adapt 'full' leave it empty "
                             "(layers chooses how many train), or set adapt to 'domain' or 'stylespace'")
        if self.directional_weight + self.global_weight + self.angle_weight <= 0:
            raise InputError("all loss weights are 0; set directional_weight (the NADA loss) above 0")
        return self

    @property
    def k(self) -> int | None:
        """Layer count as an int, or None for all layers."""
        return None if self.num_layers == "all" else int(self.num_layers)

    @property
    def adam_lr(self) -> float:
        """The rate Adam runs at: ``lr * adam_ratio`` (0.0016 with the defaults, as the official code)."""
        return self.lr * self.adam_ratio

    @property
    def adam_betas(self) -> tuple[float, float]:
        """The betas Adam runs with: ``betas ** adam_ratio`` ((0, 0.99 ** 0.8) with the defaults)."""
        return (self.betas[0] ** self.adam_ratio, self.betas[1] ** self.adam_ratio)

    @classmethod
    def previous_defaults(cls, **overrides) -> "TrainConfig":
        """The defaults of the versions before the official-code defaults: plain Adam (lr 0.002, betas
        (0, 0.99)), convs only (no affine, no constant), style mixing 0.9, const noise, 24 templates
        (the template list is the direction's: ``templates="short"``)."""
        base = dict(adam_ratio=1.0, train_affine=False, train_const="off", mixing=0.9, noise_mode="const")
        base.update(overrides)
        return cls(**base)

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
    def from_dict(cls, d: dict, saved: bool = False) -> "TrainConfig":
        """Settings from a JSON object (saved state, metadata); checked like any other.

        ``saved``: ``d`` is a complete config written by :meth:`to_dict` (a run's state), so a
        setting it lacks is one that did not exist yet and takes the value that version ran with.
        """
        d = dict(d)
        if "layers" in d and "num_layers" not in d:  # saved before the rename
            d["num_layers"] = d.pop("layers")
        if saved and "adam_ratio" not in d:  # saved before the setting existed: plain Adam(lr, betas) then
            d["adam_ratio"] = 1.0
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown training settings {unknown}; this file may come from a newer version")
        for key in ("betas", "preview_seeds"):  # JSON has lists only
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)


__all__ = ["TrainConfig", "parse_layers"]
