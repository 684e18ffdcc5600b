"""The settings table: every user-visible training and inversion setting, written once.

Each :class:`Setting` row holds the name, kind, default, allowed range or choices and the help
text. From it come the CLI flags of ``nada train`` / ``nada invert`` (:func:`add_flags`), the
inputs of the NadaTrain / NADA Invert nodes (:func:`node_input`) and the one validation
(:func:`check`), which rejects wrong types, NaN/inf and out-of-range values with one
:class:`InputError` line naming the setting and the allowed range. Engine configs
(:class:`~nada_core.training.config.TrainConfig`, :class:`~nada_core.editing.invert.InvertConfig`)
validate themselves with it when built, so a value is checked once, at the boundary.

Stdlib only (ComfyUI-free): the node side turns :func:`node_input` specs into widgets.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Iterable, Mapping

from .errors import InputError


class InvalidSetting(InputError, ValueError):
    """A setting outside its allowed range: an :class:`InputError` (one line for the user) that is
    also a ``ValueError``, for code that catches the standard type."""

MAX_SEED = 2**32 - 1  # NVIDIA-compatible seeds are numpy RandomState seeds
MAX_CLASS_INDEX = 99_999  # formats/limits.py allows 100000 classes


def _class_setting() -> "Setting":
    """The class of a class-conditional generator: the same row in every job that maps z to W."""
    return Setting("class_index", "int", -1, "class of a class-conditional generator, 0..classes-1, used for "
                   "every sample (-1 = none: unconditional generators take no class)", lo=-1,
                   hi=MAX_CLASS_INDEX, flag="--class", label="class", metavar="N")

# Kinds: "int", "float", "bool", "choice", "text", "tristate" (a choice of 'auto', 'on', 'off' that also
# takes true/false, as saved by versions where the setting was a bool), plus parsed ones: "layers" (count or 'all'),
# "seeds" (a seed list such as '0-3'), "betas" (two Adam betas in [0, 1)).


@dataclasses.dataclass(frozen=True)
class Setting:
    """One row of the table.

    ``lo``/``hi``: inclusive bounds (``lo_open``: ``lo`` itself is refused, e.g. a learning rate
    of 0); ``choices`` for ``"choice"``; ``flag``: the CLI flag (default ``--name-with-dashes``;
    None = not on the CLI); ``aliases``: further flags users already have; ``node_default``:
    where a node's default differs for a stated reason; ``step``: node widget step;
    ``widget_min``: node widget minimum where ``lo`` is open (and, when set, the widget keeps values
    down to its step: see ``node_input``).
    """

    name: str
    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] = ()
    flag: str | None = ""
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    node_default: Any = None
    step: float | None = None
    widget_min: float | None = None
    what: str = ""  # what the setting is, in words, appended to error messages
    default_text: str = ""  # the default as CLI help shows it, where the value depends on other settings
    label: str = ""  # the name users know it by (CLI flag / node input), used in messages; default name


    @property
    def cli_flag(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """The allowed values in words, for messages and help."""
        if self.kind in ("int", "float"):
            lo = "-inf" if self.lo is None else f"{self.lo:g}"
            hi = "inf" if self.hi is None else f"{self.hi:g}"
            what = "a whole number" if self.kind == "int" else "a finite number"
            return f"{what} in {'(' if self.lo_open else '['}{lo}, {hi}]"
        if self.kind in ("choice", "tristate"):
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "layers":
            return f"a whole number in [1, {self.hi:g}] or 'all'" if self.hi is not None else "a count or 'all'"
        return {"bool": "true or false", "factors": "a list of whole numbers >= 1",
                "seeds": "seeds such as '0-3' or '1,5,9'", "betas": "two numbers in [0, 1)",
                "text": "text"}[self.kind]


def _fail(s: Setting, value) -> InputError:
    tail = f" ({s.what})" if s.what else ""
    return InvalidSetting(f"{s.label or s.name} must be {s.allowed()}, got {value!r}{tail}")


def _number(s: Setting, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(s, value)
    v = float(value)
    if not math.isfinite(v) or (s.lo is not None and (v < s.lo or (s.lo_open and v == s.lo))) \
            or (s.hi is not None and v > s.hi):
        raise _fail(s, value)
    return v


def check(s: Setting, value) -> Any:
    """``value`` normalised for setting ``s`` (int, float, bool, str, tuple) or :class:`InputError`."""
    if s.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(s, value)
        _number(s, value)
        return int(value)
    if s.kind == "float":
        return _number(s, value)
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise _fail(s, value)
        return value
    if s.kind == "tristate" and isinstance(value, bool):
        return "on" if value else "off"  # saved by versions where this setting was a bool
    if s.kind in ("choice", "tristate"):
        if value not in s.choices:
            raise _fail(s, value)
        return value
    if s.kind == "text":
        if not isinstance(value, str):
            raise _fail(s, value)
        return value
    if s.kind == "layers":
        from .training.freezing import parse_layers

        n = parse_layers(value)
        if n != "all" and s.hi is not None and n > s.hi:
            raise _fail(s, value)
        return n
    if s.kind == "seeds":
        from .seeds import parse_seeds

        return tuple(parse_seeds(list(value) if isinstance(value, (tuple, list)) else value))
    if s.kind == "factors":
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value,)
        if not (isinstance(value, (tuple, list)) and value and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise _fail(s, value)
        return tuple(value)
    if s.kind == "betas":
        if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(
                not isinstance(b, bool) and isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in value)):
            raise _fail(s, value)
        return (float(value[0]), float(value[1]))
    raise AssertionError(f"unknown setting kind {s.kind}")  # pragma: no cover - table bug


class Table:
    """An ordered set of settings, looked up by name."""

    def __init__(self, rows: Iterable[Setting]) -> None:
        self.rows = {s.name: s for s in rows}

    def __getitem__(self, name: str) -> Setting:
        return self.rows[name]

    def __iter__(self):
        return iter(self.rows.values())

    def defaults(self) -> dict[str, Any]:
        return {s.name: s.default for s in self}

    def check(self, name: str, value) -> Any:
        return check(self.rows[name], value)

    def check_all(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every entry of ``values`` checked (unknown names refused)."""
        unknown = sorted(set(values) - set(self.rows))
        if unknown:
            raise InputError(f"unknown settings {unknown}; known: {', '.join(self.rows)}")
        return {k: check(self.rows[k], v) for k, v in values.items()}

    # CLI ------------------------------------------------------------------------------------------
    def add_flags(self, group, names: Iterable[str]) -> None:
        """Add ``--flag`` options for ``names`` to an argparse group; every default is None so a
        caller can tell "not given" (e.g. keep a resumed run's value); values are checked later by
        :func:`check`, with the setting's own message (NaN included)."""
        for name in names:
            s = self.rows[name]
            flags = [s.cli_flag, *s.aliases]
            default_txt = s.default_text or (s.default if not isinstance(s.default, tuple)
                                             else ",".join(map(str, s.default)))
            help_txt = f"{s.help} (default {default_txt}; {s.allowed()})"
            if s.kind == "bool":
                group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                   help=help_txt)
            elif s.kind in ("choice", "tristate"):
                group.add_argument(*flags, dest=name, choices=s.choices, default=None, help=help_txt)
            else:
                conv = {"int": _cli_number(s, int), "float": _cli_number(s, float)}.get(s.kind, str)
                group.add_argument(*flags, dest=name, type=conv, default=None, help=help_txt,
                                   metavar=s.metavar or name.upper())

    # Nodes ----------------------------------------------------------------------------------------
    def node_input(self, name: str) -> tuple:
        """ComfyUI input spec ``(TYPE, options)`` of a setting: default, range and tooltip from the table."""
        s = self.rows[name]
        default = s.node_default if s.node_default is not None else s.default
        if s.kind in ("int", "float"):
            lo = s.widget_min if s.widget_min is not None else s.lo
            opts = {"default": default, "min": lo, "max": s.hi, "step": s.step or (1 if s.kind == "int" else 0.01),
                    "tooltip": s.help}
            if s.kind == "float" and s.widget_min is not None:
                # ComfyUI's front end rounds FLOAT widgets to the step's decimals unless "round" says
                # otherwise (and a user setting can coarsen that): keep small values reachable.
                opts["round"] = min(opts["step"], s.widget_min) if s.widget_min > 0 else opts["step"]
            return ("INT" if s.kind == "int" else "FLOAT", opts)
        if s.kind == "bool":
            return ("BOOLEAN", {"default": default, "tooltip": s.help})
        if s.kind in ("choice", "tristate"):
            return (list(s.choices), {"default": default, "tooltip": s.help})
        text = default if isinstance(default, str) else (
            "-".join(map(str, (default[0], default[-1]))) if s.kind == "seeds" else str(default))
        return ("STRING", {"default": text, "multiline": False, "tooltip": s.help})


