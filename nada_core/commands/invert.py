"""``nada invert``: project photos into a generator's latent space.

Writes to ``--out DIR``: ``latents.safetensors`` (render it with any generator adapted from the
same source: ``nada sample --latents``, ``nada interpolate --latents``), ``reconstruction_<name>.png``
per image, ``comparison.png`` (one row per image: prepared input | reconstruction) and
``inversion.json`` (PSNR/SSIM per image, crop boxes, settings). Ctrl-C stops the optimisation
and still writes the best result so far (exit code 130); a second Ctrl-C aborts.

``--encoder PATH`` (an e4e / pSp / ReStyle checkpoint) encodes each photo first: with ``--steps 0``
the encoder's codes are the result (seconds instead of minutes); otherwise they start the
optimisation instead of ``w_avg``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from .common import add_device_argument

NAME = "invert"
HELP = "Invert photos into a generator's latent space (W or W+) and save the latents."


# Settings of nada_core.settings.INVERT offered as flags (default, range and help from the table).
_INVERT_FLAGS = ("space", "steps", "lr", "optimize_noise", "fit", "pixel_weight", "ssim_weight", "clip_weight",
                 "seed", "preview_every", "class_index")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help="the source generator (.pt, .pkl or .safetensors)")
    p.add_argument("--image", nargs="+", required=True, metavar="FILE",
                   help="image file(s) or folder(s) to invert (PNG, JPEG, WebP, TIFF...; any size: centre-cropped and resized)")
    p.add_argument("--clip", action="append", metavar="SPEC",
                   help="optional CLIP model for a semantic similarity term, e.g. "
                        "'ViT-B-32:models/vit-b-32.safetensors'; repeat for several")
    from ..settings import INVERT

    INVERT.add_flags(p, _INVERT_FLAGS)
    p.add_argument("--encoder", metavar="PATH",
                   help="e4e / pSp / ReStyle encoder checkpoint (.pt, e.g. e4e_ffhq_encode.pt) for the generator's "
                        "source (FFHQ): its codes are the result with --steps 0, otherwise they start the "
                        "optimisation. Faces must be FFHQ-aligned (see README)")
    from ..settings import ENCODE

    ENCODE.add_flags(p, ("encoder_iters",))
    p.add_argument("--batch", type=int, default=4, help="images inverted together (default 4)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(p)


@contextlib.contextmanager
def stop_on_first_sigint() -> Iterator[list]:
    """First Ctrl-C sets a flag (checked between steps); the second raises KeyboardInterrupt."""
    flag: list = []
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # pragma: no cover - signals unavailable
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _safe_stem(name: str, index: int, used: set) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or f"image_{index}"
    candidate, k = stem, 1
    while candidate in used:
        k += 1
        candidate = f"{stem}_{k}"
    used.add(candidate)
    return candidate


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}


def _image_files(items: list[str]) -> list[Path]:
    """Expand folders given to --image into their image files (sorted by name)."""
    from ..errors import InputError

    files: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise InputError(f"folder {p} has no images (.png, .jpg, .webp, .tif, .bmp)")
            files.extend(found)
        else:
            files.append(p)
    return files


def run(args: argparse.Namespace) -> int:
    import torch

    from ..atomic import check_output
    from ..formats.checkpoints import load_generator
    from ..devices import resolve_device
    from ..errors import InputError
    from ..media.image_prep import prepare_images
    from ..media.images import from_unit, make_grid, save_png
    from ..editing.invert import InvertConfig, invert
    from ..settings import ENCODE

    # --steps 0 means "the encoder's codes as they are"; without an encoder it stays an error.
    encoder_only = args.encoder is not None and args.steps == 0
    # Only the flags given; InvertConfig checks them (and fills the rest) from the table.
    cfg = InvertConfig(**{name: getattr(args, name) for name in _INVERT_FLAGS
                          if getattr(args, name) is not None and not (encoder_only and name == "steps")})
    iters = None if args.encoder_iters is None else ENCODE.check("encoder_iters", args.encoder_iters)
    if args.batch < 1:
        raise InputError("--batch must be at least 1")
    if iters is not None and args.encoder is None:
        raise InputError("--encoder-iters needs --encoder (a ReStyle checkpoint)")
    out = check_output(Path(args.out).expanduser(), kind="dir", what="--out")
    inputs = [args.generator, *args.image, *([args.encoder] if args.encoder else [])]
    check_output(out / "latents.safetensors", inputs, suffixes=(".safetensors",), what="--out")
    device = resolve_device(args.device)
    G = load_generator(args.generator, device=device)
    encoded = None
    if args.encoder is not None:
        encoded = _encode(args.encoder, _image_files(args.image), G, device, cfg.fit, iters, args.quiet)
    clip = None
    if args.clip and not encoder_only:
        from ..guidance.clip import load_clip_ensemble

        clip = load_clip_ensemble([(s, 1.0) for s in args.clip], device=device)
    prepared = prepare_images(_image_files(args.image), G.img_resolution, fit=cfg.fit)
    out.mkdir(parents=True, exist_ok=True)
    if encoder_only:
        return _write_outputs(args, out, cfg, device, [_encoder_result(G, encoded, prepared)], len(prepared), 0,
                              encoded)

    n = len(prepared)
    batches = [list(range(s, min(n, s + args.batch))) for s in range(0, n, args.batch)]
    results = []
    interrupted = False
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps * len(batches), desc="nada invert", unit="step", dynamic_ncols=True)
    try:
        with stop_on_first_sigint() as stop_flag:
            for idx in batches:
                if stop_flag:
                    break
                part = type(prepared)(prepared.images[idx], [prepared.crop_boxes[i] for i in idx],
                                      [prepared.original_sizes[i] for i in idx], [prepared.names[i] for i in idx])

                def on_progress(step, total, losses, preview, first=idx[0]):
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items() if k != "lr"}, refresh=False)
                    if preview is not None and cfg.preview_every:
                        pair = torch.stack([from_unit(part.images), preview], dim=1).flatten(0, 1)
                        save_png(make_grid(pair, ncols=2, pad=2), out / f"progress_{first:03d}.png")

                init = encoded.latents.select(idx) if encoded is not None else None
                res = invert(G, part, cfg, clip, init=init, on_progress=on_progress,
                             should_stop=lambda: bool(stop_flag))
                results.append(res)
                interrupted = interrupted or res.interrupted
    finally:
        if bar is not None:
            bar.close()
    if not results:
        raise InputError("stopped before any image was inverted; nothing written")
    interrupted = interrupted or sum(len(r.names) for r in results) < n
    return _write_outputs(args, out, cfg, device, results, n, cfg.steps, encoded, interrupted)


def _encode(path: str, files: list, G, device, fit: str, iters: int | None, quiet: bool):
    """Encoder codes for every image (one by one, with a progress bar)."""
    from ..encoders import load_encoder
    from ..encoders.apply import encode_images

    encoder = load_encoder(path, device=device)
    encoder.check_generator(G, f"the generator ({G.img_resolution} px)")
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="nada encode", unit="image", dynamic_ncols=True)
    try:
        return encode_images(encoder, files, G, fit=fit, n_iters=iters if encoder.iterative else None,
                             on_image=(lambda done, total: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _encoder_result(G, encoded, prepared):
    """An :class:`InversionResult` for the encoder's codes as they are (``--steps 0``)."""
    import torch

    from ..editing.invert import InversionResult, psnr_per_image, ssim_per_image
    from ..editing.latents import render

    recon = render(G, encoded.latents)
    unit = ((recon + 1.0) * 0.5).clamp(0.0, 1.0)
    with torch.no_grad():
        ssim = [float(v) for v in ssim_per_image(unit, prepared.images, 11).tolist()]
    return InversionResult(encoded.latents, recon, prepared.images.clone(), psnr_per_image(unit, prepared.images),
                           ssim, list(prepared.crop_boxes), list(prepared.names), 0, False, {})


