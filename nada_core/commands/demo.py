"""``nada demo``: the whole pipeline on tiny random models, offline, in about a minute.

Nothing is downloaded: a small StyleGAN2 and a small CLIP are built with RANDOM weights, so the
images are abstract colour fields, not faces. The point is to see every stage run end to end
(save/load, sampling, interpolation, CLIP-guided training with layer freezing, metrics) before
pointing the same commands at real checkpoints.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .common import add_device_argument
from .train import ProgressBar

NAME = "demo"
HELP = "Run the pipeline end to end on tiny random models (no downloads) and write the outputs."

DEMO_RESOLUTION = 64


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="nada_demo", help="output folder (default nada_demo)")
    p.add_argument("--steps", type=int, default=30, help="training steps for the demo run (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed for the random models (default 0)")
    add_device_argument(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..atomic import check_output
    from ..media.animation import write_animation
    from ..formats.checkpoints import load_generator, save_generator
    from ..training.demo import run_demo_training, tiny_random_generator
    from ..devices import resolve_device
    from ..media.images import make_grid, save_png
    from ..editing.interpolate import interpolate_path
    from ..editing.latents import latents_from_seeds, render

    quiet = bool(os.environ.get("NADA_DEMO_QUIET"))
    device = resolve_device(args.device)
    out = check_output(args.out, kind="dir", what="--out")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("nada demo: random weights throughout, so expect abstract images, not faces.")

    # 1. A generator, saved and read back through the checkpoint module.
    G0 = tiny_random_generator(DEMO_RESOLUTION, args.seed)
    gen_path = save_generator(G0, out / "random_generator.safetensors",
                              metadata={"note": "random weights made by `nada demo`"})
    G = load_generator(gen_path, device=device)
    print(f"[1/4] generator: {G.img_resolution} px, {G.num_ws} W+ entries, "
          f"{G.num_parameters():,} parameters -> {gen_path}")

    # 2. A seed grid (same seeds, same images on every run).
    lat = latents_from_seeds(G, "0-7", truncation_psi=0.7)
    save_png(make_grid(render(G, lat), ncols=4, pad=2), out / "samples.png")
    print(f"[2/4] samples: seeds 0-7, truncation 0.7 -> {out / 'samples.png'}")

    # 3. A latent walk written as an animated GIF.
    path = interpolate_path(lat.ws[:3], frames=24, mode="lerp", loop=True)
    with torch.no_grad():
        frames = G.synthesis(path.to(device)).cpu()
    write_animation(frames, out / "interpolation.gif", fps=12)
    print(f"[3/4] interpolation: 24 frames through seeds 0, 1, 2 -> {out / 'interpolation.gif'}")

    # 4. CLIP-guided training with a tiny random CLIP.
    bar = ProgressBar(args.steps, enabled=not quiet)
    try:
        result = run_demo_training(out / "train", steps=args.steps, device=device, on_progress=bar,
                                   generator=G, seed=args.seed)
    finally:
        bar.close()
    print(f"[4/4] training: {args.steps} steps 'photo' -> 'pencil sketch' -> {out / 'train'}")
    for key in ("directional_similarity_before", "directional_similarity_after"):
        if key in result:
            print(f"      {key}: {result[key]:.4f}")
    print(f"done in {time.perf_counter() - t0:.1f} s. Outputs in {out}/")
    return 0