def _cli_number(s: Setting, cast: type):
    """An argparse ``type=`` for ``s``: ``cast(text)`` or a message naming the allowed range."""
    def conv(text: str):
        try:
            return cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s.name} must be {s.allowed()}, got {text!r}") from None
    conv.__name__ = cast.__name__  # argparse names the type in its own messages
    return conv


# ------------------------------------------------------------------------------------------------
# Training (``nada train``, NadaTrain, TrainConfig)
# ------------------------------------------------------------------------------------------------

TRAIN = Table([
    Setting("steps", "int", 300, "training steps (paper: ~300 for style/texture, 50 can suffice for photo -> "
            "sketch, ~2000 for animal shape changes)", lo=1, hi=100000, metavar="N"),
    Setting("batch", "int", 2, "codes per step (paper: 2); more is smoother but slower and uses more memory",
            lo=1, hi=256, metavar="B"),
    # lr 0 = auto: the recipe of the adapt kind (ADAPT_RECIPES below). The CLI's default is "not given", the
    # node's widget shows 0; a saved workflow's explicit 0.002 with adapt full runs exactly as before.
    Setting("lr", "float", 0.002, "Adam learning rate; 0 = auto, the recipe of the adapt kind: full 0.002 as the "
            "paper and the official code (Adam at lr * adam_ratio = 0.0016), domain 0.1 and stylespace 0.05 as "
            "HyperDomainNet / StyleDomain (plain Adam, betas 0.9, 0.999; a compact kind keeps those with any lr); "
            "lower it if the images fall apart or the loss becomes NaN", lo=0.0, hi=10.0, metavar="LR",
            step=0.00001, widget_min=0.0, node_default=0.0, default_text="auto"),
    Setting("betas", "betas", (0.0, 0.99), "Adam betas before adam_ratio (effective: betas ** adam_ratio)", flag=None),
    # The official StyleGAN-NADA code builds its Adam like rosinality's StyleGAN2 trainer, with the lazy
    # regularisation ratio g_reg_every / (g_reg_every + 1) = 4/5 (it runs no regularisation): lr * 0.8 and
    # betas ** 0.8, i.e. lr 0.0016, betas (0, 0.99 ** 0.8 = 0.99199...). 1 = plain Adam(lr, betas).
    Setting("adam_ratio", "float", 0.8, "Adam runs at lr * r and betas ** r; 0.8 = the official StyleGAN-NADA code "
            "(rosinality's 4/5 ratio: lr 0.0016, beta2 0.99199); 1 = plain Adam at lr and betas", lo=0.0, hi=1.0,
            lo_open=True, metavar="R", step=0.05, widget_min=0.05, default_text="0.8, 1 with a compact adapt"),
    # num_layers: a COUNT of W+ layers (not indices); users know it as --layers / the "layers" input.
    Setting("num_layers", "layers", "all", "how many W+ layers to train each step, chosen adaptively: 'all' "
            "(texture, style), about 12 for small shape changes, 3 for animals, or a number",
            hi=64, metavar="K|all", flag="--layers", label="layers"),
    Setting("interval", "int", 1, "re-choose the trained layers every N steps (1 = every step, as in the paper; "
            "larger is faster)", lo=1, hi=100000, metavar="I"),
    Setting("falloff", "int", 0, "train one layer fewer every N steps, down to 1 (0 = keep the count; no effect "
            "with layers 'all')", lo=0, hi=100000, metavar="F"),
    Setting("n_select_codes", "int", 8, "codes per layer selection", lo=1, hi=1024, flag="--select-codes",
            metavar="N"),
    Setting("select_steps", "int", 1, "SGD steps per layer selection", lo=1, hi=1000, metavar="N"),
    Setting("select_lr", "float", 0.01, "SGD rate of layer selection", lo=0.0, hi=1000.0, lo_open=True,
            metavar="LR"),
    # Official code: --mixing defaults to 0 (README command and notebook too; the notebook uses 0.9 only with
    # its "improve shape" option, together with adaptive layers).
    Setting("mixing", "float", 0.0, "style-mixing probability of the training codes (official code: 0; paper Table 3 "
            "and the official notebook use 0.9 for shape changes); the frozen and trained image of a pair always get "
            "the same crossover", lo=0.0, hi=1.0, metavar="P", step=0.05),
    Setting("truncation", "float", 1.0, "truncation psi of the training codes", lo=0.0, hi=2.0, lo_open=True,
            metavar="PSI"),
    Setting("directional_weight", "float", 1.0, "weight of the directional CLIP loss (the NADA loss)",
            lo=0.0, hi=100.0, metavar="W", step=0.05),
    Setting("global_weight", "float", 0.0, "weight of the global CLIP loss (image vs target text); alone it "
            "collapses, a little (e.g. 0.25) can strengthen the change", lo=0.0, hi=100.0, metavar="W", step=0.05),
    Setting("angle_weight", "float", 0.0, "weight of the angle-consistency loss that keeps samples as different "
            "from each other as before (fights collapse)", lo=0.0, hi=100.0, metavar="W", step=0.05),
    Setting("adapt", "choice", "full", "what training changes: full = the synthesis weights (a whole generator); "
            "domain = one multiplier per style channel (HyperDomainNet), stylespace = one offset per style channel "
            "(StyleDomain): a few-kilobyte domain.safetensors; compact kinds want a much larger lr (0.1 domain, 0.05 "
            "stylespace, plain Adam): lr 0 = auto (the node's default; on the CLI: no --lr) picks them",
            choices=("full", "domain", "stylespace")),
    Setting("domain_layers", "text", "", "compact adapt only: the W+ entries whose styled layers get a vector, "
            "e.g. 'coarse', 'middle', 'fine' or '0-7' (empty = every layer); adaptive selection then chooses "
            "among these", metavar="LAYERS", label="domain_layers"),
    Setting("train_torgb", "bool", False, "also train the toRGB layers of selected entries (official code: no; with a compact adapt: include the toRGB styles)"),
    # The official code unfreezes a chosen rosinality StyledConv whole, its style affine ("modulation") included.
    Setting("train_affine", "bool", True, "also train the style affines of selected layers (official code: yes)"),
    # Official code: with all layers (no adaptive selection) it trains the constant; with selection it never does.
    Setting("train_const", "tristate", "auto", "train the 4x4 constant: auto = only when every layer trains (as the "
            "official code), on = whenever entry 0 trains, off = never", choices=("auto", "on", "off")),
    Setting("seed", "int", 0, "seed of the training run: the same seed and settings give the same result",
            lo=0, hi=MAX_SEED, metavar="S"),
    # On the node the preview is live on the node itself, so it is shown more often.
    Setting("preview_every", "int", 50, "source-vs-adapted preview every N steps (0 = only at the end on the "
            "node, none on the CLI)", lo=0, hi=100000, metavar="N", node_default=20),
    Setting("preview_seeds", "seeds", (0, 1, 2, 3), "seeds of the preview columns, e.g. '0-3' or '1,5,9'",
            metavar="SEEDS"),
    Setting("preview_truncation", "float", 0.7, "truncation psi of the previews", lo=0.0, hi=2.0, lo_open=True,
            flag=None),
    Setting("snapshot_every", "int", 0, "save the generator every N steps under snapshots/ (0 = off)",
            lo=0, hi=100000, metavar="N"),
    Setting("mixed_precision", "bool", True, "bf16 autocast on CUDA: faster, less memory (no effect on CPU/MPS)"),
    # Official code: fresh noise every forward pass (rosinality randomize_noise=True); here the frozen and the
    # trained image of a pair get the same noise, drawn from the run's seed.
    Setting("noise_mode", "choice", "random", "per-pixel noise while training: random = fresh noise each step, the "
            "same for the frozen and trained image of a pair (official code: random); const = each layer's stored "
            "noise", choices=("const", "random")),
    Setting("select_chunk", "int", 0, "codes per chunk of the layer-selection pass (0 = the batch size, so the pass "
            "needs no more memory than a training step; with const noise the result does not depend on it beyond "
            "float rounding)", lo=0, hi=1024, metavar="N"),
    Setting("checkpointing", "bool", False, "recompute the trained generator's activations in the backward pass "
            "instead of storing them: less memory, about one more forward pass of time"),
    _class_setting(),
])

