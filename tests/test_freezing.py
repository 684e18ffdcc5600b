"""Adaptive layer freezing: W+ index -> layer mapping, selection pass, schedule."""

from __future__ import annotations

import pytest
import torch

from nada_core.errors import InputError
from nada_core.training.freezing import (FreezeOptions, LayerSchedule, LayerSelector, apply_selection, candidate_w_indices,
                                parameter_names_for_w_index, select_layers, trainable_parameter_names)
from tests.factories import tiny_generator




def _only_index_matters(index: int, seed: int = 0):
    """A generator whose output depends on ``ws[:, index]`` only, through the styled conv it drives.

    Every style affine weight except the one of the conv driven by ``index`` is zeroed, so every
    other W+ entry becomes a constant style (the affine bias) and has no influence.
    """
    G = tiny_generator(32, seed=seed)
    keep = f"synthesis.convs.{index}.conv.affine.weight"
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".affine.weight" in name and name != keep:
                p.zero_()
    return G


def _pixel_loss(seed: int = 1):
    target = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(seed))
    return lambda img: (img - target).square().mean()


def _conv_fed_by(G, index: int) -> int:
    """Independent check: run the synthesis with hooks and return which conv receives ``ws[:, index]``."""
    ws = torch.randn(1, G.num_ws, G.w_dim)
    seen = {}
    hooks = [conv.register_forward_hook(lambda m, args, out, j=j: seen.__setitem__(j, args[1].clone()))
             for j, conv in enumerate(G.synthesis.convs)]
    try:
        with torch.no_grad():
            G.synthesis(ws)
    finally:
        for h in hooks:
            h.remove()
    matches = [j for j, w in seen.items() if torch.equal(w, ws[:, index])]
    assert len(matches) == 1
    return matches[0]


def test_candidates_exclude_torgb_only_index_unless_torgb_trains():
    G = tiny_generator(32)
    assert G.num_ws == 8
    assert candidate_w_indices(G) == list(range(7))  # last index drives only the final toRGB
    assert candidate_w_indices(G, FreezeOptions(train_torgb=True)) == list(range(8))


def test_parameter_names_per_index_and_options():
    G = tiny_generator(32)
    assert sorted(parameter_names_for_w_index(G, 3)) == sorted(
        ["synthesis.convs.3.conv.weight", "synthesis.convs.3.bias", "synthesis.convs.3.noise_strength"])
    assert parameter_names_for_w_index(G, 7) == []  # toRGB-only index, toRGB frozen
    # index 1 drives convs[1] and to_rgbs[0]; with toRGB + affine training both come with it.
    names = set(parameter_names_for_w_index(G, 1, FreezeOptions(train_torgb=True, train_affine=True)))
    assert names == {"synthesis.convs.1.conv.weight", "synthesis.convs.1.bias", "synthesis.convs.1.noise_strength",
                     "synthesis.convs.1.conv.affine.weight", "synthesis.convs.1.conv.affine.bias",
                     "synthesis.to_rgbs.0.conv.weight", "synthesis.to_rgbs.0.bias",
                     "synthesis.to_rgbs.0.conv.affine.weight", "synthesis.to_rgbs.0.conv.affine.bias"}
    # toRGB affine stays frozen when only toRGB (not affine) training is on.
    assert "synthesis.to_rgbs.0.conv.affine.weight" not in parameter_names_for_w_index(
        G, 1, FreezeOptions(train_torgb=True))
    assert "synthesis.const" in parameter_names_for_w_index(G, 0, FreezeOptions(train_const=True))
    assert "synthesis.const" not in parameter_names_for_w_index(G, 1, FreezeOptions(train_const=True))
    # No option ever unfreezes the mapping network.
    all_opts = FreezeOptions(True, True, True)
    every = trainable_parameter_names(G, range(G.num_ws), all_opts)
    assert not any(n.startswith("mapping.") for n in every)


