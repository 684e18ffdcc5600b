"""Stand-ins for the objects of spacepxl/dfl ComfyUI-StyleGan: their ``STYLEGAN`` model is an NVIDIA
``Generator`` unpickled with NVIDIA's code (a ``torch_utils.persistence`` class), i.e. a live
``torch.nn.Module`` tree whose ``__dict__``s are the pickled states :mod:`checkpoint_factories` builds.
"""

from __future__ import annotations

import torch

from checkpoint_factories import FakePersistent

FOREIGN_CALLS: list[str] = []  # methods of a live stand-in that something called (must stay empty)
_TRAPPED = ("forward", "state_dict", "named_parameters", "parameters", "buffers", "modules", "children",
            "__getattr__", "__getattribute__", "to", "cuda", "cpu", "eval", "train", "requires_grad_")


def _trap(name: str):
    def method(self, *args, **kwargs):
        FOREIGN_CALLS.append(name)
        raise AssertionError(f"the foreign module's {name} was called")
    return method


def _live_class(class_name: str, module_src: str, trapped: tuple[str, ...]) -> type:
    """Like the class ``torch_utils.persistence`` re-creates on unpickling (``_orig_module_src`` on the
    class, the original class name), except that the ``trapped`` methods raise and record the call."""
    body = {"_orig_module_src": module_src, "_orig_class_name": class_name, **{n: _trap(n) for n in trapped}}
    return type(class_name, (torch.nn.Module,), body)


def live_nvidia_module(fake: FakePersistent, trapped: tuple[str, ...] = _TRAPPED,
                       _classes: dict | None = None) -> torch.nn.Module:
    """A :class:`FakePersistent` tree (:func:`build_nvidia_generator`) as the live ``torch.nn.Module``
    tree that unpickling it with NVIDIA's code gives: each object's ``__dict__`` is the pickled state.
    ``trapped``: the methods that raise (default: all that matter, attribute lookup included)."""
    classes = {} if _classes is None else _classes
    key = (fake.class_name, fake.module_src)
    if key not in classes:
        classes[key] = _live_class(*key, trapped)
    obj = object.__new__(classes[key])
    state = dict(fake.state)
    state["_modules"] = {k: live_nvidia_module(v, trapped, classes) if isinstance(v, FakePersistent) else v
                         for k, v in state["_modules"].items()}
    object.__getattribute__(obj, "__dict__").update(state)
    return obj
