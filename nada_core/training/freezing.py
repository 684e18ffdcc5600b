"""Adaptive layer freezing (StyleGAN-NADA Sec. 4.2) and the follow-up's interval/falloff schedule.

Which synthesis layers to train is decided by asking *the latent codes* where the target lies:

1. draw ``n_codes`` (paper: N_w = 8) codes ``z`` from a seeded generator, map them with the
   frozen mapping network and copy each ``w`` into every W+ entry -> ``[n_codes, num_ws, w_dim]``;
2. take ``steps`` (paper: N_i = 1) plain SGD steps (lr 0.01 in the research code) on those W+
   codes against the *global* CLIP loss towards the target, generator weights fixed;
3. score each W+ index by the mean absolute change of its entry and keep the top ``k``;
4. unfreeze the synthesis layers those indices *drive*; everything else stays frozen.

Correct W+ -> layer mapping
---------------------------
Our ``synthesis.convs[i]`` is styled by ``ws[:, i]`` (see :mod:`nada_core.models.stylegan2`), so index
``i`` unfreezes ``synthesis.conv_for_w_index(i)``. (The research code maps index 1 to a toRGB
and index ``i >= 2`` to the conv driven by ``ws[:, i - 1]``: off by one; not reproduced here.)

The last W+ index drives only the final toRGB. It is a candidate only when toRGB training is on
(``FreezeOptions.train_torgb``); otherwise choosing it would train nothing and waste one of the
``k`` slots, so it is left out of the ranking.

What "a layer" contains
-----------------------
For W+ index ``i``: the styled conv's weight, bias and noise strength (role ``conv``). With
``train_affine`` also that conv's style affine; with ``train_torgb`` the toRGB driven by ``i``
(odd indices and the last one); with ``train_const`` the learned 4x4 constant, which belongs to
index 0 (it feeds ``convs[0]``); ``train_const="auto"`` trains it only when every candidate index
trains, as the official code does. StyleGAN3 (:mod:`nada_core.models.stylegan3`): index 0 drives the
Fourier-feature input (no styled conv: a candidate only through ``train_const``, which trains its
channel mixing), ``i + 1`` drives layer ``L{i}``, the last one the toRGB layer. The mapping network is never trained here: it is shared by the
frozen and the trained generator and keeps their latent spaces aligned.

Schedule (follow-up work, ``docs/method.md``)
-------------------------------------------------------------
Layers are re-selected only at steps ``0, interval, 2 * interval, ...`` and kept in between
(no CLIP cost on the other steps). With ``falloff = F > 0``, ``k`` shrinks by one every ``F``
steps, never below ``min_k`` (default 1): ``k(step) = max(min_k, k - step // F)``, evaluated at
each re-selection. ``k = None`` (``"all"``) disables selection: every candidate layer trains and
no selection pass runs; a ``k`` at or above the number of candidates is the same, until falloff
brings it below.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Iterable, Sequence

import torch

from ..errors import InputError

# Global CLIP loss used for selection: images [N, 3, R, R] in about [-1, 1] -> scalar tensor.
GlobalLoss = Callable[[torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class FreezeOptions:
    """Which parameter groups beyond the styled convs may train.

    The defaults here are the plain ones (convs only); the training defaults (``TrainConfig``)
    follow the official code: affines on, constant ``"auto"``. ``train_const``: True/``"on"``
    (with index 0), False/``"off"``, or ``"auto"``: only when every candidate index trains (the
    official code trains the constant in its all-layers run and never under adaptive selection).
    """

    train_torgb: bool = False
    train_affine: bool = False
    train_const: bool | str = False

    @property
    def const_mode(self) -> str:
        """``train_const`` as ``"on"``, ``"off"`` or ``"auto"``."""
        v = self.train_const
        return ("on" if v else "off") if isinstance(v, bool) else str(v)


# ----------------------------------------------------------------------------------------------
# W+ index -> parameters
# ----------------------------------------------------------------------------------------------


def candidate_w_indices(G, options: FreezeOptions = FreezeOptions()) -> list[int]:
    """W+ indices that own at least one trainable parameter under ``options``.

    Every index drives a styled conv except the last (final toRGB only), which is a candidate
    only when ``options.train_torgb`` is set.
    """
    syn = G.synthesis
    return [i for i in range(G.num_ws)
            if syn.conv_for_w_index(i) is not None or (options.train_torgb and syn.torgb_for_w_index(i) is not None)]


def parameter_names_for_w_index(G, index: int, options: FreezeOptions = FreezeOptions()) -> list[str]:
    """Names (as in ``G.named_parameters()``) of the parameters W+ ``index`` makes trainable."""
    syn = G.synthesis
    names_by_id = {id(p): name for name, p in G.named_parameters()}
    roles = G.parameter_roles()
    allowed = {"conv"}
    if options.train_torgb:
        allowed.add("torgb")
    if options.train_affine:
        allowed.add("affine")
    modules = [syn.conv_for_w_index(index)]
    if options.train_torgb:
        modules.append(syn.torgb_for_w_index(index))
    names: list[str] = []
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            name = names_by_id[id(p)]
            # An affine inside a toRGB is trainable only when both toRGB and affine training are on.
            if roles[name] in allowed:
                names.append(name)
    if options.const_mode == "on" and index == 0:
        # StyleGAN2's learned 4x4 constant; StyleGAN3's input-layer channel mixing (role "const").
        names.extend(n for n, _ in G.named_parameters() if roles[n] == "const")
    return names


def trainable_parameter_names(G, indices: Iterable[int], options: FreezeOptions = FreezeOptions()) -> list[str]:
    """Union of :func:`parameter_names_for_w_index` over ``indices``, in ``named_parameters`` order.

    With ``train_const="auto"`` the constant is added when ``indices`` covers every candidate.
    """
    indices = [int(i) for i in indices]
    wanted: set[str] = set()
    for i in indices:
        wanted.update(parameter_names_for_w_index(G, i, options))
    if options.const_mode == "auto" and indices and set(candidate_w_indices(G, options)) <= set(indices):
        roles = G.parameter_roles()  # StyleGAN2's 4x4 constant; StyleGAN3's input-layer channel mixing
        wanted.update(n for n, r in roles.items() if r == "const")
    return [name for name, _ in G.named_parameters() if name in wanted]


def apply_selection(G, indices: Iterable[int], options: FreezeOptions = FreezeOptions()) -> list[str]:
    """Set ``requires_grad`` True exactly on the parameters of ``indices``, False on all others.

    Covers the whole generator, mapping network included. Returns the trainable names.
    """
    names = set(trainable_parameter_names(G, indices, options))
    for name, p in G.named_parameters():
        p.requires_grad_(name in names)
    return [name for name, _ in G.named_parameters() if name in names]


# ----------------------------------------------------------------------------------------------
# Selection pass
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LayerSelection:
    """Result of one selection pass.

    ``indices``: chosen W+ indices, highest score first. ``scores``: ``[num_ws]`` float32 CPU
    tensor of mean |change| per W+ index (non-candidates included, for inspection).
    """

    indices: list[int]
    scores: torch.Tensor


@torch.no_grad()
def _initial_codes(G, n_codes: int, rng: torch.Generator, device: torch.device,
                   c: torch.Tensor | None = None) -> torch.Tensor:
    z = torch.randn(n_codes, G.z_dim, generator=rng).to(device)
    w = G.mapping(z, c)[:, :1]  # [n, 1, w_dim]; truncation psi 1, as in training
    return w.expand(-1, G.num_ws, -1).clone()  # [n, num_ws, w_dim], each row one w repeated


def select_layers(G, global_loss: GlobalLoss, k: int, *, rng: torch.Generator,
                  candidates: Sequence[int] | None = None, n_codes: int = 8, steps: int = 1,
                  lr: float = 0.01, noise_mode: str = "const",
                  autocast: Callable[[], object] | None = None, chunk: int | None = None,
                  c: torch.Tensor | None = None, channels_last: bool | None = None) -> LayerSelection:
    """Rank W+ indices by how far the global CLIP loss pushes them; return the top ``k``.

    ``G`` is the generator being trained (its current weights are used, as in the paper).
    Gradients are computed for the W+ codes only: every generator parameter has
    ``requires_grad`` turned off for the pass (and restored after), so no weight gradient is
    ever built. ``rng`` (a CPU ``torch.Generator``) draws the ``n_codes`` latent codes (and, with
    ``noise_mode="random"``, the seed of the noise, so a pass is reproducible). ``k`` is clipped
    to the number of candidates. ``autocast`` optionally returns a context manager for mixed
    precision around the forward passes.

    ``chunk`` (None/0 = all codes at once): codes per forward/backward. The loss is a mean over
    the codes, so its W+ gradient is the sum over chunks of the gradient of ``loss_chunk * n_chunk
    / n_codes``: the same step (up to float rounding), with the activations of only ``chunk``
    images alive at a time, which keeps the pass's memory peak at or below a training step's.
    ``c``: one-hot class ``[1, c_dim]`` of a conditional generator (the class being trained), None otherwise.
    ``channels_last``: run the pass with the StyleGAN2 synthesis weights in channels-last order
    (:func:`~nada_core.training.runtime.channels_last_weights`; same scores up to float rounding);
    None (default) = on a CPU.
    """
    from ..settings import TRAIN
    from ..models.stylegan2 import SynthesisNetwork
    from .runtime import channels_last_weights, forked_noise

    if k < 1:
        raise InputError(f"layer count k must be at least 1, got {k}")
    TRAIN.check("n_select_codes", n_codes)
    TRAIN.check("select_steps", steps)
    TRAIN.check("select_lr", lr)
    if chunk is not None:
        TRAIN.check("select_chunk", chunk)
    cands = list(candidate_w_indices(G) if candidates is None else candidates)
    if not cands:
        raise InputError("no W+ index has trainable layers; enable conv or toRGB training")
    device = G.w_avg.device
    size = n_codes if not chunk else min(int(chunk), n_codes)
    params = list(G.parameters())
    saved_flags = [p.requires_grad for p in params]
    if channels_last is None:  # measured faster on CPU; on CUDA it is the --channels-last switch's business
        channels_last = device.type == "cpu" and isinstance(G.synthesis, SynthesisNetwork)
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad(), channels_last_weights(G.synthesis, channels_last):
            w0 = _initial_codes(G, n_codes, rng, device, c)
            noise_seed = int(torch.randint(0, 2**62, (1,), generator=rng)) if noise_mode == "random" else None
            w = w0.clone()
            for step in range(steps):
                grad = torch.empty_like(w)
                with forked_noise(device, None if noise_seed is None else noise_seed + step):
                    for start in range(0, n_codes, size):
                        wc = w[start:start + size].detach().requires_grad_(True)
                        ctx = autocast() if autocast is not None else contextlib.nullcontext()
                        with ctx:
                            img = G.synthesis(wc, noise_mode=noise_mode)
                            loss = global_loss(img)
                        # Mean over all codes = sum over chunks of (chunk mean * chunk share).
                        (g,) = torch.autograd.grad(loss.float() * (wc.shape[0] / n_codes), wc)
                        grad[start:start + size] = g
                        del img, loss, g  # free this chunk's graph before the next one
                with torch.no_grad():
                    w = w - lr * grad  # plain SGD step, as in the paper
            scores = (w.detach() - w0).abs().mean(dim=-1).mean(dim=0).float().cpu()  # [num_ws]
    finally:
        for p, flag in zip(params, saved_flags):
            p.requires_grad_(flag)
    kk = min(int(k), len(cands))
    cand_scores = scores[torch.tensor(cands, dtype=torch.long)]
    order = torch.topk(cand_scores, kk).indices.tolist()
    return LayerSelection(indices=[cands[j] for j in order], scores=scores)


# ----------------------------------------------------------------------------------------------
# Schedule + stateful selector used by the trainer
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerSchedule:
    """When to re-select and how many layers: see the module docstring for the exact rule."""

    k: int | None = None  # None = all layers, no selection
    interval: int = 1
    falloff: int = 0
    min_k: int = 1

    def __post_init__(self) -> None:
        # The same checks as the settings table (TrainConfig has run them already for a trainer).
        from ..settings import TRAIN, Setting, check

        if self.k is not None:
            check(Setting("layers k", "int", None, "layer count", lo=1), self.k)
        TRAIN.check("interval", self.interval)
        TRAIN.check("falloff", self.falloff)
        check(Setting("min_k", "int", 1, "smallest layer count", lo=1), self.min_k)

    def k_at(self, step: int) -> int | None:
        """Layer count for a selection made at 0-based ``step`` (None = all)."""
        if self.k is None:
            return None
        if self.falloff <= 0:
            return self.k
        return max(min(self.min_k, self.k), self.k - step // self.falloff)

    def reselects_at(self, step: int) -> bool:
        return step % self.interval == 0


class LayerSelector:
    """Keeps the current selection and re-runs :func:`select_layers` when the schedule says so.

    State (``state_dict``/``load_state_dict``) is the current index list, so a resumed run
    continues with exactly the layers an uninterrupted run would have.
    """

    def __init__(self, schedule: LayerSchedule, options: FreezeOptions = FreezeOptions(),
                 n_codes: int = 8, steps: int = 1, lr: float = 0.01, chunk: int | None = None,
                 c: torch.Tensor | None = None, allowed: set[int] | None = None,
                 channels_last: bool | None = None) -> None:
        self.schedule = schedule
        self.channels_last = channels_last  # of the pass's weights: see select_layers (None = its default)
        self.allowed = None if allowed is None else set(allowed)  # W+ entries selection may pick (None = all)
        self.c = c  # class of a conditional generator ([1, c_dim] one-hot), None otherwise
        self.options = options
        self.n_codes, self.steps, self.lr, self.chunk = n_codes, steps, lr, chunk
        self.current: list[int] | None = None
        self.last_scores: torch.Tensor | None = None
        self.ran_selection = False  # whether the last indices_for_step call ran a selection pass

    def indices_for_step(self, step: int, G, global_loss: GlobalLoss | None, rng: torch.Generator,
                         noise_mode: str = "const", autocast=None) -> tuple[list[int], bool]:
        """Return ``(indices, changed)`` for 0-based training ``step``; runs a selection pass only
        when the schedule asks for one and ``k`` is below the number of candidates."""
        cands = candidate_w_indices(G, self.options)
        if self.allowed is not None:
            cands = [i for i in cands if i in self.allowed]
        self.ran_selection = False
        if not (self.current is None or self.schedule.reselects_at(step)):
            return list(self.current), False
        k = self.schedule.k_at(step)
        if k is None or k >= len(cands):
            new = list(cands)  # everything trains: no selection pass, no CLIP cost
        else:
            if global_loss is None:
                raise InputError("layer selection needs a global loss")
            sel = select_layers(G, global_loss, k, rng=rng, candidates=cands, n_codes=self.n_codes,
                                steps=self.steps, lr=self.lr, noise_mode=noise_mode, autocast=autocast,
                                chunk=self.chunk, c=None if self.c is None else self.c.to(G.w_avg.device),
                                channels_last=self.channels_last)
            self.last_scores = sel.scores
            self.ran_selection = True
            new = sel.indices
        changed = new != self.current
        self.current = new
        return list(new), changed

    def state_dict(self) -> dict:
        return {"current": None if self.current is None else [int(i) for i in self.current]}

    def load_state_dict(self, state: dict) -> None:
        cur = state.get("current")
        self.current = None if cur is None else [int(i) for i in cur]


def parse_layers(value: int | str | None) -> int | str:
    """Number of W+ layers trained per step (``num_layers``, a count, not indices).

    ``"all"``/``None``/``"ALL"`` -> ``"all"``; ``"12"``/``12`` -> 12; anything else -> InputError.
    """
    if value is None:
        return "all"
    if isinstance(value, str):
        s = value.strip().lower()
        if s == "all":
            return "all"
        try:
            value = int(s)
        except ValueError:
            raise InputError(f"layers must be a whole number >= 1 or 'all', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"layers must be a whole number >= 1 or 'all', got {value!r}")
    return value
