"""GAN inversion: accuracy, odd inputs, callbacks, interruption, inference mode, noise and CLIP terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from nada_core.errors import InputError
from nada_core.media.images import to_comfy, to_unit
from nada_core.editing.interpolate import style_mix
from nada_core.editing.invert import (InversionResult, InvertConfig, clamp_aware, invert, lr_schedule,
                              multiscale_pixel_loss, noise_regularization, psnr_per_image, ssim_per_image,
                              w_noise_scale)
from nada_core.editing.latents import latents_from_seeds, render
from tests.factories import tiny_generator

FAST = dict(w_avg_samples=500)



@pytest.fixture(scope="module")
def G():
    return tiny_generator(16)


@pytest.fixture(scope="module")
def targets(G):
    """[own sample in W, style-mixed sample only W+ can represent] in [0, 1]."""
    a = latents_from_seeds(G, [1, 2], truncation_psi=0.7)
    b = latents_from_seeds(G, [3, 4], truncation_psi=0.7)
    mixed = style_mix(a.select([1]), b.select([1]), "0-3")
    return to_unit(render(G, a.select([0]))), to_unit(render(G, mixed))


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------


def test_inverting_own_samples_recovers_them(G, targets):
    own, mixed = targets
    batch = torch.cat([own, mixed])
    res_w = invert(G, batch, InvertConfig(space="w", steps=150, **FAST))
    res_wp = invert(G, batch, InvertConfig(space="w+", steps=150, **FAST))
    assert isinstance(res_w, InversionResult)
    # A sample of the generator is recovered closely in both spaces...
    assert res_w.psnr[0] > 30 and res_wp.psnr[0] > 30, (res_w.psnr, res_wp.psnr)
    assert res_w.ssim[0] > 0.98 and res_wp.ssim[0] > 0.98
    # ...and a style-mixed sample, outside W, needs W+.
    assert res_wp.psnr[1] > res_w.psnr[1] + 3, (res_w.psnr, res_wp.psnr)
    # W results are broadcast W+ codes; W+ results use their freedom.
    assert res_w.latents.ws.shape == (2, G.num_ws, G.w_dim) and res_w.space == "w"
    assert torch.equal(res_w.latents.ws, res_w.latents.ws[:, :1].expand(-1, G.num_ws, -1))
    assert not torch.equal(res_wp.latents.ws[1, 0], res_wp.latents.ws[1, -1])
    # Reported metrics describe the returned reconstructions, which are renders of the latents.
    assert torch.allclose(res_wp.reconstructions, render(G, res_wp.latents), atol=1e-5)
    recon_unit = to_unit(res_wp.reconstructions)
    assert res_wp.psnr == pytest.approx(psnr_per_image(recon_unit, batch), abs=1e-6)
    assert res_wp.steps_done == 150 and not res_wp.interrupted
    assert res_wp.crop_boxes == [(0, 0, 16, 16)] * 2


def test_batch_images_are_independent(G, targets):
    own, mixed = targets
    cfg = InvertConfig(steps=12, **FAST)
    both = invert(G, torch.cat([own, mixed]), cfg)
    alone = invert(G, own, cfg)
    assert torch.allclose(both.latents.ws[0], alone.latents.ws[0], atol=1e-5)


def test_generator_is_left_as_it_was(G, targets):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    G.synthesis.convs[1].conv.weight.requires_grad_(True)
    G.mapping.layers[0].weight.requires_grad_(False)
    try:
        invert(G, targets[0], InvertConfig(steps=3, optimize_noise=True, **FAST))
        assert G.synthesis.convs[1].conv.weight.requires_grad
        assert not G.mapping.layers[0].weight.requires_grad
        assert G.synthesis.const.requires_grad
        assert G.synthesis.convs[1].conv.weight.grad is None  # weights were never optimised
    finally:
        G.requires_grad_(True)
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------
# Inputs users have
# ---------------------------------------------------------------------------------------------


def test_odd_image_kinds_invert_with_crop_boxes(G, tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray((np.arange(600).reshape(10, 60) % 256).astype(np.uint8), "L").save(tmp_path / "grey.png")
    Image.fromarray((np.arange(64 * 8).reshape(64, 8) * 100).astype(np.uint16)).save(tmp_path / "deep.png")
    comfy = to_comfy(torch.rand(1, 3, 7, 300) * 2 - 1)  # ComfyUI IMAGE, extreme aspect ratio
    res = invert(G, [tmp_path / "rgba.png", tmp_path / "grey.png", tmp_path / "deep.png", comfy],
                 InvertConfig(steps=2, **FAST), layout="comfy")
    assert res.crop_boxes == [(5, 0, 25, 20), (25, 0, 35, 10), (0, 28, 8, 36), (146, 0, 153, 7)]
    assert res.names[:3] == ["rgba.png", "grey.png", "deep.png"]
    assert res.reconstructions.shape == (4, 3, 16, 16) and res.targets.shape == (4, 3, 16, 16)
    # RGBA over white: red channel 200/255 at 50 % -> about 0.9, green/blue about 0.5.
    assert torch.allclose(res.targets[0, :, 8, 8], torch.tensor([0.893, 0.498, 0.498]), atol=0.01)
    assert torch.equal(res.targets[1, 0], res.targets[1, 1])  # greyscale
    assert len(res.psnr) == len(res.ssim) == 4
    assert res.latents.provenance["images"][:3] == ["rgba.png", "grey.png", "deep.png"]


def test_bad_settings_are_rejected(G, targets):
    for bad, msg in ((dict(space="z"), "space"), (dict(steps=0), "steps"), (dict(lr=-1.0), "learning rate"),
                     (dict(pixel_weight=0, ssim_weight=0, clip_weight=0), "all loss weights"),
                     (dict(lr_rampdown=2.0), "fraction"), (dict(pixel_loss="l3"), "pixel loss")):
        with pytest.raises(InputError, match=msg):
            invert(G, targets[0], InvertConfig(**bad))


# ---------------------------------------------------------------------------------------------
# Callbacks, interruption, inference mode
# ---------------------------------------------------------------------------------------------


def test_progress_and_should_stop(G, targets):
    calls = []

    def on_progress(step, total, losses, preview):
        calls.append((step, total, dict(losses), None if preview is None else preview.shape))

    res = invert(G, targets[0], InvertConfig(steps=50, preview_every=2, **FAST),
                 on_progress=on_progress, should_stop=lambda: len(calls) >= 3)
    assert res.interrupted and res.steps_done == 3
    assert [c[0] for c in calls] == [1, 2, 3] and all(c[1] == 50 for c in calls)
    assert {"loss", "pixel", "ssim", "lr"} <= calls[0][2].keys()
    assert calls[0][3] is None and calls[1][3] == (1, 3, 16, 16)
    assert res.latents.provenance["interrupted"] is True
    assert math.isfinite(res.psnr[0])
    # Stopping before the first step still returns a valid (starting-point) result.
    early = invert(G, targets[0], InvertConfig(steps=50, **FAST), should_stop=lambda: True)
    assert early.steps_done == 0 and early.interrupted and early.latents.ws.shape == (1, G.num_ws, G.w_dim)


def test_works_under_inference_mode(targets):
    with torch.inference_mode():
        G_inf = tiny_generator(16)  # its tensors are inference tensors, as in ComfyUI
        image = targets[0].clone()
        res = invert(G_inf, image, InvertConfig(steps=20, **FAST))
    assert res.steps_done == 20 and res.psnr[0] > 12
    assert not res.latents.ws.is_inference() and not res.reconstructions.is_inference()
    # A normal generator called under inference mode: optimised in place, flags restored.
    G2 = tiny_generator(16).requires_grad_(True)
    with torch.inference_mode():
        res2 = invert(G2, targets[0], InvertConfig(steps=5, **FAST))
    assert res2.steps_done == 5 and all(p.requires_grad for p in G2.parameters())


# ---------------------------------------------------------------------------------------------
# Noise optimisation and the CLIP term
# ---------------------------------------------------------------------------------------------


def test_noise_optimisation_returns_normalised_maps(G, targets):
    res = invert(G, torch.cat(targets), InvertConfig(steps=30, optimize_noise=True, **FAST))
    noise = res.latents.noise
    assert noise is not None and len(noise) == len(G.synthesis.convs)
    for m, conv in zip(noise, G.synthesis.convs):
        assert m.shape == (2, 1, *conv.noise_const.shape[-2:])
        assert torch.allclose(m.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
        assert torch.allclose(m.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-3)
    # The saved maps reproduce the reconstructions; without them the render differs.
    assert torch.allclose(render(G, res.latents), res.reconstructions, atol=1e-5)
    res.latents.noise = None
    assert not torch.allclose(render(G, res.latents), res.reconstructions, atol=1e-4)


def test_noise_regularization_penalises_correlation():
    torch.manual_seed(0)
    white = torch.randn(1, 1, 32, 32)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4), size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert noise_regularization([smooth]) > 50 * noise_regularization([white])
    # Independent value for one 8 px map: squared mean products with one-pixel shifts.
    n = torch.randn(1, 1, 8, 8)
    ref = (n * n.roll(1, 3)).mean() ** 2 + (n * n.roll(1, 2)).mean() ** 2
    assert torch.allclose(noise_regularization([n]), ref.reshape(1))


def test_clip_term(G, targets, tmp_path):
    clip_factory = pytest.importorskip("tests.clip_factory")
    from nada_core.guidance.clip import ClipEnsemble

    clip = clip_factory.load_tiny_clip(tmp_path)
    seen = []
    res = invert(G, targets[0], InvertConfig(steps=15, clip_weight=1.0, **FAST), clip=clip,
                 on_progress=lambda s, t, losses, p: seen.append(losses["clip"]))
    assert len(seen) == 15 and seen[-1] < seen[0]
    ens = ClipEnsemble([(clip, 1.0)])
    with torch.inference_mode():
        res2 = invert(G, targets[0], InvertConfig(steps=3, clip_weight=1.0, **FAST), clip=ens)
    assert res2.final_losses["clip"] >= 0 and res.final_losses["clip"] >= 0
    with pytest.raises(InputError, match="encode_image"):
        invert(G, targets[0], InvertConfig(steps=1, **FAST), clip=object())


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def test_lr_schedule_and_w_noise_ramp():
    vals = [lr_schedule(s, 100, 0.05, 0.25) for s in range(100)]
    assert vals[0] == pytest.approx(0.2) and vals[4] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in vals[4:75])
    tail = vals[75:]
    assert all(b < a for a, b in zip(tail, tail[1:])) and 0 < tail[-1] < 0.01
    assert lr_schedule(50, 100, 0.0, 0.0) == 1.0
    assert w_noise_scale(0, 100, 0.05, 0.75) == pytest.approx(0.05)
    assert w_noise_scale(75, 100, 0.05, 0.75) == 0.0
    assert w_noise_scale(30, 100, 0.05, 0.75) == pytest.approx(0.05 * (1 - 0.4) ** 2)


def test_metrics_and_losses_against_independent_values():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.full((2, 3, 8, 8), 0.1)
    y[1] = 0.0
    assert psnr_per_image(x, y) == [pytest.approx(20.0), 100.0]
    assert ssim_per_image(y, y).tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert ssim_per_image(x, y)[0] < 0.1
    d = torch.zeros(1, 3, 4, 4)
    d[..., 0, 0] = 1.0  # one bright pixel: L1 0.0625 at full res, same mean after 2x pooling
    assert multiscale_pixel_loss(d, torch.zeros_like(d), (1, 2), "l1").item() == pytest.approx(0.0625)
    assert multiscale_pixel_loss(d, torch.zeros_like(d), (1,), "l2").item() == pytest.approx(0.0625)
    unit = torch.tensor([1.2, 1.2, -0.3, 0.5])
    target = torch.tensor([1.0, 0.8, 0.0, 0.4])
    assert torch.equal(clamp_aware(unit, target), torch.tensor([1.0, 1.2, 0.0, 0.5]))


def test_the_optimisation_steps_run_inside_the_freed_memory_reuse(G, targets, monkeypatch):
    """Inversion's steps reuse freed CPU memory (nada_core.cpu_memory) and leave it on a stop too."""
    from nada_core.editing import invert as invert_module

    events = []
    real = invert_module.reuse_freed_memory

    class Spy:
        def __init__(self, device, enabled=True):
            self.inner = real(device, enabled=enabled)
            events.append(("enter", str(device)))

        def __enter__(self):
            return self.inner.__enter__()

        def __exit__(self, *exc):
            events.append(("exit",))
            return self.inner.__exit__(*exc)

    monkeypatch.setattr(invert_module, "reuse_freed_memory", Spy)
    steps_inside = []
    res = invert(G, targets[0], InvertConfig(steps=4, **FAST),
                 on_progress=lambda step, total, losses, preview: steps_inside.append((step, len(events))),
                 should_stop=lambda: len(steps_inside) >= 2)
    assert res.steps_done == 2 and res.interrupted
    assert events == [("enter", "cpu"), ("exit",)]
    assert steps_inside == [(1, 1), (2, 1)]  # every step between entering and leaving