def _write_outputs(args, out, cfg, device, results, n, steps, encoded, interrupted=False) -> int:
    import torch

    from ..atomic import atomic_write_text
    from ..editing.latents import Latents, save_latents
    from ..media.images import from_unit, make_grid, save_png

    latents = Latents.concat([r.latents for r in results])
    latents.provenance = {"source": "inversion" if steps else "encoder", "generator": Path(args.generator).name,
                          "images": [nm for r in results for nm in r.names], "space": cfg.space if steps else "w+",
                          "steps": [r.steps_done for r in results], "optimize_noise": cfg.optimize_noise,
                          "crop_boxes": [list(b) for r in results for b in r.crop_boxes],
                          "psnr": [p for r in results for p in r.psnr], "ssim": [s for r in results for s in r.ssim],
                          "interrupted": interrupted}
    if encoded is not None:
        latents.provenance.update({k: encoded.latents.provenance[k]
                                   for k in ("encoder", "encoder_type", "encoder_sha256", "iterations")})
    save_latents(latents, out / "latents.safetensors")
    recon = torch.cat([r.reconstructions for r in results])
    targets = torch.cat([r.targets for r in results])
    used: set = set()
    report = []
    for i, (name, p, s, box) in enumerate(zip(latents.provenance["images"], latents.provenance["psnr"],
                                               latents.provenance["ssim"], latents.provenance["crop_boxes"])):
        stem = _safe_stem(name, i, used)
        save_png(recon[i], out / f"reconstruction_{stem}.png")
        report.append({"image": name, "reconstruction": f"reconstruction_{stem}.png", "psnr_db": round(p, 3),
                       "ssim": round(s, 5), "crop_box": box})
    pair = torch.stack([from_unit(targets), recon.clamp(-1, 1)], dim=1).flatten(0, 1)
    save_png(make_grid(pair, ncols=2, pad=2, pad_value=1.0), out / "comparison.png")
    summary = {"generator": str(args.generator), "space": cfg.space if steps else "w+", "steps": steps,
               "encoder": str(args.encoder) if args.encoder else None,
               "steps_done": [r.steps_done for r in results], "interrupted": interrupted,
               "optimize_noise": cfg.optimize_noise, "clip": args.clip or [], "device": str(device),
               "images": report, "settings": {k: v for k, v in vars(cfg).items()}}
    atomic_write_text(out / "inversion.json", json.dumps(summary, indent=2, default=list))

    for row in report:
        print(f"{row['image']}: PSNR {row['psnr_db']:.2f} dB, SSIM {row['ssim']:.4f}")
    print(f"wrote {out / 'latents.safetensors'} ({len(latents)} codes, {cfg.space if steps else 'w+'}) and "
          f"comparison.png")
    if interrupted:
        print(f"interrupted: saved the best result so far ({len(latents)} of {n} images)", file=sys.stderr)
        return 130
    return 0
