"""Seconds per NADA training step, StyleGAN3-T / -R vs StyleGAN2 at the same resolution.

Random weights (speed depends only on the architectures). StyleGAN2: config-f channel rule and
8 mapping layers; StyleGAN3: NVIDIA's configs (-T: 3x3 convs, channel_base 32768; -R: 1x1 convs,
doubled channels, radial filters; 14 layers, 2 mapping layers). The guide is a small random
open_clip ViT (the CLIP cost is the same for every generator, so it is kept small here to show the
generator's share). Also times one synthesis forward + backward alone (batch 2), which is the part
that differs between architectures.

Usage::

    python benchmarks/bench_sg3.py --device cpu --resolution 64 --steps 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nada_core.guidance.directions import text_direction  # noqa: E402
from nada_core.models.random_init import random_generator  # noqa: E402
from nada_core.models.stylegan2 import GeneratorConfig  # noqa: E402
from nada_core.models.stylegan3 import StyleGAN3Config  # noqa: E402
from nada_core.training.trainer import NadaTrainer, TrainConfig  # noqa: E402


def generators(res: int, width_scale: float) -> dict:
    base, cmax = int(32768 * width_scale), int(512 * width_scale)
    sg2 = GeneratorConfig(img_resolution=res, z_dim=512, w_dim=512, mapping_layers=8,
                          channels=tuple((r, min(base // r, cmax)) for r in (2**i for i in range(2, res.bit_length()))))
    sg3t = StyleGAN3Config(img_resolution=res, channel_base=base, channel_max=cmax)
    sg3r = StyleGAN3Config(img_resolution=res, channel_base=2 * base, channel_max=2 * cmax, conv_kernel=1,
                           use_radial_filters=True)
    return {"StyleGAN2 (config-f rule)": sg2, "StyleGAN3-T": sg3t, "StyleGAN3-R": sg3r}


def small_clip(device):
    import open_clip

    from nada_core.guidance.clip import ClipModel, Preprocess

    torch.manual_seed(0)
    cfg = dict(embed_dim=128, vision_cfg=dict(image_size=64, layers=4, width=128, patch_size=16),
               text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=2))
    model = open_clip.CLIP(**cfg).to(device).eval()
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), arch="bench", source="random-weights",
                     preprocess=Preprocess(size=64), device=device)


def time_it(fn, steps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--width-scale", type=float, default=1.0, help="scale every channel count (default 1)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--layers", default="all", help="layers trained per step (default all)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    clip = small_clip(device)
    direction = text_direction(clip, "photo", "sketch", templates=False)
    print(f"| generator ({args.resolution} px) | parameters | synthesis fwd+bwd s | NADA step s |")
    print("|---|---:|---:|---:|")
    for name, cfg in generators(args.resolution, args.width_scale).items():
        G = random_generator(cfg, 0).to(device)
        ws = G.mapping(torch.randn(2, G.z_dim, device=device)).detach()
        G.requires_grad_(True)

        def fwd_bwd():
            G.synthesis(ws).square().mean().backward()

        syn = time_it(fwd_bwd, args.steps)
        G.requires_grad_(False)
        layers = args.layers if args.layers == "all" else int(args.layers)
        tr = NadaTrainer(G, clip, direction, TrainConfig(steps=args.steps + 1, batch=2, num_layers=layers,
                                                         preview_every=0), device)
        step = time_it(tr.step, args.steps)
        print(f"| {name} | {G.num_parameters():,} | {syn:.2f} | {step:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
