"""CLIP weight files: reading state dicts safely, finding them in folders, and what their shapes say.

Nothing here executes pickled code: ``.safetensors``, ``torch.load(weights_only=True)`` or the
TorchScript reader of :mod:`.torchscript`.
"""

from __future__ import annotations

import math
import os
import pickle
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from ...errors import ClipError, short_reason
from .spec import HF_CONFIG_NAME, HF_WEIGHT_NAMES, MODELS_HINT
from .torchscript import is_torchscript_archive, read_torchscript_state_dict


#: Keys that OpenAI's checkpoints carry besides the weights (model hyper-parameters).
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
#: OpenAI's released file names (their layout implies QuickGELU).
_OPENAI_FILE_RE = re.compile(r"^(RN50|RN101|RN50x4|RN50x16|RN50x64|ViT-B-32|ViT-B-16|ViT-L-14|ViT-L-14-336px)\.pt$",
                             re.IGNORECASE)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipError(f"CLIP weights not found: {path}; check the path (put CLIP weights in {MODELS_HINT})")
    if path.is_dir():
        raise ClipError(f"{path} is a folder; pass the folder on its own (it needs {HF_CONFIG_NAME}) "
                        f"or the weights file inside it")
    if path.stat().st_size == 0:
        raise ClipError(f"CLIP weights file {path} is empty (0 bytes); the download was probably "
                        f"interrupted: download it again")


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """Read weights from a file without executing anything. Returns ``(state_dict, format)``.

    ``format`` is ``"safetensors"``, ``"torch"`` (``torch.load(weights_only=True)``) or
    ``"torchscript"`` (an OpenAI-style TorchScript archive, see :func:`read_torchscript_state_dict`).
    Wrappers (``{"state_dict": ...}``) and DataParallel ``module.`` prefixes are removed.
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd, fmt = load_file(str(path), device="cpu"), "safetensors"
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ClipError(f"cannot read CLIP weights {path}: not a valid .safetensors file ({short_reason(err)}); "
                            f"download it again") from None
    elif is_torchscript_archive(path):
        sd, fmt = read_torchscript_state_dict(path), "torchscript"
    else:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            wanted = re.search(r"GLOBAL ([\w.]+)", str(err))
            if wanted:
                raise ClipError(f"refused to load CLIP weights {path}: unpickling it would call {wanted.group(1)}, "
                                f"which weights never need; nothing was executed; use a .safetensors copy") from None
            raise ClipError(f"cannot read CLIP weights {path}: not a PyTorch weights file or damaged; "
                            f"download it again") from None
        except Exception as err:
            raise ClipError(f"cannot read CLIP weights {path}: {short_reason(err)}; the file may be truncated, "
                            f"download it again") from None
        sd, fmt = _unwrap_state_dict(obj, path), "torch"
    if not sd:
        raise ClipError(f"CLIP weights file {path} holds no tensors; download it again")
    return sd, fmt


def _unwrap_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ClipError(f"{path} is not a CLIP state dict (found {type(obj).__name__}); "
                        f"pass an open_clip or OpenAI CLIP weights file")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def _find_folder_weights(folder: Path) -> Path:
    for name in HF_WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
    found = f" (found {', '.join(others[:4])}; these look like another library's layout)" if others else ""
    raise ClipError(f"CLIP folder {folder} has no {HF_WEIGHT_NAMES[0]} or {HF_WEIGHT_NAMES[2]}{found}; "
                    f"download the open_clip weights file into it")


def _is_openai_layout(sd: dict[str, torch.Tensor], path: Path, fmt: str) -> bool:
    """OpenAI's checkpoints: TorchScript, the extra hyper-parameter keys, or their file names + fp16."""
    if fmt == "torchscript" or any(k in sd for k in _OPENAI_EXTRA_KEYS):
        return True
    conv = sd.get("visual.conv1.weight")
    return bool(_OPENAI_FILE_RE.match(path.name)) and conv is not None and conv.dtype == torch.float16


_SUMMARY_LABELS = (
    ("vision_width", "vision width"), ("patch_size", "patch size"), ("vision_layers", "vision layers"),
    ("image_size", "image size"), ("text_width", "text width"), ("text_layers", "text layers"),
    ("context_length", "context length"), ("embed_dim", "embedding size"),
)


def _count_blocks(keys: Sequence[str], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in keys if (m := pat.match(k))})


def architecture_of_weights(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Shape facts of a ViT CLIP state dict (open_clip / OpenAI key layout); unknown parts are omitted."""
    out: dict[str, int] = {}
    keys = list(sd)
    conv = sd.get("visual.conv1.weight")
    if conv is not None and conv.ndim == 4:
        out["vision_width"], out["patch_size"] = int(conv.shape[0]), int(conv.shape[-1])
        layers = _count_blocks(keys, "visual.transformer.resblocks.")
        if layers:
            out["vision_layers"] = layers
        pos = sd.get("visual.positional_embedding")
        if pos is not None and pos.ndim == 2:
            grid = round(math.sqrt(pos.shape[0] - 1))
            if grid * grid == pos.shape[0] - 1:
                out["image_size"] = grid * out["patch_size"]
    pre = "text." if "text.ln_final.weight" in sd else ""
    ln = sd.get(pre + "ln_final.weight")
    if ln is not None:
        out["text_width"] = int(ln.shape[0])
        layers = _count_blocks(keys, pre + "transformer.resblocks.")
        if layers:
            out["text_layers"] = layers
    pos = sd.get(pre + "positional_embedding")
    if pos is not None and pos.ndim == 2:
        out["context_length"] = int(pos.shape[0])
    proj = sd.get("visual.proj")
    if proj is None:
        proj = sd.get(pre + "text_projection")
    if proj is not None and proj.ndim == 2:
        out["embed_dim"] = int(proj.shape[1])
    return out
