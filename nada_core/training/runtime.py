"""Runtime helpers of the trainer: independent generator copies, autograd-safe CLIP weights, grad
mode under ComfyUI's inference mode, Ctrl-C deferral around an optimiser update, gradient norm."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import torch

from ..models.registry import AnyGenerator as Generator, build_generator


def copy_generator(source: Generator, device: torch.device) -> Generator:
    """An independent copy of ``source`` on ``device`` made of ordinary (non-inference) tensors.

    The copy is built on the meta device (no random initialisation), then every parameter and
    buffer (non-persistent ones included) is cloned in from the source.
    """
    from ..domains.apply import materialize

    source = materialize(source)  # a generator with domains applied is copied with them baked in
    with torch.inference_mode(False), torch.no_grad():
        with torch.device("meta"):
            G = build_generator(source.config)
        G = G.to_empty(device=device)
        src_params = dict(source.named_parameters())
        src_bufs = dict(source.named_buffers())
        for name, p in G.named_parameters():
            p.copy_(src_params[name].detach().clone())
        for name, b in G.named_buffers():
            b.copy_(src_bufs[name].detach().clone())
    return G.eval()


def make_autograd_safe(module: torch.nn.Module) -> int:
    """Replace parameters/buffers of ``module`` that are inference tensors with ordinary copies.

    A CLIP model loaded under ``torch.inference_mode()`` (as ComfyUI loads everything) holds
    inference tensors, which autograd refuses to save for backward, so gradients could not flow
    through it to the generator. Values are unchanged; returns the number of tensors replaced.
    """
    replaced = 0
    with torch.inference_mode(False), torch.no_grad():
        for mod in module.modules():
            for name, p in list(mod._parameters.items()):
                if p is not None and p.is_inference():
                    mod._parameters[name] = torch.nn.Parameter(p.clone(), requires_grad=p.requires_grad)
                    replaced += 1
            for name, b in list(mod._buffers.items()):
                if b is not None and b.is_inference():
                    mod._buffers[name] = b.clone()
                    replaced += 1
    return replaced


@contextlib.contextmanager
def grad_mode() -> Iterator[None]:
    """Inference mode off and grad on, whatever the caller had (ComfyUI runs under inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so an optimiser update is never applied half-way.

    Only possible in the main thread; elsewhere (ComfyUI's worker) this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: received.append(a))
    except (ValueError, OSError):  # pragma: no cover - signals unavailable
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def grad_norm(params, device: torch.device) -> torch.Tensor:
    """L2 norm of all existing gradients, as a 0-d float32 tensor (no device sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=device)
    try:
        norms = torch._foreach_norm(grads)
    except (AttributeError, RuntimeError):  # pragma: no cover - older/unusual backends
        norms = [g.norm() for g in grads]
    return torch.stack([n.float() for n in norms]).norm()


def seed_device_rng(device: torch.device, seed: int) -> None:
    """Seed the generator that ``torch.randn(device=device)`` draws from (only that one)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    elif device.type == "mps":  # pragma: no cover - no MPS in CI
        torch.mps.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


@contextlib.contextmanager
def forked_noise(device: torch.device, seed: int | None) -> Iterator[None]:
    """Run the block with ``device``'s random generator seeded with ``seed`` and restore the caller's
    generator state afterwards (``seed=None``: the block draws from the caller's state)."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_device_rng(device, seed)
        yield


@contextlib.contextmanager
def channels_last_weights(module: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Hold ``module``'s 4-D parameters (convolution weights ``[out, in, kh, kw]``) in channels-last
    memory order for the block, then give each back its original tensor (same values, same strides,
    same storage: not a copy back, so a 1x1 kernel cannot keep channels-last strides afterwards).

    oneDNN's CPU convolutions then run channels-last, which on this project's CPU makes the
    selection pass (forward + input gradients, no weight gradients) about 10% faster; the values
    are those of the usual layout up to float rounding. Parameter objects stay the same, so an
    optimiser holding them is unaffected. ``enabled=False`` does nothing.
    """
    saved: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    if enabled:
        with torch.no_grad():
            for p in module.parameters():
                if p.dim() == 4:
                    saved.append((p, p.data))
                    p.data = p.data.contiguous(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for p, data in saved:
            p.data = data
