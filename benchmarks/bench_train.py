"""Seconds per training step and peak memory: our trainer vs the research code's work pattern.

Generators are config-f StyleGAN2 (512-d latents, 8 mapping layers, NVIDIA's channel rule) with
random weights; the guide is an open_clip ViT-B/32 with random weights (no download). The numbers
depend only on the architectures, not on the weights. Batch 2, as in the paper.

Variants per resolution:

- ``ours, select every step``: adaptive layer freezing re-run every step (``--layers K``);
- ``ours, --interval 10``: the follow-up's schedule, re-selecting every 10 steps;
- ``ours, all layers``: no selection pass (the paper's setting for texture changes);
- ``research-style``: a faithful re-implementation, with our modules, of the per-step work of
  the research code (``ZSSGAN.forward`` + ``train.py``): selection unfreezes *every* layer and
  back-propagates into all generator weights (gradients thrown away), runs CLIP's full forward
  (text tower included) on every selection, encodes frozen and trained images in two separate
  CLIP calls, trains whole layers (style affines included), draws random noise, and syncs every
  step to print the loss. Its modulated convolutions always run as per-sample grouped
  convolutions, as rosinality's do. As in the research code's current version, CLIP's weights do not
  require grad, and on CUDA CLIP runs in fp16 (what ``clip.load`` gives on a GPU).

Usage::

    python benchmarks/bench_train.py --device cuda --resolutions 256 1024 --steps 20
    python benchmarks/bench_train.py --device cpu --resolutions 64 --steps 2     # smoke test
    python benchmarks/bench_train.py --device cpu --resolutions 256 --steps 1 --warmup 0 --flops --skip-research
    bash benchmarks/gpu_sweep.sh      # the GPU sweep: bf16, channels-last, torch.compile on and off

``--flops`` counts the FLOPs of one extra step per variant with ``torch.utils.flop_counter``'s
formulas (generator forward, CLIP forward, backward), so a time can be set against the machine's peak.

Peak memory: ``torch.cuda.max_memory_allocated`` per variant on CUDA; on CPU the process's peak
resident set size (``resource.ru_maxrss``), which only grows, so later rows include earlier ones.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nada_core.cpu_memory import reuse_freed_memory  # noqa: E402
from nada_core.guidance.clip import ClipModel, Preprocess, preprocess_unit_images  # noqa: E402
from nada_core.guidance.directions import text_direction  # noqa: E402
from nada_core.models.stylegan2 import Generator, GeneratorConfig, ModulatedConv2d  # noqa: E402
from nada_core.training.trainer import NadaTrainer, TrainConfig  # noqa: E402


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def config_f_generator(resolution: int, device: torch.device, seed: int = 0) -> Generator:
    """Config-f StyleGAN2 with random weights (non-zero noise strengths so noise costs what it costs)."""
    from nada_core.models.random_init import random_generator

    cfg = GeneratorConfig(img_resolution=resolution, z_dim=512, w_dim=512, mapping_layers=8)
    return random_generator(cfg, seed, noise_strength=0.1, isolate_rng=False).to(device)


def random_vit_b32(device: torch.device) -> ClipModel:
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, device=device)
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), arch="ViT-B-32", source="random-weights",
                     preprocess=Preprocess(size=224), device=device)


# ----------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    # Every variant's steps reuse freed CPU memory, as NadaTrainer.run's do (nada_core.cpu_memory).
    with reuse_freed_memory(device):
        for _ in range(warmup):
            step()
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
    return (time.perf_counter() - t0) / steps


# ----------------------------------------------------------------------------------------------
# Our trainer
# ----------------------------------------------------------------------------------------------


class _FlopCount:
    """Counts matmul/convolution FLOPs with ``torch.utils.flop_counter``'s formulas, split into
    generator forward, CLIP forward and backward. (``FlopCounterMode`` itself tracks modules with
    backward hooks, which ``torch.autograd.grad`` in the selection pass does not support.)"""

    def __init__(self, clip_module: torch.nn.Module) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import flop_registry

        counter = self
        self.counts = {"generator": 0.0, "clip": 0.0, "backward": 0.0}
        self._in_clip = 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                out = func(*args, **kwargs)
                formula = flop_registry.get(func._overloadpacket)
                if formula is not None:
                    n = float(formula(*args, **kwargs, out_val=out))
                    if func._overloadpacket is torch.ops.aten.convolution_backward and int(args[9]) > 1:
                        n = _grouped_conv_backward_flops(args)
                    if torch._C._current_autograd_node() is not None:
                        counter.counts["backward"] += n
                    else:
                        counter.counts["clip" if counter._in_clip else "generator"] += n
                return out

        self.mode = Mode()
        self.clip_module = clip_module

    def __enter__(self):
        def enter(*_):
            self._in_clip += 1

        def leave(*_):
            self._in_clip -= 1

        self._hooks = [self.clip_module.register_forward_pre_hook(enter),
                       self.clip_module.register_forward_hook(leave)]
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        return False


def _grouped_conv_backward_flops(args) -> float:
    """FLOPs of ``aten.convolution_backward`` for a grouped convolution (per-sample modulated
    weights). torch's formula ignores groups and counts the weight gradient ``groups`` times over;
    each requested gradient costs what the forward convolution costs."""
    from torch.utils.flop_counter import conv_flop_count

    grad_out, x, w, transposed, mask = args[0], args[1], args[2], bool(args[7]), args[10]
    fwd = conv_flop_count(list(x.shape), list(w.shape), list(grad_out.shape), transposed=transposed)
    return float(fwd * (int(bool(mask[0])) + int(bool(mask[1]))))


def count_step_flops(step, clip_module: torch.nn.Module) -> dict[str, float]:
    """FLOPs of one call of ``step`` (matmuls and convolutions): ``generator`` (forward passes of the
    generators; the mapping network is shared), ``clip`` (CLIP forward passes), ``backward`` (all
    backward passes, selection included) and ``total``."""
    with _FlopCount(clip_module) as fc:
        step()
    out = dict(fc.counts)
    out["total"] = sum(out.values())
    return out


def _apply_switches(trainer, channels_last: bool, compile_synthesis: bool) -> None:
    """Optional speed switches of the GPU sweep, applied to a built trainer."""
    if channels_last:
        for G in (trainer.G_frozen, trainer.G_train):
            G.synthesis.to(memory_format=torch.channels_last)
    if compile_synthesis:
        for G in (trainer.G_frozen, trainer.G_train):
            G.synthesis.compile()


def bench_ours(G, clip, direction, device, steps, warmup, layers, interval, mixed_precision, *, channels_last=False,
               compile_synthesis=False, flops=False, **settings) -> tuple[float, float, dict | None]:
    """Seconds per step, peak memory and (``flops``) the FLOPs of one extra, untimed step."""
    cfg = TrainConfig(steps=steps + warmup + int(flops), batch=2, num_layers=layers, interval=interval,
                      preview_every=0, mixed_precision=mixed_precision, **settings)
    _reset_peak(device)
    trainer = NadaTrainer(G, clip, direction, cfg, device=device)
    _apply_switches(trainer, channels_last, compile_synthesis)
    sec = _time_steps(trainer.step, steps, warmup, device)
    peak = _peak_mib(device)
    counted = count_step_flops(trainer.step, getattr(clip.model, "visual", clip.model)) if flops else None
    del trainer
    return sec, peak, counted


# ----------------------------------------------------------------------------------------------
# The research code's per-step work, re-implemented with our modules (for timing only)
# ----------------------------------------------------------------------------------------------


class ResearchStyleStep:
    """One ``ZSSGAN.forward`` + ``loss.backward()`` + ``g_optim.step()`` of the research code.

    Keeps its work pattern, not its bugs' effects on results: what is timed is which passes run
    and which gradients get built.
    """

    def __init__(self, G: Generator, clip: ClipModel, direction, device: torch.device, k: int,
                 mixing: float = 0.9, lr: float = 0.002) -> None:
        import copy

        self.device, self.k, self.mixing = device, k, mixing
        self.G_frozen = copy.deepcopy(G).to(device).requires_grad_(False)
        self.G_train = copy.deepcopy(G).to(device)
        for m in list(self.G_frozen.modules()) + list(self.G_train.modules()):
            if isinstance(m, ModulatedConv2d):  # rosinality's modulated conv: always the grouped form
                m.grouped = True
        self.clip = clip
        # clip.load() on a GPU returns fp16 weights; the research code freezes them (requires_grad False).
        self.dtype = torch.float16 if device.type == "cuda" else torch.float32
        self.model = copy.deepcopy(clip.model).to(self.dtype).requires_grad_(False)
        self.pre = clip.preprocess
        self.tokens = clip.tokenizer([f"a {direction.target_text}"]).to(device)
        self.dT = direction.vector(clip.name).to(device)
        # Adam over every parameter of the trainable generator (lr scaled by the g_reg ratio 4/5).
        ratio = 4 / 5
        self.opt = torch.optim.Adam(self.G_train.parameters(), lr=lr * ratio, betas=(0.0, 0.99 ** ratio))
        self.num_ws, self.z_dim = G.num_ws, G.z_dim

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _encode(self, img: torch.Tensor) -> torch.Tensor:
        pixels = preprocess_unit_images((img + 1.0) * 0.5, self.pre).to(self.dtype)
        feats = self.model.encode_image(pixels).float()
        return feats / feats.clone().norm(dim=-1, keepdim=True)

    def _global_loss(self, img: torch.Tensor) -> torch.Tensor:
        # CLIP's full forward: image AND text towers on every call; logits / 100 = cosine.
        pixels = preprocess_unit_images((img + 1.0) * 0.5, self.pre).to(self.dtype)
        out = self.model(pixels, self.tokens)
        img_f, txt_f, scale = out[0].float(), out[1].float(), out[2].float()
        logits = scale * img_f @ txt_f.T
        return (1.0 - logits / 100.0).mean()

    def _select_layers(self) -> list[int]:
        self.G_train.requires_grad_(True)  # unfreeze_layers(): everything, weights get gradients
        z = torch.randn(8, self.z_dim, device=self.device)
        w0 = self.G_frozen.mapping(z)[:, :1].repeat(1, self.num_ws, 1)
        w = w0.detach().clone().requires_grad_(True)
        sgd = torch.optim.SGD([w], lr=0.01)
        img = self.G_train.synthesis(w, noise_mode="random")
        loss = self._global_loss(img)
        sgd.zero_grad()
        loss.backward()  # builds gradients for every generator weight (discarded later)
        sgd.step()
        scores = (w - w0).abs().mean(dim=-1).mean(dim=0)
        return torch.topk(scores[: self.num_ws - 1], self.k).indices.tolist()  # .cpu().numpy() sync

    def step(self) -> float:
        layers = self._select_layers()
        self.G_train.requires_grad_(False)
        for i in layers:  # whole layers (style affine included), as unfreeze_layers(layer) does
            self.G_train.synthesis.conv_for_w_index(i).requires_grad_(True)
        with torch.no_grad():
            b = 2
            z1 = torch.randn(b, self.z_dim, device=self.device)
            if torch.rand(()) < self.mixing:
                z2 = torch.randn(b, self.z_dim, device=self.device)
                cut = int(torch.randint(1, self.num_ws, ()))
                w = torch.cat([self.G_frozen.mapping(z1)[:, :cut], self.G_frozen.mapping(z2)[:, cut:]], dim=1)
            else:
                w = self.G_frozen.mapping(z1)
            frozen = self.G_frozen.synthesis(w, noise_mode="random")
        trained = self.G_train.synthesis(w, noise_mode="random")
        e_src = self._encode(frozen)  # two separate CLIP calls
        e_trg = self._encode(trained)
        d = e_trg - e_src
        d = d / d.clone().norm(dim=-1, keepdim=True)
        loss = (1.0 - F.cosine_similarity(d, self.dT[None], dim=-1)).mean()
        self.G_train.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())  # tqdm.write(f"Clip loss: {loss}") syncs every step


def bench_research(G, clip, direction, device, steps, warmup, layers) -> tuple[float, float]:
    """Seconds per step and peak memory of :class:`ResearchStyleStep`."""
    _reset_peak(device)
    with ResearchStyleStep(G, clip, direction, device, k=layers) as rs:
        sec = _time_steps(rs.step, steps, warmup, device)
        peak = _peak_mib(device)
    del rs
    return sec, peak


# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps (default: best available)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024], help="generator sizes (default 256 1024)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--layers", type=int, default=8, help="k for the adaptive-selection variants (default 8)")
    p.add_argument("--interval", type=int, default=10, help="interval of the scheduled variant (default 10)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast for our trainer on CUDA, as `nada train` does by default")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format for the synthesis networks")
    p.add_argument("--compile", action="store_true", help="torch.compile the synthesis networks")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing of the trained synthesis")
    p.add_argument("--select-chunk", type=int, default=0, help="codes per selection chunk (0 = the batch)")
    p.add_argument("--noise-mode", choices=("random", "const"), default="random")
    p.add_argument("--flops", action="store_true", help="count the FLOPs of one step per variant (untimed)")
    p.add_argument("--variants", nargs="+", default=["select", "interval", "all"],
                   choices=["select", "interval", "all"], help="which of our variants to run")
    p.add_argument("--skip-research", action="store_true", help="do not time the research-style step")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = p.parse_args(argv)

    from nada_core.devices import resolve_device

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    clip = random_vit_b32(device)
    direction = text_direction(clip, "photo", "pencil sketch", templates=True)
    mem_label = "peak CUDA MiB" if device.type == "cuda" else "peak RSS MiB (cumulative)"
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    switches = dict(channels_last=args.channels_last, compile_synthesis=args.compile, flops=args.flops,
                    checkpointing=args.checkpointing, select_chunk=args.select_chunk, noise_mode=args.noise_mode)
    amp = args.mixed_precision and device.type == "cuda"
    print(f"\nStyleGAN-NADA training step, batch 2, ViT-B/32 guide (random weights), {gpu}, torch {torch.__version__}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; bf16 {'on' if amp else 'off'}, channels-last "
          f"{'on' if args.channels_last else 'off'}, compile {'on' if args.compile else 'off'}, checkpointing "
          f"{'on' if args.checkpointing else 'off'}\n")
    print(f"| resolution | variant | s/step | {mem_label} | GFLOP/step: total (G fwd / CLIP fwd / bwd) "
          f"| speed-up vs research-style |")
    print("|---:|---|---:|---:|---:|---:|")
    results = []
    for res in args.resolutions:
        G = config_f_generator(res, device)
        k = min(args.layers, G.num_ws - 1)
        rows = []
        research = None
        if not args.skip_research:
            research = bench_research(G, clip, direction, device, args.steps, args.warmup, k)
            rows.append((f"research-style, select k={k} every step", (*research, None)))
        plan = {"select": (f"ours, select k={k} every step", k, 1),
                "interval": (f"ours, k={k}, --interval {args.interval}", k, args.interval),
                "all": ("ours, all layers (no selection)", "all", 1)}
        for key in args.variants:
            name, layers, interval = plan[key]
            rows.append((name, bench_ours(G, clip, direction, device, args.steps, args.warmup, layers, interval,
                                          args.mixed_precision, **switches)))
        for name, (sec, peak, fl) in rows:
            ratio = f"{research[0] / sec:.2f}x" if research is not None else "-"
            ftxt = (f"{fl['total'] / 1e9:,.0f} ({fl['generator'] / 1e9:,.0f} / {fl['clip'] / 1e9:,.0f} / "
                    f"{fl['backward'] / 1e9:,.0f})") if fl else "-"
            print(f"| {res} | {name} | {sec:.3f} | {peak:,.0f} | {ftxt} | {ratio} |", flush=True)
            results.append({"resolution": res, "variant": name, "seconds_per_step": sec, "peak_mib": peak,
                            "flops": fl, "bf16": amp, **{k: v for k, v in switches.items() if k != "flops"}})
        del G
        _reset_peak(device)
    if args.json:
        Path(args.json).write_text(__import__("json").dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
