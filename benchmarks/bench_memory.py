"""Peak memory of one training step: per resolution, with and without layer selection and checkpointing.

Each configuration runs in its own process (``--child``), so peaks never mix. The generator is a
config-f StyleGAN2 and the guide an open_clip ViT-B/32, both with random weights (memory depends
only on the architectures). Measured:

- on CUDA: ``torch.cuda.max_memory_allocated`` during the step, minus the memory allocated before it
  (the weights of both generators, CLIP and the optimiser's empty state);
- on CPU: the process's peak resident set size during the step (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the step) minus the resident size before it.

Rows: "all layers" (no selection pass), "select k" (a selection pass every step; the pass runs in
chunks of the batch, the default), "select k, one chunk" (the pass with all 8 codes at once, as
before chunking), each optionally with activation checkpointing. Usage::

    python benchmarks/bench_memory.py --device cpu --resolutions 256 512 1024 --batch 1
    python benchmarks/bench_memory.py --device cuda --resolutions 256 512 1024 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args) -> dict:
    """One configuration, one process: build, measure the base, run ``--steps`` steps, report."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train import config_f_generator, random_vit_b32
    from nada_core.cpu_memory import reuse_freed_memory
    from nada_core.devices import resolve_device
    from nada_core.guidance.directions import text_direction
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    clip = random_vit_b32(device)
    direction = text_direction(clip, "photo", "pencil sketch", templates=False)
    G = config_f_generator(args.resolution, device)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, num_layers=args.layers, preview_every=0,
                      select_chunk=args.select_chunk, checkpointing=args.checkpointing,
                      mixed_precision=args.mixed_precision)
    trainer = NadaTrainer(G, clip, direction, cfg, device=device)
    del G
    import gc

    gc.collect()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:  # reset the peak RSS (VmHWM) to the current RSS
            f.write("5")
        base = _rss_kib("VmRSS") * 1024
    t0 = time.perf_counter()
    selected = []
    # As NadaTrainer.run: on a CPU the steps reuse freed memory (nada_core.cpu_memory), which the peak
    # includes, unless checkpointing (or NADA_REUSE_CPU_MEMORY=0) keeps the allocator's default policy.
    with reuse_freed_memory(device, enabled=not args.checkpointing):
        for _ in range(args.steps):
            selected.append(trainer.step().selected)
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _rss_kib("VmHWM") * 1024
    return {"resolution": args.resolution, "batch": args.batch, "layers": args.layers,
            "select_chunk": args.select_chunk, "checkpointing": args.checkpointing, "base_bytes": base,
            "peak_bytes": peak, "step_peak_bytes": peak - base, "seconds_per_step": (time.perf_counter() - t0) / args.steps,
            "selected": any(selected), "device": str(device)}


def run_config(args, resolution: int, layers: str, select_chunk: int, checkpointing: bool) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--device", args.device, "--resolution", str(resolution),
           "--batch", str(args.batch), "--layers", layers, "--select-chunk", str(select_chunk),
           "--steps", str(args.steps), "--threads", str(args.threads),
           "--checkpointing" if checkpointing else "--no-checkpointing",
           "--mixed-precision" if args.mixed_precision else "--no-mixed-precision"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        print(f"  {resolution} px {layers}: failed ({tail[0]})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--resolution", type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--k", type=int, default=8, help="layer count of the selection rows (default 8)")
    p.add_argument("--layers", default="all", help=argparse.SUPPRESS)
    p.add_argument("--select-chunk", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=1, help="steps per configuration (default 1)")
    p.add_argument("--threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--checkpointing", action=argparse.BooleanOptionalAction, default=False, help=argparse.SUPPRESS)
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (the training default)")
    p.add_argument("--with-checkpointing", action="store_true", help="also measure with activation checkpointing")
    p.add_argument("--unchunked", action="store_true", help="also measure the selection pass in one chunk")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    gib = 2**30
    print(f"\nPeak memory of one training step above the weights, batch {args.batch}, config-f, ViT-B/32, "
          f"{args.device}\n")
    print("| resolution | variant | step peak GiB | per image GiB | s/step |")
    print("|---:|---|---:|---:|---:|")
    for res in args.resolutions:
        variants = [("all layers (no selection)", "all", 0, False),
                    (f"select k={args.k} every step (chunks of the batch)", str(args.k), 0, False)]
        if args.unchunked:
            variants.append((f"select k={args.k}, the 8 codes in one chunk", str(args.k), 8, False))
        if args.with_checkpointing:
            variants += [(name + ", checkpointing", layers, chunk, True) for name, layers, chunk, _ in list(variants)]
        for name, layers, chunk, ckpt in variants:
            r = run_config(args, res, layers, chunk, ckpt)
            if r is None:
                continue
            r["variant"] = name
            rows.append(r)
            print(f"| {res} | {name} | {r['step_peak_bytes'] / gib:.2f} | {r['step_peak_bytes'] / gib / args.batch:.2f} "
                  f"| {r['seconds_per_step']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
