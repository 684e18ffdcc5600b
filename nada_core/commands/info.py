"""``nada info PATH``: what a generator file is and what is inside it."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "describe a generator or domain file (format, resolution, W+ size, channels, parameters, metadata)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="generator file (rosinality .pt, NVIDIA .pkl of the PyTorch or TensorFlow era, "
                                     "ComfyUI-NADA or dfl/ComfyUI-StyleGan .safetensors) or a domain .safetensors")
    parser.add_argument("--no-ema", action="store_true",
                        help="describe the non-EMA training weights ('g' / 'G') instead of the EMA ones")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from ..formats.detect import FORMAT_DESCRIPTIONS, detect_format

    # Torch-free: a missing, empty or non-model file is refused before torch is imported (~2 s, ~600 MB).
    fmt = detect_format(args.path)
    from ..domains.files import is_domain_file
    from ..formats.checkpoints import load_generator, summarize_generator

    if is_domain_file(args.path):
        return _domain_info(args)
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


def _domain_info(args: argparse.Namespace) -> int:
    """``nada info`` of a compact domain file."""
    import os

    from ..domains import load_domain
    from ..domains.domain import provenance_facts

    d = load_domain(args.path)
    info = d.summary()
    info["path"] = str(args.path)
    info["bytes"] = os.path.getsize(args.path)
    info["layer_table"] = [layer.to_dict() for layer in d.layers]
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    facts = provenance_facts(d.metadata)  # the file's own JSON: every field type-checked
    source, target, direction = facts["source"], facts["target"], facts["direction"]
    what = (f"{source!r} -> {target!r}" if target else json.dumps(direction, sort_keys=True) if direction
            else "(unknown)")
    kinds = {"domain": "domain modulation s * (1 + d) (HyperDomainNet)",
             "stylespace": "StyleSpace offsets s + delta (StyleDomain)"}
    convs = sum(1 for layer in d.layers if layer.kind == "conv")
    lines = [
        ("file", info["path"]),
        ("format", f"ComfyUI-NADA domain ({info['bytes']:,} bytes)"),
        ("kind", f"{d.kind}: {kinds[d.kind]}"),
        ("trained on", f"generator lineage {d.source_sha256 or '(unknown)'}"),
        ("resolution", f"{info['resolution']} px" if info["resolution"] else "?"),
        ("layers", f"{len(d.layers)} ({convs} convs, {len(d.layers) - convs} toRGBs), W+ entries "
                   f"{info['w_indices'][0]}-{info['w_indices'][-1]}"),
        ("values", f"{info['values']:,} (norm {info['norm']:.4g})"),
        ("direction", what),
        ("clip", ", ".join(f"{name} x{weight}" for name, weight in facts["clip_models"]) or "?"),
        ("steps", str(facts["steps"] if facts["steps"] is not None else "?")),
    ]
    for key, (before, after) in facts["metrics"].items():
        lines.append((key.replace("_", " "), f"{before:.4f} -> {after:.4f}"))
    settings = facts["settings"]
    if settings:
        lines.append(("settings", json.dumps(settings, sort_keys=True)))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key + ':':<{width + 2}}{value}")
    return 0

