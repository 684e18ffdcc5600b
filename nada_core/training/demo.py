"""Training demo on tiny random models: the whole training path, offline, in seconds.

:func:`run_demo_training` builds (or takes) a small random StyleGAN2 and builds a small random
open_clip model in memory, trains "photo" -> "pencil sketch" for a few steps with adaptive layer
freezing, and writes the same outputs as ``nada train``. With random weights the images are
abstract colour fields and "pencil sketch" means nothing to the random CLIP: the demo shows the
machinery (and that the directional CLIP similarity climbs), not a real domain change.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

DEMO_SOURCE = "photo"
DEMO_TARGET = "pencil sketch"
DEMO_NOTE = ("note: the generator and CLIP here have RANDOM weights, so the images are abstract and "
             "'pencil sketch' means nothing to this CLIP; real checkpoints give real results.")


def tiny_random_clip(seed: int = 0, image_size: int = 64, width: int = 128, depth: int = 2,
                     embed_dim: int = 64, device: str | torch.device = "cpu"):
    """A small open_clip ViT with random weights as a :class:`nada_core.guidance.clip.ClipModel` (no downloads).

    Same ``seed`` -> same weights; the global torch RNG is left untouched. Uses open_clip's own
    tokenizer (its vocabulary ships with the package).
    """
    import open_clip
    from open_clip.model import CLIP

    from ..guidance.clip import ClipModel, Preprocess

    head = 64
    vision = {"image_size": image_size, "layers": depth, "width": width, "patch_size": max(4, image_size // 8),
              "head_width": head}
    text = {"context_length": 77, "vocab_size": 49408, "width": width, "heads": width // head, "layers": depth}
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False):
        torch.manual_seed(seed)
        model = CLIP(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text)
        with torch.no_grad():  # fresh open_clip models start with zero biases; make every path matter
            for name, p in model.named_parameters():
                if name.endswith("bias") and p.ndim == 1:
                    p.normal_(0.0, 0.02)
    tokenizer = open_clip.SimpleTokenizer(context_length=77)
    return ClipModel(model, tokenizer, arch="random-tiny-ViT", source=f"random-seed{seed}",
                     preprocess=Preprocess(size=image_size), device=device)


def tiny_random_generator(resolution: int = 64, seed: int = 0):
    """A small StyleGAN2 (channels capped at 128, 4 mapping layers) with random weights."""
    from ..models.random_init import random_generator
    from ..models.stylegan2 import GeneratorConfig, channels_from_base

    cfg = GeneratorConfig(img_resolution=resolution, z_dim=128, w_dim=128, mapping_layers=4,
                          channels=channels_from_base(resolution, channel_base=4096, channel_max=128))
    # noise strengths 0.1: some texture; w_avg tracked from 2000 codes, as in a trained model
    return random_generator(cfg, seed, noise_strength=0.1, w_avg_samples=2000)


def run_demo_training(out_dir: str | Path, steps: int = 30, device: str | torch.device = "cpu",
                      on_progress: Callable | None = None, generator=None, seed: int = 0,
                      say: Callable[[str], None] | None = print,
                      should_stop: Callable[[], bool] | None = None) -> dict:
    """Train a tiny random generator with a tiny random CLIP and write every output to ``out_dir``.

    ``generator``: use this one instead of building a 64 px random generator. ``on_progress``:
    passed to :func:`nada_core.training.run.run_training` (the CLI gives it a tqdm bar). Outputs, as
    ``nada train`` writes them: ``generator.safetensors``, ``train_state.safetensors``,
    ``preview_<step>.png``, ``loss.png``, ``metrics.json``. Returns the metrics dict
    (``directional_similarity_before``/``_after``, ``target_score_*``, ``diversity_*``,
    ``source_correspondence_*``, ``steps``, ``seconds_per_step``, ``paths``, ``seconds``).
    """
    from .run import run_training
    from ..devices import resolve_device
    from ..guidance.directions import text_direction
    from .trainer import NadaTrainer, TrainConfig

    t0 = time.perf_counter()
    say = say or (lambda msg: None)
    dev = resolve_device(device)
    G = generator if generator is not None else tiny_random_generator(64, seed)
    G = G.to(dev)
    clip = tiny_random_clip(seed=seed, image_size=min(64, G.img_resolution), device=dev)
    say(DEMO_NOTE)
    direction = text_direction(clip, DEMO_SOURCE, DEMO_TARGET, templates=True)
    k = max(1, (G.num_ws - 1) * 2 // 3)  # show adaptive freezing: about two thirds of the layers
    cfg = TrainConfig(steps=int(steps), batch=2, lr=0.01, num_layers=k, interval=10, mixing=0.9, seed=seed,
                      preview_every=max(1, int(steps) // 3), preview_seeds=(0, 1, 2, 3))
    trainer = NadaTrainer(G, clip, direction, cfg, device=dev)
    trainer.extra_info = {"demo": True, "source": DEMO_SOURCE, "target": DEMO_TARGET}
    say(f"training {steps} steps '{DEMO_SOURCE}' -> '{DEMO_TARGET}' on {dev}: {k} of {G.num_ws - 1} layers, "
        f"re-selected every {cfg.interval} steps")
    outcome = run_training(trainer, Path(out_dir), eval_seeds=list(range(1000, 1008)), on_progress=on_progress,
                           should_stop=should_stop)
    metrics = outcome.metrics
    say(f"saved {metrics['paths']['generator']} ({trainer.step_index} steps)")
    metrics["seconds"] = time.perf_counter() - t0
    metrics["note"] = DEMO_NOTE
    return metrics
