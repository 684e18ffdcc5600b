"""Memory and speed paths: chunked selection pass, synthesis prefix/suffix, shared prefix in the
trainer, activation checkpointing. Each must give the plain computation's numbers."""

from __future__ import annotations

import pytest
import torch

from nada_core.training.freezing import apply_selection, select_layers
from nada_core.training.trainer import NadaTrainer, TrainConfig
from tests.clip_factory import load_tiny_clip
from tests.factories import tiny_generator


def _pixel_loss(seed: int = 1, size: int = 32):
    target = torch.randn(3, size, size, generator=torch.Generator().manual_seed(seed))
    return lambda img: (img - target).square().mean()  # a mean over the images, like the CLIP loss


# ----------------------------------------------------------------------------------------------
# Selection in chunks
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 7, 8, 100])
def test_chunked_selection_equals_the_unchunked_pass(chunk):
    G = tiny_generator(32)
    whole = select_layers(G, _pixel_loss(), 7, rng=torch.Generator().manual_seed(5), n_codes=8, steps=2, lr=0.5)
    part = select_layers(G, _pixel_loss(), 7, rng=torch.Generator().manual_seed(5), n_codes=8, steps=2, lr=0.5,
                         chunk=chunk)
    torch.testing.assert_close(part.scores, whole.scores, rtol=1e-5, atol=1e-9)
    assert part.indices[:3] == whole.indices[:3]
    assert float(whole.scores.max()) > 0  # the codes did move


def test_chunked_selection_matches_an_independent_per_code_gradient():
    """The chunk gradient (scaled by its share of the mean) equals the full-batch gradient."""
    G = tiny_generator(32)
    loss = _pixel_loss()
    sel = select_layers(G, loss, 3, rng=torch.Generator().manual_seed(2), n_codes=4, lr=0.25, chunk=1)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w0 = G.mapping(z)[:, :1].repeat(1, G.num_ws, 1)
    w = w0.clone().requires_grad_(True)
    loss(G.synthesis(w)).backward()  # all four codes at once
    scores = (0.25 * w.grad).abs().mean(-1).mean(0)
    torch.testing.assert_close(sel.scores, scores, rtol=1e-5, atol=1e-9)


def test_selection_peak_stays_within_a_training_step(monkeypatch):
    """The trainer runs the pass in chunks of the batch: no synthesis call sees more images."""
    clip = load_tiny_clip_cached()
    from nada_core.guidance.directions import text_direction

    direction = text_direction(clip, "photo", "pencil sketch", templates=False)
    G = tiny_generator(16)
    tr = NadaTrainer(G, clip, direction, TrainConfig(steps=2, batch=2, num_layers=2, preview_every=0), "cpu")
    sizes = []
    for syn in (tr.G_train.synthesis,):
        original = syn.forward_from
        monkeypatch.setattr(syn, "forward_from", lambda ws, *a, _o=original, **k: (sizes.append(ws.shape[0]),
                                                                                    _o(ws, *a, **k))[1])
    res = tr.step()
    assert res.selected and sizes == [2, 2, 2, 2, 2]  # 8 codes in 4 chunks of 2, then the training batch


_CLIP = {}


def load_tiny_clip_cached():
    if "m" not in _CLIP:
        import tempfile
        from pathlib import Path

        _CLIP["m"] = load_tiny_clip(Path(tempfile.mkdtemp(prefix="nada_clip_")))
    return _CLIP["m"]


