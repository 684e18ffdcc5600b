"""Device choice: ``auto`` picks CUDA, then Apple MPS, then CPU; anything else is checked first."""

from __future__ import annotations

import torch

from .errors import InputError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_choices() -> list[str]:
    """The device names valid on this machine, e.g. ``["auto", "cpu", "cuda", "cuda:0"]``."""
    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> best available; otherwise a device that exists here, or one
    :class:`InputError` line listing the valid choices (unknown names, ``cuda:abc``, ``tpu``,
    CUDA/MPS absent, a CUDA index past the last GPU)."""
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        return best_device()
    choices = ", ".join(device_choices())
    raw = device.strip() if isinstance(device, str) else str(device)
    text = raw if len(raw) <= 40 else raw[:40] + "..."  # keep the message one short line
    try:
        dev = device if isinstance(device, torch.device) else torch.device(raw.lower())
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"unknown device {text!r}; use one of: {choices}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {text!r} asked for, but CUDA is not available here; use one of: {choices}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {text!r} does not exist: this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s); use one of: {choices}")
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise InputError(f"device {text!r} asked for, but Apple MPS is not available here; use one of: {choices}")
        return dev
    raise InputError(f"device {text!r} is not supported; use one of: {choices}")
