"""Training nodes: adapt a generator with CLIP guidance (NadaTrain) and measure the result (NadaMetrics)."""

from __future__ import annotations

import logging

from . import comfy_bridge
from . import types as T
from .common import (
    CATEGORY_TRAIN,
    float_input,
    node_error,
    register,
    socket,
    string_input,
)

# NadaTrain's widgets, in workflow order; default, range and tooltip come from nada_core.settings.TRAIN.
# Input name -> setting name: the inputs keep the names saved workflows use ("layers" is num_layers).
NODE_SETTINGS = {name: name for name in ("steps", "batch", "lr", "layers", "interval", "falloff", "mixing",
                                         "global_weight", "angle_weight", "seed", "preview_every", "preview_seeds")}
NODE_SETTINGS["layers"] = "num_layers"
log = logging.getLogger("ComfyUI-NADA")


def _setting_input(name: str) -> tuple:
    from nada_core.settings import TRAIN

    kind, opts = TRAIN.node_input(name)
    if name == "seed":  # the training seed is part of the recipe: no "randomize after run"
        opts = {**opts, "control_after_generate": False}
    return (kind, opts)


def _snapshot_input() -> tuple:
    from .snapshots import snapshot_tooltip

    kind, opts = _setting_input("snapshot_every")
    return (kind, {**opts, "tooltip": snapshot_tooltip()})


def _to_pil(img):
    from PIL import Image
    from nada_core.media.images import to_uint8

    return Image.fromarray(to_uint8(img)[0])


def _pil_to_comfy(pil):
    from nada_core.media.images import pil_to_unit

    return pil_to_unit(pil).permute(1, 2, 0).unsqueeze(0).contiguous().float()