# ----------------------------------------------------------------------------------------------
# Synthesis prefix / suffix
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_mode", ["const", "random", "none"])
def test_prefix_then_suffix_equals_the_plain_forward(noise_mode):
    G = tiny_generator(32)
    syn = G.synthesis
    ws = torch.randn(3, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(11)
        plain = syn(ws, noise_mode=noise_mode)
        for b in range(syn.num_blocks + 1):
            torch.manual_seed(11)
            state = syn.forward_prefix(ws, b, noise_mode=noise_mode)
            out = syn.forward_from(ws, state, b, noise_mode=noise_mode)
            assert torch.equal(out, plain), f"split at block {b}"


def test_blocks_cover_every_synthesis_parameter_once():
    G = tiny_generator(32)
    syn = G.synthesis
    names = [n for b in range(syn.num_blocks) for n in syn.block_parameter_names(b)]
    assert sorted(names) == sorted(n for n, _ in syn.named_parameters())
    # The conv a W+ index drives lives in the block the docstring says: convs[i] in block (i + 1) // 2.
    for i in range(len(syn.convs)):
        assert any(n.startswith(f"convs.{i}.") for n in syn.block_parameter_names((i + 1) // 2))


def test_gradients_reach_the_suffix_through_a_prefix_state():
    G = tiny_generator(32)
    syn = G.synthesis
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(1))
    syn.zero_grad(set_to_none=True)
    syn(ws).square().mean().backward()
    plain = {n: p.grad.clone() for n, p in syn.named_parameters()}
    syn.zero_grad(set_to_none=True)
    with torch.no_grad():
        state = syn.forward_prefix(ws, 2)
    syn.forward_from(ws, state, 2).square().mean().backward()
    for b in range(syn.num_blocks):
        for n in syn.block_parameter_names(b):
            p = dict(syn.named_parameters())[n]
            if b < 2:
                assert p.grad is None, n  # computed without autograd
            else:
                torch.testing.assert_close(p.grad, plain[n], rtol=1e-5, atol=1e-7)


def test_checkpointed_forward_gives_the_same_image_and_gradients():
    G = tiny_generator(32)
    syn = G.synthesis
    ws = torch.randn(2, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(2))
    out = {}
    for ckpt in (False, True):
        syn.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # random noise must be replayed identically in the recomputation
        img = syn.forward_from(ws, None, 0, noise_mode="random", checkpoint=ckpt)
        img.square().mean().backward()
        out[ckpt] = (img.detach(), {n: p.grad.clone() for n, p in syn.named_parameters()})
    assert torch.equal(out[True][0], out[False][0])
    for n, g in out[False][1].items():
        torch.testing.assert_close(out[True][1][n], g, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# The trainer's shared prefix
# ----------------------------------------------------------------------------------------------


def _trainer(**kw):
    from nada_core.guidance.directions import text_direction

    clip = load_tiny_clip_cached()
    direction = text_direction(clip, "photo", "pencil sketch", templates=False)
    base = dict(steps=6, batch=2, lr=0.01, num_layers=2, preview_every=0, seed=0)
    base.update(kw)
    return NadaTrainer(tiny_generator(16), clip, direction, TrainConfig(**base), "cpu")


@pytest.mark.parametrize("noise_mode", ["const", "random"])
def test_shared_prefix_gives_the_images_and_gradients_of_two_full_passes(noise_mode):
    tr = _trainer(noise_mode=noise_mode)
    with torch.no_grad():  # make the trained twin differ from the frozen one after the prefix
        for p in tr.G_train.synthesis.convs[3].parameters():
            p.add_(0.05)
    tr._touched = {n for n, _ in tr.G_train.named_parameters() if n.startswith("synthesis.convs.3.")}
    apply_selection(tr.G_train, [4], tr.freeze_options)  # convs[3], convs[4]: block 2
    assert tr.shared_prefix_blocks() == 2
    ws = tr._sample_ws()
    rng = tr.rng.get_state()
    frozen, trained = tr._render_pair(ws)
    trained.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in tr.G_train.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith("synthesis.convs.4.") for n in grads)
    # The plain path: two full passes with the same noise.
    tr.G_train.zero_grad(set_to_none=True)
    tr.rng.set_state(rng)
    tr._block_names = []  # no prefix support -> full passes
    assert tr.shared_prefix_blocks() == 0
    frozen2, trained2 = tr._render_pair(ws)
    trained2.square().mean().backward()
    assert torch.equal(frozen, frozen2) and torch.equal(trained, trained2)
    assert not torch.equal(frozen, trained)
    for n, g in grads.items():
        torch.testing.assert_close(dict(tr.G_train.named_parameters())[n].grad, g, rtol=1e-5, atol=1e-7)


def test_a_block_trained_earlier_is_never_shared_and_resume_recomputes_it(tmp_path):
    tr = _trainer(num_layers=1, interval=1)
    tr.run()
    trained_blocks = {b for b, names in enumerate(tr._block_names)
                      if any(n in tr._touched for n in names)}
    assert trained_blocks and tr._touched
    first = min(trained_blocks)
    apply_selection(tr.G_train, [tr.G_train.num_ws - 2], tr.freeze_options)  # a late layer only
    assert tr.shared_prefix_blocks() == first
    # After a resume the set comes from comparing the weights with the source.
    tr.save_state(tmp_path / "state.safetensors")
    other = _trainer(num_layers=1, interval=1)
    other.load_state(tmp_path / "state.safetensors", check_source=False)
    apply_selection(other.G_train, [other.G_train.num_ws - 2], other.freeze_options)
    assert other.shared_prefix_blocks() == first and other._touched == tr._touched


def test_training_with_shared_prefix_and_checkpointing_matches_the_plain_run():
    runs = []
    for ckpt, prefix in ((False, False), (False, True), (True, True)):
        tr = _trainer(num_layers=2, noise_mode="random", checkpointing=ckpt)
        if not prefix:
            tr._block_names = []
        tr.run()
        runs.append({n: p.detach().clone() for n, p in tr.G_train.named_parameters()})
    for other in runs[1:]:
        for n, v in runs[0].items():
            torch.testing.assert_close(other[n], v, rtol=1e-5, atol=1e-6)


def test_selection_passes_of_a_checkpointing_run_keep_the_weights_layout():
    """On a CPU the selection pass runs with channels-last weights (faster); a checkpointing run,
    which asks for memory, keeps their own layout (about 15% less peak over several steps)."""
    layouts = {}
    for ckpt in (False, True):
        tr = _trainer(steps=1, num_layers=2, checkpointing=ckpt)
        conv = next(p for p in tr.G_train.synthesis.parameters() if p.ndim == 4 and p.shape[-1] == 3)
        loss = tr._selection_loss

        def spying(img, conv=conv, loss=loss, ckpt=ckpt):
            layouts[ckpt] = (conv.is_contiguous(memory_format=torch.channels_last), conv.is_contiguous())
            return loss(img)

        tr._selection_loss = spying
        tr.step()
        assert tr.selector.ran_selection
        assert conv.is_contiguous()  # restored after the pass
    assert layouts[False] == (True, False)
    assert layouts[True] == (False, True)
