"""An NVIDIA generator that is already in memory (another node pack's ``STYLEGAN`` object) -> ours.

spacepxl/ComfyUI-StyleGan and dfl/ComfyUI-StyleGan unpickle NVIDIA ``.pkl`` files with NVIDIA's
own code, so their ``STYLEGAN`` socket carries a live ``torch.nn.Module`` (the ``Generator`` of
stylegan2-ada-pytorch / stylegan3, a ``torch_utils.persistence`` class). We take its weights
without executing anything of it: no method is called (not even ``state_dict()``, which a class
may override); the module tree is read from each module's instance ``__dict__`` (``_parameters``,
``_buffers``, ``_modules``, ``_init_args``/``_init_kwargs``, plain attributes such as
``conv_clamp``), which is exactly what a pickle of it would hold. That tree is handed as
:class:`~nada_core.formats.safe_unpickle.PersistentStub` objects to the same converter as ``.pkl``
files (:func:`nada_core.formats.nvidia.convert_nvidia_generator`), so the name mapping, the
architecture checks and the size limits are the ones used for files.

The lineage of such a generator is the sha256 of its weights (:func:`weights_sha256`): the same
object converted twice gives the same lineage, so latent codes made from it stay usable.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..errors import CheckpointError, InputError, NadaError, short_reason
from .safe_unpickle import MAX_MODULE_DEPTH, MAX_MODULES, PersistentStub

FORMAT_NVIDIA_MODULE = "stylegan2-ada-module"
SOURCE = "the StyleGAN model from the other node pack"


def _instance_dict(obj: Any) -> dict:
    """``obj.__dict__`` without running ``__getattr__``/``__getattribute__`` overrides of its class."""
    d = object.__getattribute__(obj, "__dict__")
    return d if isinstance(d, dict) else {}


def _is_module(obj: Any) -> bool:
    # issubclass on type(obj): isinstance() may ask the object for its __class__, i.e. run its code.
    return issubclass(type(obj), torch.nn.Module)


def _class_attr(cls: type, name: str) -> Any:
    """A class attribute looked up in the MRO's ``__dict__``s (no descriptors or metaclass code run)."""
    for klass in type.__getattribute__(cls, "__mro__"):
        value = type.__getattribute__(klass, "__dict__").get(name)
        if value is not None:
            return value
    return None


def module_to_stub(module: Any) -> PersistentStub:
    """The module tree of a live ``torch.nn.Module`` as inert :class:`PersistentStub` objects.

    Tensors are detached CPU copies; a module shared or cyclic in the tree becomes one stub; trees
    deeper than :data:`MAX_MODULE_DEPTH` or larger than :data:`MAX_MODULES` are refused.
    """
    memo: dict[int, PersistentStub] = {}

    def convert(mod: Any, depth: int) -> PersistentStub:
        if id(mod) in memo:
            return memo[id(mod)]
        if depth > MAX_MODULE_DEPTH or len(memo) >= MAX_MODULES:
            raise CheckpointError(f"{SOURCE}: its module tree is deeper or larger than any generator's")
        cls = type(mod)
        src = _class_attr(cls, "_orig_module_src")
        stub = PersistentStub(str(type.__getattribute__(cls, "__name__")), src if isinstance(src, str) else "",
                              None, {})
        memo[id(mod)] = stub
        state: dict[str, Any] = {}
        for key, value in _instance_dict(mod).items():
            if key in ("_parameters", "_buffers"):
                state[key] = {k: _cpu(v) for k, v in (value or {}).items() if isinstance(v, torch.Tensor)}
            elif key == "_modules":
                state[key] = {k: convert(v, depth + 1) for k, v in (value or {}).items() if _is_module(v)}
            elif key in ("_init_args", "_init_kwargs", "_non_persistent_buffers_set") or _plain(value):
                state[key] = value
        stub.state = state
        return stub

    return convert(module, 0)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True)


def _plain(value: Any) -> bool:
    """Attribute values a pickle of the module would carry that the converter may check (numbers, text)."""
    return value is None or isinstance(value, (bool, int, float, str))


def weights_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over ``(name, dtype, shape, bytes)`` of every tensor, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def generator_from_nvidia_module(module: Any, device: str | torch.device = "cpu"):
    """Our :class:`~nada_core.models.stylegan2.Generator` (eval, frozen, on ``device``) with the
    weights of an in-memory NVIDIA StyleGAN2(-ADA) ``Generator`` module; see the module docstring.

    Raises :class:`InputError` for something that is not a torch module and :class:`CheckpointError`
    (one line) for generators we cannot represent (StyleGAN3, class-conditional, other layouts).
    """
    from .checkpoints import FORMAT_NVIDIA, _build, _device
    from .nvidia import convert_nvidia_generator

    if not _is_module(module):
        raise InputError(f"expected an NVIDIA StyleGAN generator (a torch module) from the other StyleGAN pack's "
                         f"loader, got {type(module).__name__}")
    with torch.inference_mode(False):
        try:
            stub = module_to_stub(module)
            conv = convert_nvidia_generator(stub, source=SOURCE, key="STYLEGAN")
            if conv.w_avg is None:
                raise CheckpointError(f"{SOURCE}: its mapping network has no w_avg buffer; not a stylegan2-ada-pytorch "
                                      f"generator")
            G = _build(conv.config, conv.state_dict, conv.w_avg, SOURCE)
            sha = weights_sha256(stub.tensors())
        except NadaError:
            raise
        except Exception as err:  # noqa: BLE001 - odd attributes of a foreign object: one line, as for files
            raise CheckpointError(f"{SOURCE}: its attributes have unexpected types or sizes ({type(err).__name__}: "
                                  f"{short_reason(err, 160)}); not a stylegan2-ada-pytorch generator") from None
        G.source_sha256 = sha
        G.metadata = {
            "format": FORMAT_NVIDIA_MODULE,
            "ema": True,
            "w_avg_origin": "mapping.w_avg",
            "source_sha256": sha,
            "source_format": FORMAT_NVIDIA,
            "source_file": "(in memory: STYLEGAN object of another node pack)",
            "provenance": {},
            **conv.notes,
        }
        return G.to(_device(device)).eval().requires_grad_(False)


def nvidia_module_layout(module: Any) -> dict:
    """``{"num_ws", "w_dim", "device"}`` of an in-memory NVIDIA generator, read from attributes only.

    ``device`` is where its mapping network's ``w_avg`` lives (where its synthesis expects codes);
    CPU when that cannot be told.
    """
    if not _is_module(module):
        raise InputError(f"expected an NVIDIA StyleGAN generator (a torch module), got {type(module).__name__}")
    d = _instance_dict(module)
    out: dict[str, Any] = {}
    for key in ("num_ws", "w_dim"):
        value = d.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
            raise CheckpointError(f"{SOURCE}: it has no integer '{key}' attribute; not a StyleGAN2/3 generator")
        out[key] = value
    device = torch.device("cpu")
    mapping = (d.get("_modules") or {}).get("mapping")
    if _is_module(mapping):
        w_avg = (_instance_dict(mapping).get("_buffers") or {}).get("w_avg")
        if isinstance(w_avg, torch.Tensor):
            device = w_avg.device
    out["device"] = device
    return out