@register("NADA Train")
class NadaTrain:
    DESCRIPTION = ("Adapts a copy of the generator to a new domain under CLIP guidance (StyleGAN-NADA). Shows a live "
                   "source-vs-adapted preview on the node; Cancel stops within a step. The input generator is not changed. "
                   "Defaults are those of the official StyleGAN-NADA code (300 steps; about 50 can be enough for sketches).")
    CATEGORY = CATEGORY_TRAIN
    RETURN_TYPES = (T.GENERATOR, T.IMAGE, T.IMAGE, T.STRING, T.DOMAIN)
    RETURN_NAMES = ("generator", "comparison", "loss_plot", "metrics", "domain")
    OUTPUT_TOOLTIPS = (
        "The adapted generator (same latent space as the source: seeds and inverted photos carry over). With several "
        "targets: the source with the first target's domain applied.",
        "Preview seeds: source generator on top, adapted below (several targets: one row per target).",
        "The training losses per step (faint) and smoothed (bold).",
        "CLIP quality measures of the adaptation on held-out seeds.",
        "With adapt 'domain' or 'stylespace': the trained compact domain (save it with NADA Save Domain); with "
        "several targets one domain per target (NADA Save Domain writes them all, NADA Pick Domain selects one); "
        "nothing with 'full'.",
    )
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": socket(T.GENERATOR, "The source generator (e.g. FFHQ faces). It is copied, never modified."),
                "clip": socket(T.CLIP, "CLIP model(s) that judge the change (NADA Load CLIP)."),
                "direction": socket(T.DIRECTION, "Where to go in CLIP space (NADA Text Direction or NADA Image "
                                                 "Direction). Several targets (one per line in NADA Text Direction) "
                                                 "train one compact domain each in the same run: set adapt to "
                                                 "'domain' or 'stylespace' (they train with each layer's stored "
                                                 "noise, as `nada train` does)."),
                **{name: _setting_input(setting) for name, setting in NODE_SETTINGS.items()},
            },
            # optional, so API prompts written before they existed still validate
            "optional": {
                "class_index": _setting_input("class_index"),
                "snapshot_every": _snapshot_input(),
                "adapt": _setting_input("adapt"),
                "domain_layers": _setting_input("domain_layers"),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, layers):
        # One input only: ComfyUI attaches the message to every input this function takes (a bad
        # preview_seeds was reported on layers too). preview_seeds (and every other setting) is
        # checked by TrainConfig as the node starts, before any work, with its own message.
        from nada_core.errors import InputError
        from nada_core.settings import TRAIN

        try:
            TRAIN.check("num_layers", layers)
        except InputError as err:
            return f"{cls.DISPLAY_NAME}: {err}"
        return True

    def train(self, generator, clip, direction, steps: int, batch: int, lr: float, layers: str, interval: int,
              falloff: int, mixing: float, global_weight: float, angle_weight: float, seed: int,
              preview_every: int, preview_seeds: str, class_index: int = -1, snapshot_every: int = 0,
              adapt: str = "full", domain_layers: str = ""):
        from nada_core.guidance.directions import DirectionSet
        from nada_core.media.images import to_comfy
        from nada_core.media.plots import draw_loss_plot
        from nada_core.settings import optimizer_recipe
        from nada_core.training.config import TrainConfig
        from nada_core.training.metrics import DEFAULT_EVAL_SEEDS
        from nada_core.training.run import format_metrics, run_training
        from nada_core.training.trainer import NadaTrainer

        from .snapshots import Snapshots, run_label

        several = isinstance(direction, DirectionSet)
        if several and adapt == "full":
            raise node_error(self, f"the direction holds {len(direction)} targets (one per line in NADA Text "
                                   "Direction); several targets train one compact domain each: set adapt to "
                                   "'domain' or 'stylespace', or give one target")
        # lr 0 = auto, and a compact kind's plain Adam: the rule `nada train` follows (nada_core.settings).
        optimizer = optimizer_recipe(adapt, lr)
        # Widget values go to the config as they are: TrainConfig checks them against the table.
        config = TrainConfig(steps=steps, batch=batch, num_layers=layers, interval=interval, falloff=falloff,
                             mixing=mixing, global_weight=global_weight, angle_weight=angle_weight, seed=seed,
                             preview_every=preview_every, preview_seeds=preview_seeds, class_index=class_index,
                             snapshot_every=snapshot_every, adapt=adapt, domain_layers=domain_layers,
                             **optimizer,
                             **({"noise_mode": "const"} if several else {}))
        comfy_bridge.free_memory()  # make room: ComfyUI may still hold diffusion models
        if several:
            from nada_core.training.multi_target import MultiTargetTrainer

            trainer = MultiTargetTrainer(generator, clip, list(direction), config, device=comfy_bridge.torch_device())
        else:
            trainer = NadaTrainer(generator, clip, direction, config, device=comfy_bridge.torch_device())
        bar = comfy_bridge.Progress(config.steps)
        snapshots = Snapshots(trainer, config.snapshot_every, run_label(direction))

        def on_progress(info, grid):
            snapshots.after_step(info.step)
            bar.update(info.step, _to_pil(grid) if grid is not None else None)

        if several:
            from nada_core.training.multi_target import run_multi_training

            outcome = run_multi_training(trainer, eval_seeds=DEFAULT_EVAL_SEEDS, on_progress=on_progress,
                                         should_stop=comfy_bridge.interrupt_requested)
        else:
            outcome = run_training(trainer, eval_seeds=DEFAULT_EVAL_SEEDS, on_progress=on_progress,
                                   should_stop=comfy_bridge.interrupt_requested)
        if outcome.interrupted:
            kept = snapshots.on_cancel()
            note = f"; kept as {snapshots.listed_name(kept)}" if kept is not None else ""
            # ComfyUI shows a Cancel as "interrupted" without our text: say in its log what was kept
            log.info("%s: training stopped at step %d of %d%s", self.DISPLAY_NAME, trainer.step_index,
                     config.steps, note)
            comfy_bridge.raise_interrupted(f"training stopped at step {trainer.step_index} of {config.steps}{note}")
        done = trainer.step_index
        domain = None
        if trainer.adapter is None:
            adapted = trainer.export_generator()
            text = format_metrics(outcome.after, title=f"NADA metrics after {done} steps")
        elif several:  # one domain per target; the generator output shows the first
            from nada_core.domains import apply_domains

            domain = trainer.domains([{"metrics": t_scores} for t_scores in _target_scores(outcome.metrics)])
            adapted = apply_domains(generator, [(domain[0], 1.0)])
            text = "\n\n".join(format_metrics(after, title=f"{name!r}: NADA metrics after {done} steps")
                                 for name, after in zip(direction.target_texts, outcome.after))
        else:  # compact: the input generator with the domain applied (shares its weights, copies nothing)
            from nada_core.domains import apply_domains

            domain = trainer.domain(extra_metadata={"metrics": _scores(outcome.metrics)})
            adapted = apply_domains(generator, [(domain, 1.0)])
            text = format_metrics(outcome.after, title=f"NADA metrics after {done} steps")
        plot = draw_loss_plot(outcome.loss_series, title=f"NADA training loss ({done} steps)")
        return (adapted, to_comfy(outcome.comparison()), _pil_to_comfy(plot), text, domain)


