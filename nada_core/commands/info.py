"""``nada info PATH``: what a generator file is and what is inside it."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "describe a generator file (format, resolution, W+ size, channels, parameters, metadata)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="generator file: rosinality .pt, NVIDIA .pkl (PyTorch or TensorFlow era), "
                                     "ComfyUI-NADA or dfl/ComfyUI-StyleGan .safetensors")
    parser.add_argument("--no-ema", action="store_true",
                        help="describe the non-EMA training weights ('g' / 'G') instead of the EMA ones")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from ..formats.checkpoints import FORMAT_DESCRIPTIONS, detect_format, load_generator, summarize_generator

    fmt = detect_format(args.path)
    G = load_generator(args.path, device="cpu", ema=not args.no_ema)
    info = summarize_generator(G)
    fmt = info.get("format") or fmt  # pickles: TF-era or PyTorch is known only once (safely) unpickled
    info["path"] = str(args.path)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    meta = dict(info["metadata"])
    channels = "  ".join(f"{r}:{c}" for r, c in info["channels"].items())
    lines = [
        ("file", info["path"]),
        ("format", f"{fmt} ({FORMAT_DESCRIPTIONS.get(fmt, '?')})"),
        ("architecture", _architecture_line(info)),
        ("weights", _weights_line(meta)),
        ("sha256", info["source_sha256"]),
        ("resolution", f"{info['resolution']} x {info['resolution']} px"),
        ("W+ entries", f"{info['num_ws']} (num_ws), w_dim {info['w_dim']}, z_dim {info['z_dim']}"),
        ("mapping", f"{info['mapping_layers']} layers"),
        ("classes", _classes_line(info)),
        ("channels", channels),
        ("parameters", f"{info['parameters']:,}"),
        ("conv clamp", "none" if info["conv_clamp"] is None else f"+-{info['conv_clamp']:g}"),
        ("w_avg", info["w_avg_origin"] or "?"),
    ]
    if meta.get("source_sha256") and meta.get("source_sha256") != info["source_sha256"]:
        src_fmt = meta.get("source_format") or "?"
        lines.append(("adapted from", f"{src_fmt} file with sha256 {meta['source_sha256']}"))
    provenance = meta.get("provenance") or {}
    lines.append(("provenance", json.dumps(provenance, sort_keys=True) if provenance else "(none)"))
    extra = {k: v for k, v in meta.items() if k not in
             ("format", "w_avg_origin", "source_sha256", "source_format", "provenance", "ema", "network",
                           "source_file")}
    if extra:
        lines.append(("notes", json.dumps(extra, sort_keys=True, default=str)))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 2}}{value}")
    return 0


def _classes_line(info: dict) -> str:
    n = info.get("classes") or 0
    if not n:
        return "none (unconditional)"
    how = {"normalized": "normalised embedding, NVIDIA", "joint": "label concat, TF StyleGAN2"}
    return (f"{n} (class-conditional, {how.get(info.get('class_embedding'), '?')}); pick one with --class 0..{n - 1}, "
            f"w_avg is the all-class mean")


def _architecture_line(info: dict) -> str:
    sg3 = info.get("stylegan3")
    if not sg3:
        return "StyleGAN2"
    return (f"StyleGAN3-{sg3['config']}: {sg3['num_layers']} layers ({sg3['num_critical']} critically sampled), "
            f"{sg3['conv_kernel']}x{sg3['conv_kernel']} convs, margin {sg3['margin_size']} px")


def _weights_line(meta: dict) -> str:
    network = meta.get("network")
    if network is None:
        return "single set of weights"
    if network == "decoder":  # the generator inside an e4e / pSp / ReStyle encoder checkpoint
        return "'decoder' of an e4e / pSp / ReStyle encoder checkpoint (use the file with --encoder too)"
    ema = meta.get("ema")
    kind = "EMA" if ema else "training (non-EMA)"
    return f"'{network}' ({kind})" if not network.startswith("(") else network