def test_apply_selection_sets_requires_grad_exactly():
    G = tiny_generator(32)
    for p in G.parameters():
        p.requires_grad_(True)
    names = apply_selection(G, [2, 5])
    expected = {f"synthesis.convs.{i}.{s}" for i in (2, 5) for s in ("conv.weight", "bias", "noise_strength")}
    assert set(names) == expected
    for name, p in G.named_parameters():
        assert p.requires_grad == (name in expected), name


@pytest.mark.parametrize("index", range(7))
def test_selected_index_unfreezes_the_conv_it_drives(index):
    G = _only_index_matters(index)
    sel = select_layers(G, _pixel_loss(), 1, rng=torch.Generator().manual_seed(0))
    assert sel.indices == [index]
    # Only the entry that influences the image moved at all.
    assert sel.scores[index] > 0
    assert torch.count_nonzero(sel.scores) == 1
    apply_selection(G, sel.indices)
    trainable = {n for n, p in G.named_parameters() if p.requires_grad}
    driven = _conv_fed_by(G, index)  # hook-based, independent of conv_for_w_index
    assert driven == index
    assert trainable == {f"synthesis.convs.{driven}.{s}" for s in ("conv.weight", "bias", "noise_strength")}
    assert G.synthesis.convs[driven].conv.weight.requires_grad


def test_selection_builds_no_weight_gradients_and_restores_flags():
    G = tiny_generator(32)
    for i, p in enumerate(G.parameters()):
        p.requires_grad_(i % 2 == 0)
    flags = [p.requires_grad for p in G.parameters()]
    seen_flags = []
    base = _pixel_loss()

    def loss(img):
        seen_flags.append(any(p.requires_grad for p in G.parameters()))
        return base(img)

    select_layers(G, loss, 3, rng=torch.Generator().manual_seed(0), steps=2)
    assert seen_flags == [False, False]  # N_i = 2 passes, generator weights frozen in both
    assert [p.requires_grad for p in G.parameters()] == flags
    assert all(p.grad is None for p in G.parameters())


def test_selection_matches_manual_sgd_computation():
    G = tiny_generator(32)
    loss = _pixel_loss()
    sel = select_layers(G, loss, 4, rng=torch.Generator().manual_seed(7), n_codes=3, lr=0.5)
    # Independent computation of the paper's procedure.
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w = G.mapping(z)[:, :1].repeat(1, G.num_ws, 1)
    w0 = w.clone()
    w.requires_grad_(True)
    opt = torch.optim.SGD([w], lr=0.5)
    loss(G.synthesis(w)).backward()
    opt.step()
    scores = (w.detach() - w0).abs().mean(-1).mean(0)
    torch.testing.assert_close(sel.scores, scores, rtol=1e-5, atol=1e-9)
    expected = torch.topk(scores[:7], 4).indices.tolist()
    assert sel.indices == expected


def test_selection_is_deterministic_for_a_seed():
    G = tiny_generator(32)
    a = select_layers(G, _pixel_loss(), 3, rng=torch.Generator().manual_seed(3))
    b = select_layers(G, _pixel_loss(), 3, rng=torch.Generator().manual_seed(3))
    assert a.indices == b.indices and torch.equal(a.scores, b.scores)


def test_torgb_only_index_can_be_selected_when_torgb_trains():
    G = tiny_generator(32)
    keep = "synthesis.to_rgbs.3.conv.affine.weight"  # final toRGB, driven by the last W+ entry
    with torch.no_grad():
        for name, p in G.named_parameters():
            if ".affine.weight" in name and name != keep:
                p.zero_()
    opts = FreezeOptions(train_torgb=True)
    sel = select_layers(G, _pixel_loss(), 1, rng=torch.Generator().manual_seed(0),
                        candidates=candidate_w_indices(G, opts))
    assert sel.indices == [7]
    names = apply_selection(G, sel.indices, opts)
    assert set(names) == {"synthesis.to_rgbs.3.conv.weight", "synthesis.to_rgbs.3.bias"}


