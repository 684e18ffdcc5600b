"""Every training setting in one dataclass, :class:`TrainConfig` (see ``docs/method.md``).

Defaults follow the paper's recipe for style changes. The settings are validated once, here, when
the config is built (CLI, node, demo or a saved run all come through this boundary).
"""

from __future__ import annotations

import dataclasses
import math

from ..errors import InputError
from .freezing import FreezeOptions, LayerSchedule, parse_layers



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


__all__ = ["TrainConfig", "parse_layers"]
