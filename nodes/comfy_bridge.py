"""The one place that talks to ComfyUI's own modules.

The pack must import and run without ComfyUI (tests, scripts), so nothing here imports
``comfy`` at module level. Rather than importing ComfyUI modules ourselves (importing
``comfy.model_management`` outside ComfyUI would initialise its device state, and an unrelated
package could be named ``folder_paths``), we use them only when ComfyUI has already imported
them, which is always the case when ComfyUI loads this pack. Without ComfyUI every helper falls
back to plain behaviour: no progress bar, no interrupt flag, the best torch device.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

PREVIEW_MAX_SIZE = 512  # longest side of the live preview sent to the browser, in pixels


def comfy_module(name: str) -> ModuleType | None:
    """ComfyUI's module ``name`` (e.g. ``"comfy.utils"``) if ComfyUI is running, else ``None``."""
    return sys.modules.get(name)


def folder_paths() -> ModuleType | None:
    """ComfyUI's ``folder_paths`` module, or ``None`` outside ComfyUI."""
    mod = sys.modules.get("folder_paths")
    # Guard against an unrelated module of the same name: ComfyUI's has these registries.
    if mod is not None and hasattr(mod, "folder_names_and_paths") and hasattr(mod, "get_folder_paths"):
        return mod
    return None


def in_comfyui() -> bool:
    """True when running inside ComfyUI (its model manager is loaded)."""
    return comfy_module("comfy.model_management") is not None


# ----------------------------------------------------------------------------------------- devices


def torch_device():
    """The device ComfyUI computes on (respects ``--cpu``, ``--cuda-device``...), else the best one."""
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    from nada_core.devices import best_device

    return best_device()


def free_memory() -> None:
    """Ask ComfyUI to unload the models it holds (diffusion models, VAEs...) before heavy work."""
    mm = comfy_module("comfy.model_management")
    if mm is None:
        return
    mm.unload_all_models()
    mm.soft_empty_cache()


# --------------------------------------------------------------------------------------- interrupt


def interrupt_requested() -> bool:
    """True once the user pressed Cancel in ComfyUI (the flag stays set until raised)."""
    mm = comfy_module("comfy.model_management")
    return bool(mm is not None and mm.processing_interrupted())


def raise_interrupted(message: str = "stopped by the user") -> None:
    """Raise the exception ComfyUI reports as "interrupted" (and clear its flag).

    Outside ComfyUI this raises :class:`nada_core.errors.Interrupted`.
    """
    mm = comfy_module("comfy.model_management")
    if mm is not None:
        mm.interrupt_current_processing(False)
        raise mm.InterruptProcessingException()
    from nada_core.errors import Interrupted

    raise Interrupted(message)


def is_comfy_interrupt(err: BaseException) -> bool:
    """Is ``err`` ComfyUI's own interrupt exception?"""
    mm = comfy_module("comfy.model_management")
    return mm is not None and isinstance(err, mm.InterruptProcessingException)


# ---------------------------------------------------------------------------------------- progress


class Progress:
    """ComfyUI's progress bar on the running node (with optional live previews), or nothing.

    ``update(step, preview)`` takes a PIL image for the preview; ComfyUI scales it down to
    :data:`PREVIEW_MAX_SIZE` and shows it on the node while the work runs.
    Note: ComfyUI's progress hook itself raises its interrupt exception when Cancel was
    pressed, so updating the bar is also an interrupt check.
    """

    def __init__(self, total: int) -> None:
        self.total = max(1, int(total))
        utils = comfy_module("comfy.utils")
        self._bar: Any = utils.ProgressBar(self.total) if utils is not None else None

    @property
    def active(self) -> bool:
        return self._bar is not None

    def update(self, step: int, preview=None) -> None:
        if self._bar is None:
            return
        payload = ("JPEG", preview.convert("RGB"), PREVIEW_MAX_SIZE) if preview is not None else None
        self._bar.update_absolute(min(int(step), self.total), self.total, payload)