def test_schedule_falloff_and_interval():
    s = LayerSchedule(k=5, interval=10, falloff=4)
    assert [s.k_at(t) for t in (0, 3, 4, 8, 15, 16, 100)] == [5, 5, 4, 3, 2, 1, 1]
    assert [t for t in range(25) if s.reselects_at(t)] == [0, 10, 20]
    assert LayerSchedule(k=3).k_at(1000) == 3
    assert LayerSchedule(k=None, falloff=2).k_at(10) is None
    for bad in (dict(k=0), dict(k=2, interval=0), dict(k=2, falloff=-1), dict(k="3")):
        with pytest.raises(InputError):
            LayerSchedule(**bad)


def test_selector_runs_selection_only_on_schedule():
    G = tiny_generator(32)
    calls = []
    base = _pixel_loss()

    def loss(img):
        calls.append(1)
        return base(img)

    sel = LayerSelector(LayerSchedule(k=2, interval=3))
    rng = torch.Generator().manual_seed(0)
    for step in range(7):
        indices, _ = sel.indices_for_step(step, G, loss, rng)
        assert len(indices) == 2
    assert len(calls) == 3  # steps 0, 3, 6


def test_selector_all_layers_runs_no_selection():
    G = tiny_generator(32)

    def loss(img):  # pragma: no cover - must not be called
        raise AssertionError("selection pass ran although every layer trains")

    for k in (None, 7, 50):
        sel = LayerSelector(LayerSchedule(k=k))
        indices, changed = sel.indices_for_step(0, G, loss, torch.Generator())
        assert indices == list(range(7)) and changed


def test_select_layers_rejects_bad_arguments():
    G = tiny_generator(32)
    with pytest.raises(InputError, match="at least 1"):
        select_layers(G, _pixel_loss(), 0, rng=torch.Generator())
    with pytest.raises(InputError):
        select_layers(G, _pixel_loss(), 2, rng=torch.Generator(), lr=0.0)


def test_channels_last_selection_pass_gives_the_same_scores_and_restores_the_weights():
    """On a CPU the pass runs with the conv weights channels-last (faster oneDNN convolutions): the
    scores equal those of the usual layout to float rounding, and afterwards every parameter holds
    its original tensor again (same storage and strides: a 1x1 toRGB kernel must not keep
    channels-last strides, or the trained generator would stop matching the frozen one bit for bit)."""
    G = tiny_generator(32, seed=4)
    before = {n: (p.data_ptr(), p.stride(), p.requires_grad) for n, p in G.named_parameters()}
    plain = select_layers(G, _pixel_loss(), 3, rng=torch.Generator().manual_seed(5), channels_last=False)
    fast = select_layers(G, _pixel_loss(), 3, rng=torch.Generator().manual_seed(5))  # default on CPU: on
    assert plain.scores.abs().max() > 0
    torch.testing.assert_close(fast.scores, plain.scores, rtol=1e-4, atol=1e-9)
    assert fast.indices == plain.indices
    assert {n: (p.data_ptr(), p.stride(), p.requires_grad) for n, p in G.named_parameters()} == before


def test_channels_last_weights_swaps_only_4d_parameters_for_the_block():
    from nada_core.training.runtime import channels_last_weights

    G = tiny_generator(16)
    rgb = G.synthesis.to_rgbs[0].conv.weight  # [3, C, 1, 1]: contiguous in both senses
    ptr, stride = rgb.data_ptr(), rgb.stride()
    with channels_last_weights(G.synthesis):
        conv = G.synthesis.convs[1].conv.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        assert G.synthesis.const.is_contiguous()  # 3-D: untouched
    assert conv.is_contiguous() and (rgb.data_ptr(), rgb.stride()) == (ptr, stride)
    with channels_last_weights(G.synthesis, enabled=False):
        assert G.synthesis.convs[1].conv.weight.is_contiguous()