def _scores(metrics: dict) -> dict:
    """The before/after numbers (and their seeds) of a run's metrics, as a domain file stores them."""
    return {k: v for k, v in metrics.items() if k.endswith(("_before", "_after")) or k == "eval_seeds"}


def _target_scores(metrics: dict) -> list[dict]:
    """:func:`_scores` of each target of a multi-target run."""
    return [_scores(t) for t in metrics["targets"]]


@register("NADA Metrics")
class NadaMetrics:
    DESCRIPTION = ("Measures an adaptation with CLIP on held-out seeds: directional similarity, target score, diversity "
                   "and source correspondence (see the README for what good values look like).")
    CATEGORY = CATEGORY_TRAIN
    RETURN_TYPES = (T.STRING,)
    RETURN_NAMES = ("metrics",)
    OUTPUT_TOOLTIPS = ("The measures as text (connect to a text display node, or read them in the queue history).",)
    OUTPUT_NODE = True
    FUNCTION = "measure"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": socket(T.CLIP, "CLIP model(s) to measure with (ideally not only the one used for training)."),
                "direction": socket(T.DIRECTION, "The direction the adaptation aimed at."),
                "source_generator": socket(T.GENERATOR, "The generator before adaptation."),
                "adapted_generator": socket(T.GENERATOR, "The adapted generator (same source)."),
                "seeds": string_input("1000-1015", "Held-out seeds to measure on (at least 2; away from the preview seeds)."),
                "truncation": float_input(0.7, 0.05, 2.0, 0.01, "Truncation psi of the measured samples (paper's figures: 0.7)."),
            },
            "optional": {"class_index": _setting_input("class_index")},
        }

    def measure(self, clip, direction, source_generator, adapted_generator, seeds: str, truncation: float,
                class_index: int = -1):
        from nada_core.models.conditioning import class_one_hot
        from nada_core.seeds import parse_seeds
        from nada_core.training.metrics import evaluate
        from nada_core.training.run import format_metrics

        from nada_core.guidance.directions import DirectionSet

        if isinstance(direction, DirectionSet):
            raise node_error(self, f"the direction holds {len(direction)} targets; NADA Metrics measures one "
                                   "adaptation: connect a NADA Text Direction with the one target it aimed at "
                                   "(NADA Train's metrics output already measures every target)")
        seed_list = parse_seeds(seeds)
        if len(seed_list) < 2:
            raise node_error(self, "give at least two seeds (diversity compares pairs), e.g. '1000-1015'")
        c = class_one_hot(getattr(source_generator, "c_dim", 0), class_index, 1)
        scores = evaluate(source_generator, adapted_generator, clip, direction, seeds=seed_list,
                          truncation=float(truncation), c=c)

        text = format_metrics(scores)
        return {"ui": {"text": [text]}, "result": (text,)}
