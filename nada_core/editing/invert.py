"""Project real images into the latent space of a generator (GAN inversion by optimisation).

Because NADA's adapted generators share their source's latent space, a photo inverted into the
source generator can then be rendered in every adapted domain (paper Fig. 8): invert once with
``G_frozen``, :func:`nada_core.editing.latents.render` with each ``G_train``.

The optimiser follows the idea of the StyleGAN2 projector: start every image at the mean latent
``w_avg``; Adam with a learning-rate ramp (short linear warm-up, cosine ramp-down at the end);
Gaussian noise added to the codes early on and ramped to zero (explores before it settles);
optionally the per-pixel noise maps are optimised too, with a multi-scale autocorrelation penalty
that stops them from painting the image themselves, and renormalised after each step.

The objective needs no downloads: a multi-scale pixel loss (L1 or L2 on the image and on 2x, 4x
... downsampled copies, which weights colour and layout over fine texture), an SSIM loss
(structure), and, when a CLIP model is given, ``1 - cos`` between CLIP image embeddings of the
target and the reconstruction (semantic similarity; needs a CLIP that knows real photos).

Codes are optimised in units of the W distribution's spread, ``w = w_avg + w_std * (shared +
per_layer)``, so one learning rate suits every generator. ``shared`` moves all layers together
(W); in W+ the ``per_layer`` offsets are unlocked after a warm-up and move more slowly, which
keeps W+ codes near the W manifold (they render better in adapted generators) and avoids the
poor local minima a free W+ search from ``w_avg`` falls into. A batch is inverted as one optimisation whose loss is
the sum of independent per-image losses: each image gets its own code, noise maps, random draws
and best-so-far tracking, and the result for an image does not depend on its batch mates.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F

from ..cpu_memory import reuse_freed_memory
from ..errors import InputError
from ..settings import INVERT
from ..media.image_prep import Box, FitMode, Layout, PreparedImages, prepare_images
from .latents import Latents, generator_lineage, synthesize

_D = INVERT.defaults()

ProgressFn = Callable[[int, int, dict, "torch.Tensor | None"], None]


@dataclasses.dataclass(frozen=True)
class InvertConfig:
    """Settings of one inversion (immutable: ``dataclasses.replace(cfg, steps=...)`` makes a changed copy,
    checked again as it is built).

    ``space``: ``"w"`` (one code per image, broadcast to every layer: most editable) or ``"w+"``
    (one code per layer: closest reconstructions). ``steps``: optimisation steps. ``lr``: peak
    Adam learning rate in units of the W spread. ``lr_rampup``/``lr_rampdown``: fractions of the
    run spent warming up / cooling down (cosine). ``w_noise``: initial code noise (in W spreads),
    ramped to zero over the first ``w_noise_ramp`` fraction of the run (quadratically).
    ``wplus_warmup``: in W+, the fraction of the run during which all layers share one code
    before each layer may move on its own (W+ straight from ``w_avg`` tends to stall);
    ``wplus_lr_scale``: learning-rate factor of the per-layer offsets (small keeps W+ codes
    close to W, where they transfer best to adapted generators).
    ``optimize_noise``: also fit the per-pixel noise maps (sharper detail, less editable);
    ``noise_reg_weight``: weight of their autocorrelation penalty; ``noise_lr_scale``: their
    learning-rate factor (large steps let the noise paint the image). Loss weights: ``pixel_weight``
    (``pixel_loss`` ``"l1"`` or ``"l2"`` averaged over the downsampling factors ``pixel_scales``),
    ``ssim_weight`` (window ``ssim_window``, shrunk for tiny images), ``clip_weight`` (used only
    when a CLIP model is given). ``w_avg_samples``: z samples used to measure ``w_avg`` and the
    W spread (0 = use the generator's stored ``w_avg`` and a spread of 1). ``seed``: random
    draws (code noise); image ``i`` uses ``seed + i``. ``fit``: how images are brought to the
    generator's square (see :mod:`nada_core.media.image_prep`). ``preview_every``: pass the current
    reconstructions to ``on_progress`` every this many steps (0 = never; the last step always).
    """

    # Defaults come from the settings table (written once there).
    space: Literal["w", "w+"] = _D["space"]
    steps: int = _D["steps"]
    lr: float = _D["lr"]
    lr_rampup: float = _D["lr_rampup"]
    lr_rampdown: float = _D["lr_rampdown"]
    w_noise: float = _D["w_noise"]
    w_noise_ramp: float = _D["w_noise_ramp"]
    wplus_warmup: float = _D["wplus_warmup"]
    wplus_lr_scale: float = _D["wplus_lr_scale"]
    optimize_noise: bool = _D["optimize_noise"]
    noise_reg_weight: float = _D["noise_reg_weight"]
    noise_lr_scale: float = _D["noise_lr_scale"]
    pixel_weight: float = _D["pixel_weight"]
    pixel_loss: Literal["l1", "l2"] = _D["pixel_loss"]
    pixel_scales: tuple[int, ...] = _D["pixel_scales"]
    ssim_weight: float = _D["ssim_weight"]
    ssim_window: int = _D["ssim_window"]
    clip_weight: float = _D["clip_weight"]
    w_avg_samples: int = _D["w_avg_samples"]
    seed: int = _D["seed"]
    fit: FitMode = _D["fit"]
    preview_every: int = _D["preview_every"]
    class_index: int = _D["class_index"]  # class of a conditional generator (-1 = none)

    def __post_init__(self) -> None:
        """Check every field against :data:`nada_core.settings.INVERT` (one :class:`InputError` line
        naming the setting and its range) and store its normalised value. Frozen, so a config that
        passed here stays valid: :func:`invert` needs no second check."""
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, INVERT.check(f.name, getattr(self, f.name)))
        if self.pixel_weight == 0 and self.ssim_weight == 0 and self.clip_weight == 0:
            raise InputError("all loss weights are zero; give pixel_weight, ssim_weight or clip_weight a positive value")


@dataclasses.dataclass
class InversionResult:
    """What an inversion found.

    ``latents``: :class:`Latents` with ``ws [N, num_ws, w_dim]`` (W results broadcast), ``space``,
    the generator's lineage and, with ``optimize_noise``, the per-image noise maps.
    ``reconstructions``: ``[N, 3, R, R]`` in [-1, 1] (CPU), rendered from ``latents``.
    ``targets``: the prepared inputs ``[N, 3, R, R]`` in [0, 1] (CPU).
    ``psnr`` (dB, on [0, 1] images, capped at 100) and ``ssim`` per image; ``crop_boxes`` and
    ``names`` per image; ``steps_done``; ``interrupted`` when ``should_stop`` ended it early
    (the result is then the best found so far); ``final_losses`` (means over images).
    """

    latents: Latents
    reconstructions: torch.Tensor
    targets: torch.Tensor
    psnr: list[float]
    ssim: list[float]
    crop_boxes: list[Box]
    names: list[str]
    steps_done: int
    interrupted: bool
    final_losses: dict[str, float]

    @property
    def space(self) -> str:
        return self.latents.space


# ----------------------------------------------------------------------------------------------
# Schedules and losses (public so they can be tested and reused)
# ----------------------------------------------------------------------------------------------


def lr_schedule(step: int, total: int, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Learning-rate factor in [0, 1] for ``step`` (0-based) of ``total``: linear warm-up over the
    first ``rampup`` fraction, cosine ramp-down over the last ``rampdown`` fraction, 1 between."""
    t = step / total
    factor = 1.0
    if rampdown > 0:
        down = min(1.0, (1.0 - t) / rampdown)
        factor = 0.5 - 0.5 * math.cos(down * math.pi)
    if rampup > 0:
        factor *= min(1.0, (step + 1) / (total * rampup))
    return factor


def w_noise_scale(step: int, total: int, initial: float, ramp: float) -> float:
    """Code-noise strength at ``step``: ``initial * max(0, 1 - t / ramp) ** 2`` with ``t = step / total``."""
    if ramp <= 0 or initial <= 0:
        return 0.0
    return initial * max(0.0, 1.0 - (step / total) / ramp) ** 2


def multiscale_pixel_loss(x: torch.Tensor, y: torch.Tensor, scales=(1, 2, 4), kind: str = "l1") -> torch.Tensor:
    """Per-image pixel distance ``[N]`` of ``[N, C, H, W]`` images averaged over downsampling factors.

    A factor ``s`` compares ``s x s`` block means (area downsampling); factors leaving fewer than
    2 px are skipped (the full-resolution term always counts).
    """
    terms = []
    for s in scales:
        s = int(s)
        if s > 1 and x.shape[-1] // s < 2:
            continue
        xs = F.avg_pool2d(x, s) if s > 1 else x
        ys = F.avg_pool2d(y, s) if s > 1 else y
        d = xs - ys
        terms.append((d.abs() if kind == "l1" else d.square()).mean(dim=(1, 2, 3)))
    return torch.stack(terms).mean(dim=0)


def clamp_aware(unit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Generator output in unit scale, with overshoot hidden where the target is saturated too.

    Saved images are clamped to [0, 1], so a pixel above 1 where the target is 1 (or below 0
    where it is 0) already looks right: comparing the raw value would chase an invisible error.
    Elsewhere the raw (unclamped) value is kept, so gradients still pull stray pixels back in.
    """
    hidden = ((target >= 1.0) & (unit > 1.0)) | ((target <= 0.0) & (unit < 0.0))
    return torch.where(hidden, target, unit)


def ssim_window_for(resolution: int, window: int = 11) -> int:
    """Largest odd SSIM window <= ``window`` that fits the image (at least 3)."""
    w = min(int(window), resolution if resolution % 2 else resolution - 1)
    w = w if w % 2 else w - 1
    return max(3, w)


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Mean SSIM ``[N]`` of images ``[N, C, H, W]`` in [0, 1] (kornia, Gaussian window)."""
    import kornia

    win = ssim_window_for(x.shape[-1], window)
    return kornia.metrics.ssim(x, y, win, max_val=1.0).mean(dim=(1, 2, 3))


def psnr_per_image(x: torch.Tensor, y: torch.Tensor, cap: float = 100.0) -> list[float]:
    """PSNR in dB of ``[N, C, H, W]`` images in [0, 1]; identical images give ``cap``."""
    mse = (x.double() - y.double()).square().mean(dim=(1, 2, 3))
    return [min(cap, 10.0 * math.log10(1.0 / m)) if m > 0 else cap for m in mse.tolist()]


def noise_regularization(noise: list[torch.Tensor]) -> torch.Tensor:
    """Per-image penalty ``[N]``: squared autocorrelation (one-pixel shifts in x and y) of each
    noise map ``[N, 1, r, r]``, repeated on 2x average-pooled copies down to 8 px."""
    total = noise[0].new_zeros(noise[0].shape[0])
    for n in noise:
        while True:
            total = total + (n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return total


def _normalize_noise_(noise: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for n in noise:
            n -= n.mean(dim=(1, 2, 3), keepdim=True)
            n *= n.square().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12).rsqrt()


def w_statistics(G: Any, num_samples: int = 10_000, seed: int = 123, batch: int = 2000,
                 class_index: int | None = None) -> tuple[torch.Tensor, float]:
    """Mean ``[w_dim]`` and spread (RMS per-dimension std, a float) of ``G.mapping(z)`` over
    ``num_samples`` z from a fixed seed (of class ``class_index`` for a conditional generator);
    ``num_samples == 0`` returns ``(G.w_avg, 1.0)`` (a conditional model's all-class mean)."""
    from ..models.conditioning import class_one_hot

    c = class_one_hot(getattr(G, "c_dim", 0), class_index, 1, G.w_avg.device)
    if num_samples <= 0:
        return G.w_avg.detach().float().clone(), 1.0
    gen = torch.Generator().manual_seed(seed)
    dev = G.w_avg.device
    samples = []
    with torch.no_grad():
        for start in range(0, num_samples, batch):
            n = min(batch, num_samples - start)
            z = torch.randn(n, G.z_dim, generator=gen).to(dev)
            samples.append(G.mapping(z, c)[:, 0].double())
    w = torch.cat(samples)
    mean = w.mean(dim=0)
    spread = float((w - mean).square().mean().sqrt())
    return mean.float(), spread if spread > 0 else 1.0


# ----------------------------------------------------------------------------------------------
# The optimisation
# ----------------------------------------------------------------------------------------------


def _has_inference_tensors(module: torch.nn.Module) -> bool:
    return any(t.is_inference() for t in list(module.parameters()) + list(module.buffers()))


def _autograd_ready_clip(model: Any) -> Any:
    """``model`` itself, or a copy whose tensors autograd can use (models loaded under inference mode)."""
    import copy

    module = getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module) or not _has_inference_tensors(module):
        return model
    twin = copy.copy(model)
    twin.model = copy.deepcopy(module)  # called with inference mode off: normal tensors
    return twin


def _clip_terms(clip: Any) -> list[tuple[Callable[[torch.Tensor], torch.Tensor], float]]:
    """``[(encode_image, weight), ...]`` for a ClipModel or a ClipEnsemble; weights sum to 1."""
    members = list(getattr(clip, "members", None) or [(clip, 1.0)])
    for m, _ in members:
        if not hasattr(m, "encode_image"):
            raise InputError(f"the CLIP model given ({type(m).__name__}) has no encode_image; pass a ClipModel from load_clip")
    total = sum(float(w) for _, w in members)
    if total <= 0:
        raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
    return [(_autograd_ready_clip(m).encode_image, float(w) / total) for m, w in members]


def invert(G: Any, images: Any, config: InvertConfig | None = None, clip: Any = None, *,
           init: Latents | None = None, layout: Layout = "auto",
           on_progress: ProgressFn | None = None,
           should_stop: Callable[[], bool] | None = None) -> InversionResult:
    """Find latents whose renders match ``images``.

    ``G``: the (source) generator; not modified (its ``requires_grad`` flags are restored; when it
    holds inference-mode tensors a private copy is used). ``images``: paths, PIL images, tensors
    ``[3, H, W]``/``[N, C, H, W]`` in [0, 1], ComfyUI ``[B, H, W, C]``, numpy arrays, a list of
    these, or :class:`PreparedImages`; converted and fitted to ``G``'s resolution. ``clip``: a
    CLIP model with ``encode_image([N, 3, H, W] in [-1, 1]) -> [N, D]`` (normalised,
    differentiable), used with ``config.clip_weight``. ``init``: start from these latents instead of
    ``w_avg`` (one per image, or one for all). ``on_progress(step, total, losses, preview)`` after
    each step (``preview``: ``[N, 3, R, R]`` in [-1, 1] or None); ``should_stop()`` before each
    step: True ends the run with the best codes so far and ``interrupted=True``.

    Works under ``torch.inference_mode()`` (as in ComfyUI): gradients are switched on inside.
    """
    cfg = config or InvertConfig()
    if not isinstance(cfg, InvertConfig):
        raise InputError(f"invert() needs an InvertConfig, got {type(cfg).__name__}")
    prepared = images if isinstance(images, PreparedImages) else prepare_images(images, G.img_resolution, cfg.fit, layout)
    if prepared.images.shape[-1] != G.img_resolution:
        raise InputError(f"prepared images are {prepared.images.shape[-1]} px but the generator makes "
                         f"{G.img_resolution} px; prepare them for this generator")
    with torch.inference_mode(False), torch.enable_grad():
        clip_terms = _clip_terms(clip) if (clip is not None and cfg.clip_weight > 0) else []
        work = G
        if _has_inference_tensors(G):
            from .interpolate import new_output_generator

            work = new_output_generator(G)  # autograd cannot save inference tensors
        saved_flags = [p.requires_grad for p in work.parameters()]
        work.requires_grad_(False)
        try:
            return _optimise(work, prepared, cfg, clip_terms, init, on_progress, should_stop, generator_lineage(G))
        finally:
            for p, flag in zip(work.parameters(), saved_flags):
                p.requires_grad_(flag)


def _optimise(G: Any, prepared: PreparedImages, cfg: InvertConfig, clip_terms: list, init: Latents | None,
              on_progress: ProgressFn | None, should_stop: Callable[[], bool] | None,
              lineage: str | None) -> InversionResult:
    device = G.w_avg.device
    dtype = next(G.synthesis.parameters()).dtype
    n = len(prepared)
    target = prepared.images.to(device=device, dtype=torch.float32).clone()  # clone: never an inference tensor
    num_ws, w_dim = G.num_ws, G.w_dim

    w_mean, w_spread = w_statistics(G, cfg.w_avg_samples, class_index=cfg.class_index)
    w_mean = w_mean.to(device)
    if init is not None:
        if init.w_dim != w_dim or init.num_ws not in (1, num_ws) or len(init) not in (1, n):
            raise InputError(f"initial latents of shape {list(init.ws.shape)} do not fit {n} image(s) on this generator")
        start = init.broadcast(num_ws).ws.to(device).float().expand(n, -1, -1)
    else:
        start = w_mean.reshape(1, 1, w_dim).expand(n, num_ws, -1)
    # Dimensionless offsets from the mean: w = w_mean + w_spread * (shared + per_layer). The shared
    # part moves every layer together (plain W); in W+ the per-layer part is unlocked after the
    # first `wplus_warmup` of the run, so the search first finds the right W region and then
    # refines layer by layer (straight W+ from w_avg tends to stall in poor local minima).
    offsets = (start - w_mean) / w_spread
    shared = offsets.mean(dim=1, keepdim=True).clone().requires_grad_(True)
    per_layer = None
    groups = [{"params": [shared]}]
    if cfg.space == "w+":
        per_layer = (offsets - shared.detach()).clone().requires_grad_(True)
        groups.append({"params": [per_layer], "wplus": True})
    warmup_steps = int(round(cfg.wplus_warmup * cfg.steps)) if cfg.space == "w+" else 0

    def current_codes() -> torch.Tensor:
        return shared if per_layer is None else shared + per_layer

    noise: list[torch.Tensor] | None = None
    if cfg.optimize_noise and hasattr(G.synthesis, "convs"):  # StyleGAN3 has no noise inputs
        noise = [conv.noise_const.detach().float().reshape(1, 1, *conv.noise_const.shape[-2:]).repeat(n, 1, 1, 1)
                 for conv in G.synthesis.convs]
        if init is not None and init.noise is not None and len(init.noise) == len(noise):
            noise = [m.to(device).float().expand(n, -1, -1, -1).clone() for m in init.noise]
        _normalize_noise_(noise)
        for m in noise:
            m.requires_grad_(True)
        groups.append({"params": noise, "noise": True})
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999))

    with torch.no_grad():  # CLIP embeddings of the targets, one per guide
        target_clip = [encode(target * 2.0 - 1.0).detach().float() for encode, _ in clip_terms]
    rngs = [torch.Generator(device="cpu").manual_seed(int(cfg.seed) + i) for i in range(n)]

    best_loss = torch.full((n,), float("inf"), device=device)
    best_ws = torch.zeros(n, num_ws, w_dim, device=device)
    best_noise = [m.detach().clone() for m in noise] if noise is not None else None

    def evaluate(ws: torch.Tensor, noise_maps):
        synth = synthesize(G, ws.to(dtype), noise_maps).float()
        unit = clamp_aware((synth + 1.0) * 0.5, target)
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros(n, device=device)
        if cfg.pixel_weight > 0:
            parts["pixel"] = multiscale_pixel_loss(unit, target, cfg.pixel_scales, cfg.pixel_loss)
            total = total + cfg.pixel_weight * parts["pixel"]
        if cfg.ssim_weight > 0:
            parts["ssim"] = 1.0 - ssim_per_image(unit, target, cfg.ssim_window)
            total = total + cfg.ssim_weight * parts["ssim"]
        if clip_terms:
            parts["clip"] = sum(w * (1.0 - (encode(unit * 2.0 - 1.0).float() * t).sum(dim=-1)).to(device)
                                for (encode, w), t in zip(clip_terms, target_clip))
            total = total + cfg.clip_weight * parts["clip"]
        return synth, total, parts

    def remember(ws: torch.Tensor, noise_maps, data_loss: torch.Tensor) -> None:
        with torch.no_grad():
            better = data_loss.detach() < best_loss
            if better.any():
                best_loss.copy_(torch.where(better, data_loss.detach(), best_loss))
                best_ws.copy_(torch.where(better[:, None, None], ws.detach().expand(n, num_ws, w_dim), best_ws))
                if best_noise is not None:
                    for bn, m in zip(best_noise, noise_maps):
                        bn.copy_(torch.where(better[:, None, None, None], m.detach(), bn))

    steps_done, interrupted = 0, False
    losses: dict[str, float] = {}
    # On a CPU each step reuses the memory the last one freed (see nada_core.cpu_memory).
    with reuse_freed_memory(device):
        for step in range(cfg.steps):
            if should_stop is not None and should_stop():
                interrupted = True
                break
            lr = cfg.lr * lr_schedule(step, cfg.steps, cfg.lr_rampup, cfg.lr_rampdown)
            for group in optimizer.param_groups:
                if group.get("wplus"):
                    group["lr"] = 0.0 if step < warmup_steps else lr * cfg.wplus_lr_scale
                elif group.get("noise"):
                    group["lr"] = lr * cfg.noise_lr_scale
                else:
                    group["lr"] = lr
            sigma = w_noise_scale(step, cfg.steps, cfg.w_noise, cfg.w_noise_ramp)
            codes = current_codes()
            if sigma > 0:
                rows = 1 if per_layer is None else num_ws
                jitter = torch.stack([torch.randn(rows, w_dim, generator=g) for g in rngs]).to(device)
                codes = codes + sigma * jitter
            ws = (w_mean + w_spread * codes).expand(n, num_ws, w_dim)
            synth, data_loss, parts = evaluate(ws, noise)
            loss = data_loss.sum()
            if noise is not None and cfg.noise_reg_weight > 0:
                reg = noise_regularization(noise)
                parts["noise_reg"] = reg
                loss = loss + cfg.noise_reg_weight * reg.sum()
            remember(ws, noise, data_loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if noise is not None:
                _normalize_noise_(noise)
            steps_done = step + 1
            losses = {"loss": float(data_loss.detach().mean()), "lr": lr}
            losses.update({k: float(v.detach().mean()) for k, v in parts.items()})
            if on_progress is not None:
                show = steps_done == cfg.steps or (cfg.preview_every and steps_done % cfg.preview_every == 0)
                on_progress(steps_done, cfg.steps, losses, synth.detach().float().cpu() if show else None)

    # The codes after the last update were never scored: score them too.
    with torch.no_grad():
        ws = (w_mean + w_spread * current_codes()).expand(n, num_ws, w_dim)
        _, data_loss, _ = evaluate(ws, noise)
        remember(ws, noise, data_loss)
        if not torch.isfinite(best_loss).all():
            raise InputError("the inversion diverged (the loss became NaN or infinite); lower the learning rate")
        final_noise = [m.detach().clone() for m in best_noise] if best_noise is not None else None
        recon = synthesize(G, best_ws.to(dtype), final_noise).float()
        recon_unit = ((recon + 1.0) * 0.5).clamp(0.0, 1.0)
        psnr = psnr_per_image(recon_unit, target)
        ssim = [float(v) for v in ssim_per_image(recon_unit, target, 11).tolist()]
    losses = dict(losses, loss=float(best_loss.mean()))

    space = cfg.space
    prov = {"source": "inversion", "images": list(prepared.names), "space": space, "steps": steps_done,
            "crop_boxes": [list(b) for b in prepared.crop_boxes], "psnr": psnr, "ssim": ssim,
            "optimize_noise": bool(cfg.optimize_noise), "interrupted": interrupted}
    latents = Latents(best_ws.float().cpu(), space, lineage, prov, None,
                      [m.float().cpu() for m in final_noise] if final_noise is not None else None)
    return InversionResult(latents, recon.cpu(), prepared.images.clone(), psnr, ssim, list(prepared.crop_boxes),
                           list(prepared.names), steps_done, interrupted, losses)