#: ``lr`` 0 means "auto": the recipe of the adapt kind below.
AUTO_LR = 0.0

#: The optimiser recipe of each adapt kind, for the settings a run does not give (CLI: no --lr; node: lr 0).
#: full: the official StyleGAN-NADA code (the table's defaults). domain / stylespace: the reference code of
#: HyperDomainNet (lr 0.1) and StyleDomain's StyleSpace offsets (lr 0.05), both plain torch Adam with
#: betas (0.9, 0.999) (their trainers apply the 4/5 ratio to full fine-tuning only).
ADAPT_RECIPES: dict[str, dict[str, Any]] = {
    "full": {"lr": TRAIN["lr"].default, "betas": TRAIN["betas"].default, "adam_ratio": TRAIN["adam_ratio"].default},
    "domain": {"lr": 0.1, "betas": (0.9, 0.999), "adam_ratio": 1.0},
    "stylespace": {"lr": 0.05, "betas": (0.9, 0.999), "adam_ratio": 1.0},
}


def optimizer_recipe(adapt: str, lr: float | None = None, betas: tuple[float, float] | None = None,
                     adam_ratio: float | None = None) -> dict[str, Any]:
    """``{"lr", "betas", "adam_ratio"}`` of a run adapting ``adapt``: each value given wins, the others
    (``None``; ``lr`` also 0 = :data:`AUTO_LR`) come from :data:`ADAPT_RECIPES`. The one rule behind
    ``nada train``, NADA Train and :class:`~nada_core.training.config.TrainConfig`'s ``lr=0``."""
    recipe = ADAPT_RECIPES.get(adapt)
    if recipe is None:
        raise _fail(TRAIN["adapt"], adapt)
    return {"lr": recipe["lr"] if lr is None or lr == AUTO_LR else lr,
            "betas": tuple(recipe["betas"]) if betas is None else betas,
            "adam_ratio": recipe["adam_ratio"] if adam_ratio is None else adam_ratio}


