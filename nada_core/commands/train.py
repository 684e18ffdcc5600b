"""``nada train``: adapt a generator to a new domain described in words or by example images.

Writes to ``--out``: ``generator.safetensors`` (the adapted generator, with the prompts, the
settings and the source file's sha256 in its metadata; with ``--adapt domain|stylespace`` a
few-kilobyte ``domain.safetensors`` instead, see :mod:`nada_core.domains`), ``train_state.safetensors`` (everything
``--resume`` needs), ``preview_<step>.png`` (source row above adapted row, fixed seeds),
``loss.png``, ``metrics.json`` (CLIP metrics before/after on held-out seeds) and, with
``--snapshot-every N``, ``snapshots/generator_<step>.safetensors``. Ctrl-C stops after the
current step, saves everything so far and exits (code 130); ``--resume OUT`` continues.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_device_argument

NAME = "train"
HELP = "Adapt a generator with CLIP guidance (StyleGAN-NADA): 'photo' -> 'pencil sketch'."

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Settings from the table (nada_core.settings.TRAIN) offered as flags; a resumed run takes the
# saved value of each one not given again.
_TRAINING_FLAGS = ("adapt", "domain_layers", "steps", "batch", "num_layers", "interval", "falloff", "lr", "adam_ratio",
                   "mixing", "truncation",
                   "directional_weight", "global_weight", "angle_weight", "n_select_codes", "select_steps",
                   "select_lr", "select_chunk", "noise_mode", "train_torgb", "train_affine", "train_const",
                   "checkpointing", "mixed_precision", "seed", "class_index")
_OUTPUT_FLAGS = ("preview_every", "preview_seeds", "snapshot_every")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--generator", metavar="PATH", help="source generator (.pt, .pkl or .safetensors); on --resume defaults to "
                                       "the file the run started from")
    g.add_argument("--clip", action="append", metavar="SPEC",
                   help="CLIP guide, e.g. 'ViT-B-32:models/open_clip/vit-b-32.safetensors' or an open_clip "
                        "folder; repeat for several guides")
    g.add_argument("--clip-weight", action="append", type=float, metavar="W",
                   help="loss weight of the matching --clip (in order; default 1.0 each)")
    g.add_argument("--source", metavar="TEXT", help="text for the source domain, e.g. 'photo'")
    tgt = g.add_mutually_exclusive_group()
    tgt.add_argument("--target", metavar="TEXT", action="append",
                     help="text for the target domain, e.g. 'pencil sketch'; repeat it with --adapt domain|stylespace "
                          "to train one domain per target in the same run")
    tgt.add_argument("--target-images", metavar="DIR", help="folder of example images of the target domain "
                                                            "(few-shot image direction)")
    g.add_argument("--source-samples", metavar="N", type=int, default=16,
                   help="generator samples that stand for the source with --target-images (default 16)")
    g.add_argument("--templates", action=argparse.BooleanOptionalAction, default=None,
                   help="average the prompts over prompt templates ('a photo of a {}.', ...) (default on)")
    g.add_argument("--template-set", choices=("imagenet", "short"), default=None,
                   help="which templates: imagenet = CLIP's 79 ImageNet templates, as the official StyleGAN-NADA "
                        "code (default); short = the 24 phrasings of earlier versions")

    from ..settings import TRAIN

    t = p.add_argument_group("training")
    TRAIN.add_flags(t, _TRAINING_FLAGS)

    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", required=True, help="output folder")
    o.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR (its --out folder)")
    TRAIN.add_flags(o, _OUTPUT_FLAGS)
    o.add_argument("--eval-seeds", metavar="SEEDS", default="1000-1015",
                   help="held-out seeds for metrics.json (default 1000-1015; 'none' skips metrics)")
    o.add_argument("--quiet", action="store_true", help="no progress bar or progress messages")
    add_device_argument(p)


# ----------------------------------------------------------------------------------------------


def _config_from_args(args, saved: dict | None):
    """Saved settings (on --resume) overridden by every flag given; checked once, by TrainConfig."""
    from ..training.config import TrainConfig

    base = TrainConfig.from_dict(saved, saved=True).to_dict() if saved else {}
    for name in _TRAINING_FLAGS + _OUTPUT_FLAGS:
        val = getattr(args, name)
        if val is not None:
            base[name] = val
    if not saved and len(getattr(args, "target", None) or []) > 1:
        # several targets share each step's frozen pass, which needs every layer's stored noise
        base.setdefault("noise_mode", "const")
    if not saved:
        from ..settings import TRAIN, optimizer_recipe

        # Every optimiser setting not given (--lr absent or 0) comes from the adapt kind's recipe: compact
        # vectors need a far larger step than weights, with plain Adam (the same rule as NADA Train).
        adapt = TRAIN.check("adapt", base.get("adapt", TRAIN["adapt"].default))
        base.update(optimizer_recipe(adapt, base.get("lr"), base.get("betas"), base.get("adam_ratio")))
    return TrainConfig.from_dict(base)


def _clip_specs(args, saved_extra: dict) -> list[tuple[str, float]]:
    from ..errors import InputError

    specs = args.clip or [s for s, _ in saved_extra.get("clip", [])]
    if not specs:
        raise InputError("no CLIP guide given; pass --clip 'ViT-B-32:/path/to/weights.safetensors'")
    weights = args.clip_weight
    if weights is None:
        saved = dict((s, w) for s, w in saved_extra.get("clip", []))
        weights = [saved.get(s, 1.0) for s in specs] if not args.clip else [1.0] * len(specs)
    if len(weights) > len(specs):
        raise InputError(f"{len(weights)} --clip-weight values for {len(specs)} --clip guides; give one weight per "
                         "--clip, in the same order")
    weights = list(weights) + [1.0] * (len(specs) - len(weights))
    return list(zip(specs, weights))


def _target_images(folder: str) -> list[Path]:
    from ..errors import InputError

    d = Path(folder).expanduser()
    if not d.is_dir():
        raise InputError(f"--target-images {d}: no such folder; pass a folder of example images")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"--target-images {d}: no images found ({', '.join(IMAGE_SUFFIXES)})")
    return files


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_output
    from ..formats.checkpoints import load_generator
    from ..guidance.clip import load_clip_ensemble
    from ..devices import resolve_device
    from ..guidance.directions import DirectionSet, image_direction, text_direction, text_directions
    from ..errors import InputError
    from ..media.images import load_image
    from ..seeds import parse_seeds
    from ..training.state import read_state
    from ..training.trainer import NadaTrainer

    out = check_output(Path(args.out).expanduser(), kind="dir", what="--out")
    saved_info: dict = {}
    if args.resume:
        _, saved_info = read_state(args.resume)
    saved_extra = dict(saved_info.get("extra") or {})
    device = resolve_device(args.device)
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))

    # Inputs -----------------------------------------------------------------------------------
    gen_path = args.generator or saved_extra.get("generator")
    if not gen_path:
        raise InputError("no source generator given; pass --generator PATH")
    cfg = _config_from_args(args, saved_info.get("config"))
    result_name = "generator.safetensors" if cfg.adapt == "full" else "domain.safetensors"
    check_output(out / result_name, [gen_path], suffixes=(".safetensors",), what="--out")
    G = load_generator(gen_path, device=device)
    clip_specs = _clip_specs(args, saved_extra)
    guide = load_clip_ensemble(clip_specs, device=device)
    templates = args.templates if args.templates is not None else saved_extra.get("templates", True)
    # A run saved before --template-set existed averaged the 24 short templates: keep them on resume.
    template_set = args.template_set or saved_extra.get("template_set") or (
        "short" if "templates" in saved_extra else "imagenet")
    target_images = args.target_images or (saved_extra.get("target_images") if not args.target else None)
    if target_images:
        files = _target_images(target_images)
        say(f"image direction: {len(files)} target images, {args.source_samples} source samples")
        direction = image_direction(guide, [load_image(f) for f in files], G, num_samples=args.source_samples,
                                    class_index=cfg.class_index)
    else:
        source = args.source if args.source is not None else saved_extra.get("source")
        targets = args.target or saved_extra.get("targets") or (
            [saved_extra["target"]] if saved_extra.get("target") is not None else [])
        if source is None or not targets:
            raise InputError("describe the change: pass --source TEXT and --target TEXT (or --target-images DIR)")
        if len(targets) > 1:  # one domain per target: the checks NADA Text Direction makes on its lines too
            got = text_directions(guide, source, "\n".join(targets), templates=template_set if templates else False)
            directions = list(got) if isinstance(got, DirectionSet) else [got]
        else:
            directions = [text_direction(guide, source, targets[0], templates=template_set if templates else False)]
        direction = directions[0]

    if not target_images and len(directions) > 1:
        from ..training.multi_target import MultiTargetTrainer

        trainer = MultiTargetTrainer(G, guide, directions, cfg, device=device)
    else:
        trainer = NadaTrainer(G, guide, direction, cfg, device=device)
    trainer.extra_info = {
        "generator": str(Path(gen_path).expanduser().resolve()),
        "clip": [[s, w] for s, w in clip_specs],
        "source": getattr(direction, "source_text", None),
        "target": getattr(direction, "target_text", None),
        "target_images": str(Path(target_images).expanduser().resolve()) if target_images else None,
        "templates": bool(templates),
        "template_set": template_set,
    }
    if getattr(trainer, "directions", None):
        trainer.extra_info["targets"] = [d.target_text for d in trainer.directions]
    if args.resume:
        trainer.load_state(args.resume)
        say(f"resuming at step {trainer.step_index} of {cfg.steps}")
    out.mkdir(parents=True, exist_ok=True)

    eval_seeds = None if args.eval_seeds.strip().lower() == "none" else parse_seeds(args.eval_seeds)
    if getattr(trainer, "directions", None):
        return _run_multi(trainer, out, eval_seeds, args, say)
    outcome = train_with_bar(trainer, out, eval_seeds=eval_seeds, progress=not args.quiet)
    m = outcome.metrics
    say(f"saved {m['paths'].get('generator') or m['paths'].get('domain')} ({trainer.step_index} steps)")
    if outcome.interrupted:  # printed even with --quiet: the user needs to know how to continue
        from .common import command_line

        here = out.resolve()
        device = ["--device", args.device] if args.device not in (None, "auto") else []
        print(f"nada train: interrupted at step {trainer.step_index} of {cfg.steps}; saved {out}; continue with: "
              f"{command_line('train', '--resume', here, '--out', here, *device)}", file=sys.stderr)
        return 130
    if "directional_similarity_after" in m:
        say(f"directional CLIP similarity {m['directional_similarity_before']:.3f} -> "
            f"{m['directional_similarity_after']:.3f}; outputs in {out}/")
    return 0


def _run_multi(trainer, out: Path, eval_seeds, args, say) -> int:
    """Several targets: one domain file per target (see :mod:`nada_core.training.multi_target`)."""
    from ..training.multi_target import run_multi_training

    bar = ProgressBar(trainer.config.steps, trainer.step_index, enabled=not args.quiet)
    try:
        m = run_multi_training(trainer, out, eval_seeds=eval_seeds, on_progress=bar).metrics
    finally:
        bar.close()
    files = [v for k, v in m["paths"].items() if k != "state"]
    say(f"saved {len(files)} domains ({', '.join(Path(f).name for f in files)}; {trainer.step_index} steps)")
    if m["interrupted"]:
        print(f"nada train: interrupted at step {trainer.step_index} of {trainer.config.steps}; saved {out}; continue "
              f"with: nada train --resume {out} --out {out}", file=sys.stderr)
        return 130
    return 0


class ProgressBar:
    """tqdm bar fed by the training pipeline's ``on_progress(info, grid)``; no-op when disabled."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True, desc: str = "nada train") -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def __call__(self, info, _grid=None) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in info.losses.items()}, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_with_bar(trainer, out: Path, eval_seeds=None, progress: bool = True, should_stop=None):
    """:func:`nada_core.training.run.run_training` into ``out`` with a tqdm bar (``progress``)."""
    from ..training.run import run_training

    bar = ProgressBar(trainer.config.steps, trainer.step_index, enabled=progress)
    try:
        return run_training(trainer, out, eval_seeds=eval_seeds, on_progress=bar, should_stop=should_stop)
    finally:
        bar.close()
