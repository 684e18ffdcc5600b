"""Shared node plumbing: registration, input specs with tooltips, and error translation.

Nodes use ComfyUI's classic (V1) node API: ``INPUT_TYPES``, ``RETURN_TYPES``, ``RETURN_NAMES``,
``FUNCTION``, ``CATEGORY``, ``OUTPUT_NODE``, ``DESCRIPTION``, ``OUTPUT_TOOLTIPS``.
:func:`register` adds a class to the pack's mappings and wraps its ``FUNCTION`` so that a
``NadaError`` reaches ComfyUI as one short message ``"<Node display name>: <problem and fix>"``
instead of a deep traceback.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from . import comfy_bridge

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

CATEGORY_LOADERS = "NADA/loaders"
CATEGORY_TRAIN = "NADA/train"
CATEGORY_LATENT = "NADA/latent"
CATEGORY_IMAGE = "NADA/image"
CATEGORY_GENERATOR = "NADA/generator"

MAX_SEED = 2**32 - 1  # NVIDIA-compatible seeds are numpy RandomState seeds


PACK_NAME = "ComfyUI-NADA"


class NadaNodeError(RuntimeError):
    """What a node raises for a user-fixable problem; the message is meant to be shown as is."""


# ComfyUI shows an error's type as ``<module>.<class>``, and it imports this pack under its folder
# path as the module name, so the dialog read "<ComfyUI folder>/custom_nodes/ComfyUI-NADA.nodes.
# common.NadaNodeError". A fixed module name shows "ComfyUI-NADA.NadaNodeError" and no private path.
NadaNodeError.__module__ = PACK_NAME


def node_error(node_cls_or_self: Any, message: str) -> NadaNodeError:
    """``NadaNodeError("<display name>: <message>")`` for raising from node code."""
    name = getattr(node_cls_or_self, "DISPLAY_NAME", type(node_cls_or_self).__name__)
    return NadaNodeError(f"{name}: {message}")


def _guard(fn: Callable, display_name: str) -> Callable:
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        from nada_core.errors import Interrupted, NadaError

        from .paths import ModelNotFound

        try:
            return fn(self, *args, **kwargs)
        except Interrupted:
            if comfy_bridge.in_comfyui():
                comfy_bridge.raise_interrupted()  # ComfyUI shows "interrupted", not an error
            raise
        except (NadaError, ModelNotFound) as err:
            raise NadaNodeError(f"{display_name}: {err}") from None

    run.__wrapped_by_nada__ = True
    return run


def register(display_name: str):
    """Class decorator: add a node to the pack under its class name with ``display_name``."""

    def deco(cls: type) -> type:
        cls.DISPLAY_NAME = display_name
        fn = getattr(cls, cls.FUNCTION)
        if not getattr(fn, "__wrapped_by_nada__", False):
            setattr(cls, cls.FUNCTION, _guard(fn, display_name))
        NODE_CLASS_MAPPINGS[cls.__name__] = cls
        NODE_DISPLAY_NAME_MAPPINGS[cls.__name__] = display_name
        return cls

    return deco


# ------------------------------------------------------------------------------------ input specs


def socket(type_name: str, tooltip: str, **extra) -> tuple:
    """A link-only input of ``type_name`` (e.g. ``STYLEGAN_GENERATOR``)."""
    return (type_name, {"tooltip": tooltip, **extra})


def int_input(default: int, min: int, max: int, tooltip: str, step: int = 1, **extra) -> tuple:
    return ("INT", {"default": default, "min": min, "max": max, "step": step, "tooltip": tooltip, **extra})


def float_input(default: float, min: float, max: float, step: float, tooltip: str, **extra) -> tuple:
    return ("FLOAT", {"default": default, "min": min, "max": max, "step": step, "tooltip": tooltip, **extra})


def string_input(default: str, tooltip: str, multiline: bool = False, **extra) -> tuple:
    return ("STRING", {"default": default, "multiline": multiline, "tooltip": tooltip, **extra})


def bool_input(default: bool, tooltip: str, on: str | None = None, off: str | None = None) -> tuple:
    opts: dict[str, Any] = {"default": default, "tooltip": tooltip}
    if on:
        opts["label_on"] = on
    if off:
        opts["label_off"] = off
    return ("BOOLEAN", opts)


def combo(options: list[str], tooltip: str, default: str | None = None) -> tuple:
    opts: dict[str, Any] = {"tooltip": tooltip}
    if default is not None:
        opts["default"] = default
    return (list(options), opts)


def seed_input(tooltip: str, default: int = 0, control: bool = True) -> tuple:
    """A seed; ``control`` adds ComfyUI's "control after generate" widget (fixed/increment/randomize)."""
    return ("INT", {"default": default, "min": 0, "max": MAX_SEED, "step": 1, "tooltip": tooltip,
                    "control_after_generate": control})


def class_input() -> tuple:
    """``class_index`` of a class-conditional generator (-1 = none); range and tooltip from the settings table."""
    from nada_core.settings import SAMPLE

    return SAMPLE.node_input("class_index")