# ------------------------------------------------------------------------------------------------
# Inversion (``nada invert``, NADA Invert Image, InvertConfig)
# ------------------------------------------------------------------------------------------------

_FRACTION = "a fraction of the run"
INVERT = Table([
    Setting("space", "choice", "w+", "w: one code per image (most editable, carries over to adapted domains most "
            "faithfully); w+: one per layer (closest reconstruction)", choices=("w", "w+"),
            what="the inversion space"),
    Setting("steps", "int", 300, "optimisation steps (more = closer, slower)", lo=1, hi=100000, metavar="N",
            what="inversion steps"),
    Setting("lr", "float", 0.1, "peak learning rate, in units of the W spread", lo=0.0, hi=10.0, lo_open=True,
            metavar="LR", what="the peak learning rate"),
    Setting("lr_rampup", "float", 0.05, "fraction of the run spent warming up", lo=0.0, hi=1.0, flag=None,
            what=_FRACTION),
    Setting("lr_rampdown", "float", 0.25, "fraction of the run spent cooling down", lo=0.0, hi=1.0, flag=None,
            what=_FRACTION),
    Setting("w_noise", "float", 0.05, "initial code noise, in W spreads", lo=0.0, hi=100.0, flag=None),
    Setting("w_noise_ramp", "float", 0.75, "fraction of the run over which the code noise fades", lo=0.0, hi=1.0,
            flag=None, what=_FRACTION),
    Setting("wplus_warmup", "float", 0.3, "in W+, fraction of the run with one shared code", lo=0.0, hi=1.0,
            flag=None, what=_FRACTION),
    Setting("wplus_lr_scale", "float", 0.3, "learning-rate factor of the W+ per-layer offsets", lo=0.0, hi=1e6,
            lo_open=True, flag=None),
    Setting("optimize_noise", "bool", False, "also optimise the per-pixel noise maps (finer detail, stored with "
            "the latents)", flag="--noise"),
    Setting("noise_reg_weight", "float", 1e5, "weight of the noise autocorrelation penalty", lo=0.0, hi=1e12,
            flag=None),
    Setting("noise_lr_scale", "float", 0.1, "learning-rate factor of the noise maps", lo=0.0, hi=1e6, lo_open=True,
            flag=None),
    Setting("pixel_weight", "float", 1.0, "weight of the multi-scale pixel loss", lo=0.0, hi=1e6, metavar="W"),
    Setting("pixel_loss", "choice", "l1", "pixel loss", choices=("l1", "l2"), flag=None, what="the pixel loss"),
    Setting("pixel_scales", "factors", (1, 2, 4), "downsampling factors of the pixel loss", flag=None,
            what="pixel scales are downsampling factors"),
    Setting("ssim_weight", "float", 0.5, "weight of the SSIM loss", lo=0.0, hi=1e6, metavar="W"),
    Setting("ssim_window", "int", 11, "SSIM window (shrunk for tiny images)", lo=1, hi=1024, flag=None),
    Setting("clip_weight", "float", 0.5, "weight of the CLIP similarity loss (only with --clip)", lo=0.0, hi=1e6,
            metavar="W"),
    Setting("w_avg_samples", "int", 10_000, "z samples that measure w_avg and the W spread (0 = stored w_avg)",
            lo=0, hi=10_000_000, flag=None),
    Setting("seed", "int", 0, "seed of the optimisation's random noise (same seed = same result)", lo=0,
            hi=MAX_SEED, metavar="S"),
    Setting("fit", "choice", "crop", "how non-square images are fitted: crop = centre square (best for "
            "portraits), pad = whole photo on white, stretch = whole photo squeezed",
            choices=("crop", "pad", "stretch")),
    Setting("preview_every", "int", 0, "save progress.png every N steps (0 = never)", lo=0, hi=100000,
            metavar="N"),
    _class_setting(),
])

