"""Device choice: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .errors import InputError


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> best available; otherwise validate that the device exists."""
    if device is None or (isinstance(device, str) and device in ("", "auto")):
        return best_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r} asked for, but Apple MPS is not available here; use --device cpu")
    return dev
