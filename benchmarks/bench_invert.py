"""Benchmark GAN inversion: seconds per optimisation step.

Random-weight config-f generators (same architecture and cost as the real FFHQ/AFHQ models) at
the chosen resolutions, on CPU and on CUDA when available, in W and W+, without and with a
CLIP term (ViT-B-32 with random weights from ``open_clip.create_model``: same cost as the real
one, nothing downloaded). Prints a markdown table.

    python benchmarks/bench_invert.py                      # 256 and 1024 px, every device, all variants
    python benchmarks/bench_invert.py --resolutions 32 --steps 3 --warmup 1 --devices cpu   # smoke test

Timing: the mean wall time between progress callbacks after ``--warmup`` steps (CUDA is
synchronised at every callback), so set-up (W statistics, CLIP embedding of the target) is
excluded. ``--noise`` also optimises the noise maps.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nada_core.editing.invert import InvertConfig, invert  # noqa: E402
from nada_core.models.random_init import random_generator  # noqa: E402
from nada_core.models.stylegan2 import GeneratorConfig  # noqa: E402


def random_clip(device: torch.device, arch: str = "ViT-B-32"):
    """A ClipModel around an open_clip model with random weights (no download)."""
    import open_clip

    from nada_core.guidance.clip import ClipModel, Preprocess

    model = open_clip.create_model(arch, pretrained=None)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipModel(model, None, arch=arch, source="random", preprocess=Preprocess(size=size), device=device)


def time_inversion(G, clip, space: str, steps: int, warmup: int, batch: int, noise: bool, device: torch.device) -> float:
    """Mean seconds per step over the steps after ``warmup``."""
    stamps: list[float] = []

    def on_progress(step, total, losses, preview):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    target = torch.rand(batch, 3, G.img_resolution, G.img_resolution)
    cfg = InvertConfig(space=space, steps=warmup + steps, w_avg_samples=1000, optimize_noise=noise,
                       clip_weight=0.5 if clip is not None else 0.0)
    invert(G, target, cfg, clip=clip, on_progress=on_progress)
    timed = stamps[warmup - 1:] if warmup > 0 else stamps
    if len(timed) < 2:
        raise SystemExit("need at least 2 timed steps; raise --steps")
    return (timed[-1] - timed[0]) / (len(timed) - 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolutions", default="256,1024", help="comma-separated generator resolutions (default 256,1024)")
    p.add_argument("--devices", default="auto", help="comma-separated devices, or 'auto' (cpu + cuda when available)")
    p.add_argument("--spaces", default="w,w+", help="comma-separated spaces (default w,w+)")
    p.add_argument("--clip", choices=("no", "yes", "both"), default="both", help="with a CLIP term (default both)")
    p.add_argument("--clip-arch", default="ViT-B-32", help="open_clip architecture (random weights)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per case (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--batch", type=int, default=1, help="images inverted together (default 1)")
    p.add_argument("--noise", action="store_true", help="also optimise noise maps")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.devices == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    resolutions = [int(r) for r in args.resolutions.split(",")]
    spaces = [s.strip() for s in args.spaces.split(",")]
    clip_modes = {"no": [False], "yes": [True], "both": [False, True]}[args.clip]

    rows = []
    for dev_name in devices:
        device = torch.device(dev_name)
        clip = random_clip(device, args.clip_arch) if True in clip_modes else None
        for res in resolutions:
            G = random_generator(GeneratorConfig(img_resolution=res), 0, isolate_rng=False).to(device)
            for space in spaces:
                for use_clip in clip_modes:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    sec = time_inversion(G, clip if use_clip else None, space, args.steps, args.warmup,
                                         args.batch, args.noise, device)
                    mem = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}"
                           if device.type == "cuda" else "-")
                    rows.append((res, dev_name, space, "yes" if use_clip else "no", sec, mem))
                    print(f"  {res} px {dev_name} {space} clip={'yes' if use_clip else 'no'}: {sec:.4f} s/step",
                          file=sys.stderr, flush=True)
            del G
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"\nInversion speed (batch {args.batch}, noise {'on' if args.noise else 'off'}, "
          f"{torch.get_num_threads()} CPU threads, GPU: {name}, CLIP: {args.clip_arch} random weights)\n")
    print("| resolution | device | space | CLIP | s/step | steps/s | peak GPU GiB |")
    print("|---:|---|---|---|---:|---:|---:|")
    for res, dev, space, use_clip, sec, mem in rows:
        print(f"| {res} | {dev} | {space.upper()} | {use_clip} | {sec:.4f} | {1.0 / sec:.1f} | {mem} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