# ------------------------------------------------------------------------------------------------
# Sampling from seeds (``nada sample``, latents from seeds in the CLI and the nodes)
# ------------------------------------------------------------------------------------------------

SAMPLE = Table([
    Setting("truncation_psi", "float", 0.7, "truncation psi (1 = none, 0 = the average image; beyond 1 "
            "exaggerates)", lo=-10.0, hi=10.0, flag="--truncation", label="truncation", metavar="PSI"),
    Setting("truncation_cutoff", "int", None, "truncate only the first N W+ entries (none = all)", lo=0,
            hi=64, label="truncation cutoff", metavar="N"),
    _class_setting(),
    # StyleGAN3's input transform (NVIDIA gen_images.py --translate/--rotate); the CLI takes the two
    # translations as one ``--translate X,Y`` flag.
    Setting("translate_x", "float", 0.0, "StyleGAN3 only: shift the image horizontally (input-grid units, "
            "the image spans about 1)", lo=-100.0, hi=100.0, flag=None, label="translate x", step=0.01),
    Setting("translate_y", "float", 0.0, "StyleGAN3 only: shift the image vertically (input-grid units)",
            lo=-100.0, hi=100.0, flag=None, label="translate y", step=0.01),
    Setting("rotate", "float", 0.0, "StyleGAN3 only: rotate the image by this many degrees", lo=-3600.0,
            hi=3600.0, flag="--rotate", label="rotate", metavar="DEG", step=0.5),
])

