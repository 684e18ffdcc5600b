"""Training step of the official StyleGAN-NADA code against ours, side by side, in one run.

Give it your checkouts of https://github.com/rinongal/StyleGAN-nada and (unless ``import clip``
already works) https://github.com/openai/CLIP::

    python benchmarks/bench_official.py --official ~/src/StyleGAN-nada --clip ~/src/CLIP
    python benchmarks/bench_official.py --official ... --clip ... --check      # loss sanity check only

What runs, each measurement in its own process with ``torch.set_num_threads(--threads)`` (default
1) and the same weights:

- a config-f rosinality generator (``--resolution``, default 256) with random weights, built by
  the official code's own ``Generator`` and saved as a rosinality checkpoint, which both sides load;
- CLIP ViT-B/32 with random weights, built by OpenAI's ``clip.model.CLIP`` with ViT-B/32's
  hyper-parameters and saved as an OpenAI state dict, which both sides load. No download: in the
  official process ``clip.load`` is replaced by a function that builds the model (ViT-B/32 from
  that file; RN50, which their ``CLIPLoss`` also loads, with random weights) and returns it with
  OpenAI's own preprocessing, as ``clip.load`` does on a CPU;
- official: their ``ZSSGAN`` (built by their ``__init__`` from their ``TrainOptions`` defaults, with
  the device moved from ``cuda:0`` to the CPU) and the loop body of their ``train.py``:
  ``mixing_noise`` -> ``net(sample_z)`` -> ``net.zero_grad()`` -> ``loss.backward()`` ->
  ``g_optim.step()`` (their Adam: ``lr * g_reg_ratio``, ``betas ** g_reg_ratio``) -> print the loss.
  Their compiled ``op`` package is replaced by CPU ops built from nada_core's functions
  (``benchmarks/official_ops.py``), their ``legacy`` module (StyleGAN-XL pickles only) by an
  empty one, and ``cv2`` (sample images only) by an empty one when OpenCV is not installed;
- ours: ``NadaTrainer.step`` with our defaults, which equal the official code's (see README), its
  steps inside ``nada_core.cpu_memory.reuse_freed_memory`` as ``NadaTrainer.run`` runs them (freed
  memory kept for the next step instead of being unmapped and faulted in again).
  ``--official-reuse-memory`` gives the official process the same allocator policy through glibc's
  environment variables, so the ratio shows what is left in the code itself.

Settings: ``all`` (every layer trains, no selection: their ``--auto_layer_iters 0``) and ``select``
(adaptive layer selection of k=8 W+ entries every step from 8 codes: ``--auto_layer_k 8
--auto_layer_iters 1 --auto_layer_batch 8``; ours ``--layers 8 --interval 1``). Batch 2, prompts
"photo" -> "sketch", style mixing 0, random noise (both codes' defaults).

Reported per row: median CPU seconds per step (process CPU time, which on a machine shared with
other jobs is steadier than wall time; with one thread it is the step's own time), the wall-clock
median for reference, the peak resident set size of the process, and the ratio official / ours.

``--check`` builds both on identical weights and codes, moves the trained generator away from the
frozen one (the same perturbation in both), and compares the text direction, the images and the
loss of one step; nothing is timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nada_core.cpu_memory import reuse_freed_memory  # noqa: E402

SOURCE, TARGET = "photo", "sketch"
#: ViT-B/32 and RN50 hyper-parameters of OpenAI's released models (``clip.model.CLIP`` arguments).
CLIP_ARCHS = {
    "ViT-B/32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                     vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
                     transformer_heads=8, transformer_layers=12),
    "RN50": dict(embed_dim=1024, image_resolution=224, vision_layers=(3, 4, 6, 3), vision_width=64,
                 vision_patch_size=None, context_length=77, vocab_size=49408, transformer_width=512,
                 transformer_heads=8, transformer_layers=12),
}
_OPENAI_EXTRA = ("input_resolution", "context_length", "vocab_size")


# ----------------------------------------------------------------------------------------------
# Importing the official code on a CPU
# ----------------------------------------------------------------------------------------------


def import_official(official: Path, clip_dir: Path | None, weights: Path | None, ops: str = "nada"):
    """Make the official code importable on a CPU; returns their ``clip`` module (its ``load``
    replaced, see the module doc). ``weights``: the ViT-B/32 state dict ``clip.load`` returns.
    ``ops``: ``nada`` = their compiled ops replaced by ours (``official_ops``); ``native`` = their
    own ``op`` package with only its CUDA build skipped, so its own CPU branches run."""
    import official_ops

    official = Path(official).resolve()
    if not (official / "ZSSGAN" / "model" / "ZSSGAN.py").is_file():
        raise SystemExit(f"bench_official: error: {official} is not a StyleGAN-nada checkout (no ZSSGAN/model/ZSSGAN.py)")
    for p in ([clip_dir] if clip_dir else []) + [official / "ZSSGAN", official]:
        sys.path.insert(0, str(Path(p).resolve()))
    if ops == "native":
        official_ops.install_native()
    else:
        official_ops.install()
    sys.modules["ZSSGAN.legacy"] = types.ModuleType("ZSSGAN.legacy")  # StyleGAN-XL pickles only; needs CUDA ops
    try:
        import cv2  # noqa: F401  (their utils import it to write sample images, which is never done here)
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    try:
        import clip
        import clip.model
    except ImportError as err:
        raise SystemExit(f"bench_official: error: cannot import OpenAI's CLIP package ({err}); pass --clip with a "
                         f"checkout of https://github.com/openai/CLIP") from None

    def load(name, device="cpu", jit=False, download_root=None):
        torch.manual_seed(1 + sorted(CLIP_ARCHS).index(name))
        model = clip.model.CLIP(**CLIP_ARCHS[name])
        if name == "ViT-B/32" and weights is not None:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict({k: v for k, v in sd.items() if k not in _OPENAI_EXTRA})
        return model.float().eval(), clip.clip._transform(model.visual.input_resolution)

    clip.load = load
    return clip


def official_options(args, ckpt: Path, setting: str):
    """Their ``TrainOptions().parse()`` for this setting (their defaults otherwise)."""
    from ZSSGAN.options.train_options import TrainOptions

    argv = ["train.py", "--frozen_gen_ckpt", str(ckpt), "--size", str(args.resolution), "--batch", str(args.batch),
            "--source_class", SOURCE, "--target_class", TARGET, "--output_dir", str(args.workdir / "official_out")]
    if setting == "select":
        argv += ["--auto_layer_k", str(args.k), "--auto_layer_iters", "1", "--auto_layer_batch", "8"]
    else:
        argv += ["--auto_layer_iters", "0"]
    saved, sys.argv = sys.argv, argv
    try:
        return TrainOptions().parse()
    finally:
        sys.argv = saved


def build_official(args, ckpt: Path, setting: str):
    """``(net, g_optim, opts)``: their ZSSGAN on the CPU and their train.py optimiser."""
    import ZSSGAN.model.ZSSGAN as zmod

    opts = official_options(args, ckpt, setting)

    # Their __init__ builds on "cuda:0": build each part on the CPU instead. (The originals stay
    # the module's names while they run: their __init__s call ``super(TheirClass, self)``.)
    orig_gen, orig_loss = zmod.SG2Generator, zmod.CLIPLoss

    def on_cpu(cls, stand_in, *a, **kw):
        setattr(zmod, cls.__name__, cls)
        try:
            obj = cls(*a, **kw)
        finally:
            setattr(zmod, cls.__name__, stand_in)
        obj.to = lambda *_a, **_k: obj  # their ``.to(self.device)`` after construction
        return obj

    def gen(checkpoint_path, **kw):
        return on_cpu(orig_gen, gen, checkpoint_path, **{**kw, "device": "cpu"})

    def loss(device, **kw):
        return on_cpu(orig_loss, loss, "cpu", **kw)

    zmod.SG2Generator, zmod.CLIPLoss = gen, loss
    try:
        net = zmod.ZSSGAN(opts)
    finally:
        zmod.SG2Generator, zmod.CLIPLoss = orig_gen, orig_loss
    net.device = "cpu"
    g_reg_ratio = opts.g_reg_every / (opts.g_reg_every + 1)
    g_optim = torch.optim.Adam(net.generator_trainable.parameters(), lr=opts.lr * g_reg_ratio,
                               betas=(0 ** g_reg_ratio, 0.99 ** g_reg_ratio))
    return net, g_optim, opts


def official_step_fn(net, g_optim, opts):
    """The body of their train.py loop (sampling, forward, zero_grad, backward, Adam, print)."""
    from ZSSGAN.utils.training_utils import mixing_noise

    def step():
        net.train()
        sample_z = mixing_noise(opts.batch, 512, opts.mixing, "cpu")
        [_src, _dst], loss = net(sample_z)
        net.zero_grad()
        loss.backward()
        g_optim.step()
        return f"Clip loss: {loss}"  # their tqdm.write formats the tensor every step

    return step


# ----------------------------------------------------------------------------------------------
# Ours
# ----------------------------------------------------------------------------------------------


def build_ours(args, ckpt: Path, clip_weights: Path, setting: str, steps: int):
    from nada_core.formats.checkpoints import load_generator
    from nada_core.guidance.clip import load_clip
    from nada_core.guidance.directions import text_direction
    from nada_core.training.trainer import NadaTrainer, TrainConfig

    G = load_generator(ckpt)
    clip = load_clip(str(clip_weights))
    direction = text_direction(clip, SOURCE, TARGET)
    cfg = TrainConfig(steps=steps, batch=args.batch, num_layers=args.k if setting == "select" else "all",
                      interval=1, preview_every=0)
    return NadaTrainer(G, clip, direction, cfg, device="cpu")


# ----------------------------------------------------------------------------------------------
# Workers (one per process)
# ----------------------------------------------------------------------------------------------


#: glibc's environment variables for the policy of nada_core.cpu_memory (for the official process).
REUSE_MEMORY_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 46)}


def _env_reuse() -> bool:
    return all(os.environ.get(k) == v for k, v in REUSE_MEMORY_ENV.items())


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_prepare(args) -> dict:
    """Write the shared random weights: rosinality generator checkpoint and ViT-B/32 state dict."""
    clip = import_official(args.official, args.clip, None)
    from ZSSGAN.model.sg2_model import Generator

    torch.manual_seed(0)
    G = Generator(args.resolution, 512, 8, channel_multiplier=2)
    ckpt = args.workdir / f"generator_{args.resolution}.pt"
    torch.save({"g_ema": G.state_dict()}, ckpt)
    model, _ = clip.load("ViT-B/32")
    vit = args.workdir / "vit_b32.pt"
    # Laid out like OpenAI's released files (with their three hyper-parameter entries).
    extra = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}
    torch.save({**model.state_dict(), **extra}, vit)
    return {"generator": str(ckpt), "clip": str(vit)}


def worker_time(args) -> dict:
    torch.set_num_threads(args.threads)
    ckpt, vit = args.workdir / f"generator_{args.resolution}.pt", args.workdir / "vit_b32.pt"
    total = args.warmup + args.steps
    if args.side == "official":
        import_official(args.official, args.clip, vit, args.official_ops)
        net, g_optim, opts = build_official(args, ckpt, args.setting)
        step = official_step_fn(net, g_optim, opts)
    else:
        trainer = build_ours(args, ckpt, vit, args.setting, total)
        step = trainer.step
    torch.manual_seed(args.seed)
    rss_built = _rss_mib()
    cpu, wall = [], []
    # Ours as NadaTrainer.run runs its steps: freed memory kept for the next step (nada_core.cpu_memory).
    # The official process gets that policy only with --official-reuse-memory (glibc's env variables).
    reuse = reuse_freed_memory("cpu") if args.side == "ours" else contextlib.nullcontext(False)
    with reuse as reusing:
        for i in range(total):
            c0, w0 = time.process_time(), time.perf_counter()
            step()
            c1, w1 = time.process_time(), time.perf_counter()
            if i >= args.warmup:
                cpu.append(c1 - c0)
                wall.append(w1 - w0)
    return {"side": args.side, "setting": args.setting, "cpu_s": statistics.median(cpu), "cpu_all": cpu,
            "wall_s": statistics.median(wall), "peak_rss_mib": _rss_mib(), "built_rss_mib": rss_built,
            "threads": torch.get_num_threads(), "reuses_freed_memory": bool(reusing or _env_reuse())}


def worker_check(args) -> dict:
    """Identical weights and codes in both codes: compare text direction, images and the loss."""
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    ckpt, vit = args.workdir / f"generator_{args.resolution}.pt", args.workdir / "vit_b32.pt"
    import_official(args.official, args.clip, vit, args.official_ops)
    net, _, _ = build_official(args, ckpt, "all")
    net.eval()  # no selection pass; the loss is the same function. (Random-weight rosinality
    # generators have zero noise strengths, so both sides' random noise changes nothing.)
    # Move the trained generator away from the frozen one (same change on both sides).
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in net.generator_trainable.generator.named_parameters():
            if name.startswith("convs.") and name.endswith("conv.weight"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    moved = args.workdir / "generator_moved.pt"
    torch.save({"g_ema": net.generator_trainable.generator.state_dict()}, moved)
    z = torch.randn(args.batch, 512, generator=gen)
    with torch.no_grad():
        [src, dst], loss_theirs = net([z], randomize_noise=False)
        direction_theirs = net.clip_loss_models["ViT-B/32"].target_direction.reshape(-1)

    from nada_core.formats.checkpoints import load_generator

    trainer = build_ours(args, ckpt, vit, "all", 1)
    trainer.G_train.synthesis.load_state_dict(load_generator(moved).synthesis.state_dict())
    trainer._touched = None  # the trained generator now differs from the source
    with torch.no_grad():
        ws = trainer.G_frozen.mapping(z)
        frozen, trained = trainer._render_pair(ws)
        loss_ours = trainer._losses(frozen, trained)["total"]
    direction_ours = trainer.guides[0].vector.reshape(-1)
    return {"loss_official": float(loss_theirs), "loss_ours": float(loss_ours),
            "image_max_abs_diff": max(float((src - frozen).abs().max()), float((dst - trained).abs().max())),
            "text_direction_cos": float(F.cosine_similarity(direction_theirs.float(), direction_ours.float(), dim=0))}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _run_worker(args, role: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--worker", role, "--official", str(args.official), "--workdir", str(args.workdir),
           "--resolution", str(args.resolution), "--batch", str(args.batch), "--k", str(args.k),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--seed", str(args.seed), "--official-ops", args.official_ops]
    if args.clip:
        cmd += ["--clip", str(args.clip)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if extra.get("side") == "official" and args.official_reuse_memory:
        env.update(REUSE_MEMORY_ENV)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_official: error: worker {role} {extra} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", type=Path, required=True, help="checkout of rinongal/StyleGAN-nada")
    p.add_argument("--clip", type=Path, default=None, help="checkout of openai/CLIP (if `import clip` fails)")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--k", type=int, default=8, help="layers chosen by the selection setting (default 8)")
    p.add_argument("--settings", nargs="+", default=["all", "select"], choices=["all", "select"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    p.add_argument("--parallel", type=int, default=1, help="measurements run at once (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--official-ops", choices=["nada", "native"], default="nada",
                   help="their compiled CUDA ops on the CPU: nada = replaced by nada_core's functions (default); "
                        "native = their own op package's CPU branches (only the CUDA build is skipped)")
    p.add_argument("--official-reuse-memory", action="store_true",
                   help="run the official process with glibc's MALLOC_MMAP_MAX_=0 / MALLOC_TRIM_THRESHOLD_ (the "
                        "freed-memory reuse our trainer applies by itself): what remains is the model code's difference")
    p.add_argument("--check", action="store_true", help="only compare one step's loss on identical inputs")
    p.add_argument("--workdir", type=Path, default=None, help="folder for the random weights (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--setting", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        fn = {"prepare": worker_prepare, "time": worker_time, "check": worker_check}[args.worker]
        print(json.dumps(fn(args)))
        return 0

    with tempfile.TemporaryDirectory(prefix="nada_official_") as tmp:
        args.workdir = (args.workdir or Path(tmp)).resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
        _run_worker(args, "prepare")
        if args.check:
            res = _run_worker(args, "check")
            print(json.dumps(res, indent=2))
            return 0
        jobs = [(s, side) for s in args.settings for side in ("official", "ours")]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, args.parallel)) as pool:
            futures = {job: pool.submit(_run_worker, args, "time", side=job[1], setting=job[0]) for job in jobs}
            results = {job: f.result() for job, f in futures.items()}
    print(f"\nStyleGAN-NADA training step, {args.resolution} px config-f, batch {args.batch}, ViT-B/32 (random weights), "
          f"{args.threads} CPU thread(s) per process, torch {torch.__version__}; median of {args.steps} steps after "
          f"{args.warmup} warm-up; official ops: {args.official_ops}; official process reuses freed memory: "
          f"{'yes' if args.official_reuse_memory else 'no'}; ours: "
          f"{'yes' if all(r['reuses_freed_memory'] for (_, side), r in results.items() if side == 'ours') else 'no'} "
          "(as NadaTrainer.run)\n")
    print("| settings | official CPU s/step | ours CPU s/step | ratio | wall s/step official / ours "
          "| peak RSS official / ours |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"all": "all layers, no selection", "select": f"selection every step, k={args.k}"}
    for s in args.settings:
        o, u = results[(s, "official")], results[(s, "ours")]
        print(f"| {names[s]} | {o['cpu_s']:.2f} | {u['cpu_s']:.2f} | {o['cpu_s'] / u['cpu_s']:.2f}x | "
              f"{o['wall_s']:.2f} / {u['wall_s']:.2f} | {o['peak_rss_mib'] / 1024:.2f} / "
              f"{u['peak_rss_mib'] / 1024:.2f} GiB |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({f"{s}/{side}": r for (s, side), r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
