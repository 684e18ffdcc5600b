"""Compact domains: file size, training step time and peak memory, and tiny-model metrics.

Three tables (markdown), each from its own sub-command:

- ``sizes``: ``domain.safetensors`` size per resolution for config-f generators, computed from the
  architecture alone (a meta-device generator: no weights, nothing allocated), next to the full
  generator file. ``domain`` = the convs' style channels; ``stylespace`` with the toRGB styles.
- ``speed``: seconds per training step and peak memory of ``--adapt full``, ``domain`` and
  ``stylespace`` at the same settings (config-f with random weights, random ViT-B/32: the cost
  depends only on the architectures). Each variant runs in its own process, so the peak resident
  set size on CPU (``ru_maxrss``) belongs to that variant alone; on CUDA ``max_memory_allocated``.
- ``tiny``: directional similarity and diversity on held-out seeds after the same number of steps,
  on the tests' tiny random generator and tiny random CLIP. Random weights say nothing about image
  quality: this only shows that each parameterisation optimises the objective.

    python benchmarks/bench_domains.py sizes
    python benchmarks/bench_domains.py speed --device cpu --resolutions 64 256 --steps 3
    python benchmarks/bench_domains.py tiny --steps 40
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# The optimiser recipes (nada_core.settings.ADAPT_RECIPES): StyleGAN-NADA 0.002 (Adam at 0.8 of it); HyperDomainNet's
# domain modulation 0.1 and StyleDomain's StyleSpace offsets 0.05 (plain Adam 0.9, 0.999).
from nada_core.settings import ADAPT_RECIPES  # noqa: E402

RECIPES = ADAPT_RECIPES


def _config_f(resolution: int, meta: bool = False):
    from nada_core.models.stylegan2 import Generator, GeneratorConfig

    cfg = GeneratorConfig(img_resolution=resolution, z_dim=512, w_dim=512, mapping_layers=8)
    if meta:
        with torch.device("meta"):
            return Generator(cfg)
    from nada_core.models.random_init import random_generator

    return random_generator(cfg, 0, noise_strength=0.1, isolate_rng=False)


# ----------------------------------------------------------------------------------------------


def sizes(args) -> None:
    from nada_core.domains import new_domain, save_domain

    print("| resolution | kind | layers | values | domain file | full generator file |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolutions:
            G = _config_f(res, meta=True)
            full_mb = sum(t.numel() * 4 for t in G.state_dict().values()) / 1e6
            for kind, torgb in (("domain", False), ("stylespace", True)):
                d = new_domain(G, kind, include_torgb=torgb)
                d.values = {k: torch.zeros(v.shape) for k, v in d.values.items()}  # meta -> real zeros
                path = save_domain(d, Path(tmp) / f"{kind}_{res}.safetensors")
                kb = path.stat().st_size / 1000
                print(f"| {res} | {kind}{' + toRGB' if torgb else ''} | {len(d.layers)} | {d.num_values:,} | "
                      f"{kb:.1f} kB | {full_mb:.1f} MB |")
    print("\nA trained file also stores its prompts, settings and metrics (about 2 kB more).")


# ----------------------------------------------------------------------------------------------


def _one(args) -> None:
    """Child process: time one variant and print one JSON line."""
    import resource

    from nada_core.guidance.directions import text_direction
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_train import random_vit_b32  # noqa: E402

    device = torch.device(args.device)
    G = _config_f(args.resolution).to(device)
    clip = random_vit_b32(device)
    direction = text_direction(clip, "photo", "pencil sketch", templates=False)
    cfg = TrainConfig(steps=args.steps + 1, batch=2, num_layers=args.layers, preview_every=0, adapt=args.adapt,
                      train_torgb=args.adapt == "stylespace", **RECIPES[args.adapt])
    tr = NadaTrainer(G, clip, direction, cfg, device)
    tr.step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        tr.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    trainable = sum(p.numel() for p in tr.trainable_parameters().values())
    print(json.dumps({"s_per_step": (time.perf_counter() - t0) / args.steps, "peak_mib": peak,
                      "trainable": trainable}))


def speed(args) -> None:
    print(f"| resolution | adapt | trainable numbers | s/step | peak memory ({args.device}) |")
    print("|---:|---|---:|---:|---:|")
    for res in args.resolutions:
        for adapt in ("full", "domain", "stylespace"):
            cmd = [sys.executable, __file__, "_one", "--device", args.device, "--resolution", str(res),
                   "--steps", str(args.steps), "--adapt", adapt, "--layers", args.layers]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"| {res} | {adapt} | {r['trainable']:,} | {r['s_per_step']:.2f} | "
                  f"{r['peak_mib'] / 1024:.2f} GiB |", flush=True)


# ----------------------------------------------------------------------------------------------


def tiny(args) -> None:
    from nada_core.guidance.directions import text_direction
    from nada_core.training.metrics import evaluate
    from nada_core.training.trainer import NadaTrainer, TrainConfig
    from tests.clip_factory import load_tiny_clip
    from tests.factories import tiny_generator

    seeds = list(range(1000, 1016))
    with tempfile.TemporaryDirectory() as tmp:
        clip = load_tiny_clip(Path(tmp))
        print("| adapt | lr | trainable numbers | directional similarity | diversity |")
        print("|---|---:|---:|---:|---:|")
        d0 = None
        for adapt in ("source", "full", "domain", "stylespace"):
            sims, divs = [], []
            for target in args.targets:
                direction = text_direction(clip, "photo", target, templates=False)
                G = tiny_generator(args.resolution)
                cfg = TrainConfig(steps=args.steps, batch=2, num_layers="all", preview_every=0, seed=0,
                                  adapt="full" if adapt == "source" else adapt,
                                  train_torgb=adapt == "stylespace", **RECIPES.get(adapt, RECIPES["full"]))
                tr = NadaTrainer(G, clip, direction, cfg, "cpu")
                if adapt != "source":
                    tr.run()
                m = evaluate(tr.G_frozen, tr.G_train, clip, direction, seeds)
                sims.append(m["directional_similarity"])
                divs.append(m["diversity"])
            n = 0 if adapt == "source" else sum(p.numel() for p in tr.trainable_parameters().values())
            lr = "-" if adapt == "source" else f"{RECIPES[adapt]['lr']:g}"
            print(f"| {adapt if adapt != 'source' else 'source (before training)'} | {lr} | {n:,} | "
                  f"{sum(sims) / len(sims):.3f} | {sum(divs) / len(divs):.3f} |", flush=True)
        print(f"\nMeans over targets {args.targets}, {args.steps} steps, batch 2, all layers, 16 held-out seeds; "
              f"{args.resolution} px random generator and random tiny CLIP.")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sizes")
    s.add_argument("--resolutions", type=int, nargs="+", default=[256, 512, 1024])
    sp = sub.add_parser("speed")
    sp.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sp.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    sp.add_argument("--steps", type=int, default=5)
    sp.add_argument("--layers", default="all")
    t = sub.add_parser("tiny")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--resolution", type=int, default=16)
    t.add_argument("--targets", nargs="+", default=["pencil sketch", "oil painting"])
    one = sub.add_parser("_one")
    for name, kw in (("--device", {}), ("--resolution", {"type": int}), ("--steps", {"type": int}),
                     ("--adapt", {}), ("--layers", {})):
        one.add_argument(name, required=True, **kw)
    args = p.parse_args(argv)
    {"sizes": sizes, "speed": speed, "tiny": tiny, "_one": _one}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