# ------------------------------------------------------------------------------------------------
# Latent editing directions (``nada edit``, the direction nodes, nada_core.editing.semantic)
# ------------------------------------------------------------------------------------------------

EDIT = Table([
    Setting("method", "choice", "sefa", "how directions are found: sefa = closed form from the generator's style "
            "weights (instant, no data); ganspace = PCA of sampled W codes", choices=("sefa", "ganspace"),
            flag=None, what="the direction finder"),
    Setting("k", "int", 10, "how many directions to find (strongest first)", lo=1, hi=4096, flag="--count",
            metavar="K", label="count"),
    Setting("n_samples", "int", 50_000, "GANSpace: W codes sampled for the PCA (more = steadier axes)",
            lo=1_000, hi=10_000_000, metavar="N", label="samples", flag="--samples"),
    Setting("seed", "int", 0, "GANSpace: seed of the sampled codes (same seed = same directions)", lo=0,
            hi=MAX_SEED, metavar="S", flag="--direction-seed", label="direction seed"),
    Setting("torgb", "choice", "none", "SeFa: toRGB style affines to include: none (default), last (the final "
            "toRGB, as the SeFa authors' code does) or all", choices=("none", "last", "all")),
    Setting("strength", "float", 3.0, "how far to move along the direction, in W units (SeFa/GANSpace "
            "directions and InterFaceGAN boundaries are unit vectors; about 3 is a clear edit)",
            lo=-1000.0, hi=1000.0, step=0.1, what="an edit strength"),
    Setting("strengths", "text", "-3,0,3", "strengths of a sweep: a list like '-3,0,3' or FROM:TO:COUNT like "
            "'-3:3:7'", metavar="LIST"),
    Setting("layers", "text", "all", "W+ entries to edit: 'all', 'coarse', 'middle', 'fine' or entries like "
            "'0-5' (coarse entries move pose and shape, fine ones colour)", metavar="LAYERS"),
    Setting("frames", "int", 48, "video/animation frames of a walk through the strengths", lo=1, hi=100_000,
            metavar="N"),
    Setting("fps", "float", 24.0, "frames per second of a video/animation", lo=0.0, hi=240.0, lo_open=True,
            metavar="FPS", widget_min=1.0),
])

# ------------------------------------------------------------------------------------------------
# Encoders (``nada invert --encoder``, NADA Encode Image)
# ------------------------------------------------------------------------------------------------

ENCODE = Table([
    Setting("encoder_iters", "int", 5, "ReStyle refinement steps (ReStyle's default is 5; e4e and pSp encode in "
            "one pass and ignore it)", lo=1, hi=100, metavar="N", label="iterations",
            what="encoder iterations"),
])

__all__ = ["EDIT", "ENCODE", "INVERT", "InvalidSetting", "MAX_SEED", "SAMPLE", "TRAIN", "Setting", "Table", "check"]
