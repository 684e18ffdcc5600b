"""CLIP models that guide training: offline-first loading plus differentiable encoders.

A CLIP model is named by a *spec* string (see :func:`load_clip`):

- ``"ViT-B-32:/models/open_clip/vit-b-32.safetensors"``: an open_clip architecture name and a local
  weights file (``.safetensors``, or a ``.bin``/``.pt``/``.pth`` state dict, read with
  ``torch.load(weights_only=True)``);
- ``"/models/open_clip/CLIP-ViT-B-16-laion2B-s34B-b88K"``: a folder in the Hugging Face layout
  (``open_clip_config.json`` plus ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``);
- ``"/models/clip/ViT-B-32.pt"``: one of OpenAI's original TorchScript files (or a state dict in
  OpenAI's layout). The weights are read from the archive with a restricted unpickler; no TorchScript
  code is run. The architecture is inferred from the weights;
- ``"ViT-B-32:openai"``, ``"ViT-B-16:laion2b_s34b_b88k"``, ``"hf-hub:org/repo"``: download by tag.
  Needs an internet connection; offline it fails within a few seconds with a message saying
  which files to download and where to put them.

OpenAI's weights (and some LAION-400M / MetaCLIP ones) were trained with QuickGELU. The
``-quickgelu`` variant of the architecture is picked automatically for the ``openai`` tag,
OpenAI's files, Hugging Face configs that say ``quick_gelu`` and hub folders named ``*openai*``
whose config is silent; for a bare weights file name the variant yourself
(``ViT-B-32-quickgelu:/path/file.safetensors``) or pass ``quick_gelu=True``.

Images: :meth:`ClipModel.encode_image` takes generator output ``[N, C, H, W]`` in [-1, 1] of any
size and reproduces open_clip's own PIL preprocessing (shortest-side bicubic resize with
antialiasing, centre crop, mean/std normalisation) on tensors, so gradients reach the generator.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import math
import os
import pickle
import re
import socket
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from ..errors import ClipError, InputError, non_negative_weight

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: Weight file names looked for in a Hugging Face layout folder, best first.
HF_WEIGHT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
HF_CONFIG_NAME = "open_clip_config.json"
#: Where the docs tell users to put CLIP weights (relative to the ComfyUI models folder or cwd).
MODELS_HINT = "models/open_clip"
#: Seconds to wait for a TCP connection before declaring the hub unreachable.
PROBE_TIMEOUT_S = 2.5
#: Keys that OpenAI's checkpoints carry besides the weights (model hyper-parameters).
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
#: OpenAI's released file names (their layout implies QuickGELU).
_OPENAI_FILE_RE = re.compile(r"^(RN50|RN101|RN50x4|RN50x16|RN50x64|ViT-B-32|ViT-B-16|ViT-L-14|ViT-L-14-336px)\.pt$",
                             re.IGNORECASE)
_TEXT_CACHE_SIZE = 4096


# ------------------------------------------------------------------------------------------------
# Spec parsing
# ------------------------------------------------------------------------------------------------
@dataclass
class ClipSpec:
    """A parsed spec. ``kind``: ``file`` (name + weights file, or a bare file), ``folder``
    (Hugging Face layout), ``tag`` (name + pretrained tag) or ``hub`` (``hf-hub:org/repo``)."""

    raw: str
    kind: str
    arch: str | None = None
    path: Path | None = None
    tag: str | None = None


def _looks_like_path(text: str) -> bool:
    return ("/" in text or "\\" in text or text.startswith(("~", "."))
            or text.lower().endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt")))


def parse_clip_spec(spec: str) -> ClipSpec:
    """Split a spec string into its parts (no file access beyond ``exists`` checks)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ClipError("empty CLIP spec; pass e.g. 'ViT-B-32:models/open_clip/vit-b-32.safetensors' "
                        "or a folder holding open_clip_config.json")
    raw = spec.strip()
    if raw.startswith("hf-hub:"):
        repo = raw[len("hf-hub:"):].strip().strip("/")
        if repo.count("/") != 1:
            raise ClipError(f"CLIP spec {raw!r}: write the hub repository as 'hf-hub:org/name'")
        return ClipSpec(raw, "hub", tag=repo)
    if raw.startswith("local-dir:"):
        return ClipSpec(raw, "folder", path=Path(raw[len("local-dir:"):]).expanduser())
    whole = Path(raw).expanduser()
    if whole.exists():
        return ClipSpec(raw, "folder" if whole.is_dir() else "file", path=whole)
    name, sep, rest = raw.partition(":")
    if not sep:
        if _looks_like_path(raw):
            raise ClipError(f"CLIP weights not found: {whole}; check the path "
                            f"(put CLIP weights in {MODELS_HINT})")
        raise ClipError(f"CLIP spec {raw!r} names no weights; pass '{raw}:/path/to/weights.safetensors', "
                        f"a folder with {HF_CONFIG_NAME}, or '{raw}:openai' to download (needs internet)")
    name, rest = name.strip(), rest.strip()
    if not name or not rest:
        raise ClipError(f"CLIP spec {raw!r} is incomplete; write it as 'MODEL:weights-file' or 'MODEL:tag'")
    if len(name) == 1 and name.isalpha() and rest.startswith(("\\", "/")):  # Windows drive letter
        raise ClipError(f"CLIP weights not found: {raw}; check the path")
    if _looks_like_path(rest) or Path(rest).expanduser().exists():
        return ClipSpec(raw, "file", arch=name, path=Path(rest).expanduser())
    return ClipSpec(raw, "tag", arch=name, tag=rest)


# ------------------------------------------------------------------------------------------------
# Reading weight files (never unsafe unpickling)
# ------------------------------------------------------------------------------------------------
def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipError(f"CLIP weights not found: {path}; check the path (put CLIP weights in {MODELS_HINT})")
    if path.is_dir():
        raise ClipError(f"{path} is a folder; pass the folder on its own (it needs {HF_CONFIG_NAME}) "
                        f"or the weights file inside it")
    if path.stat().st_size == 0:
        raise ClipError(f"CLIP weights file {path} is empty (0 bytes); the download was probably "
                        f"interrupted: download it again")


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` is a TorchScript zip (``<root>/code/`` or ``<root>/constants.pkl`` entries)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.count("/") >= 1 and (n.split("/", 1)[1].startswith("code/")
                                               or n.split("/", 1)[1] == "constants.pkl")
                       for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


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
            raise ClipError(f"cannot read CLIP weights {path}: not a valid .safetensors file ({_short(err)}); "
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
            raise ClipError(f"cannot read CLIP weights {path}: {_short(err)}; the file may be truncated, "
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


def _short(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- TorchScript archives -----------------------------------------------------------------------
class _ScriptObjectStub:
    """Inert stand-in for a pickled ``__torch__.*`` module object: keeps its attribute dict."""

    _qualname = "?"

    def __init__(self, *args, **kwargs) -> None:
        self._state: dict = {}

    def __setstate__(self, state) -> None:
        self._state = state if isinstance(state, dict) else {"__state__": state}


class _StorageType:
    """Marker for ``torch.FloatStorage`` & co. in a pickle: carries only the dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_ignored) -> torch.Tensor:
    size, stride = tuple(size), tuple(stride)
    if any(s < 0 for s in size) or any(s < 0 for s in stride) or offset < 0:
        raise ClipError("TorchScript archive holds a tensor with a negative size or stride; the file is corrupt")
    need = offset + (sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0)
    if need > storage.numel():
        raise ClipError("TorchScript archive holds a tensor larger than its storage; the file is corrupt")
    return storage.as_strided(size, stride, offset)


def _rebuild_parameter(data, requires_grad=False, *_ignored):
    return data


def _passthrough(value, *_ignored):
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for TorchScript ``data.pkl``: tensors, containers and inert module stubs only."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch.jit._pickle", "restore_type_tag"): _passthrough,
        ("torch.jit._pickle", "build_intlist"): _passthrough,
        ("torch.jit._pickle", "build_doublelist"): _passthrough,
        ("torch.jit._pickle", "build_boollist"): _passthrough,
        ("torch.jit._pickle", "build_tensorlist"): _passthrough,
        ("torch.jit._pickle", "build_complexlist"): _passthrough,
    }

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._root, self._path = archive, root, path
        self._storages: dict[str, torch.Tensor] = {}
        self._stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module.startswith("__torch__"):
            qual = f"{module}.{name}"
            if qual not in self._stubs:
                self._stubs[qual] = type(name, (_ScriptObjectStub,), {"_qualname": qual})
            return self._stubs[qual]
        raise ClipError(f"refused to load {self._path}: its data.pkl asks for {module}.{name}, which a CLIP "
                        f"checkpoint never needs; nothing was executed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise ClipError(f"cannot read {self._path}: unknown storage reference in data.pkl; the file is corrupt")
        stype, key = pid[1], str(pid[2])
        dtype = stype.dtype if isinstance(stype, _StorageType) else None
        if dtype is None:
            raise ClipError(f"cannot read {self._path}: unsupported storage type in data.pkl")
        if key not in self._storages:
            try:
                raw = self._archive.read(f"{self._root}/data/{key}")
            except KeyError:
                raise ClipError(f"cannot read {self._path}: storage {key} is missing from the archive; "
                                f"the file is truncated, download it again") from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) % itemsize:
                raise ClipError(f"cannot read {self._path}: storage {key} has a partial element; the file is corrupt")
            self._storages[key] = (torch.frombuffer(bytearray(raw), dtype=dtype) if raw
                                   else torch.empty(0, dtype=dtype))
        return self._storages[key]


def read_torchscript_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Recover the tensors of a TorchScript archive (e.g. OpenAI's ``ViT-B-32.pt``) without running it.

    ``data.pkl`` is read with a restricted unpickler that only rebuilds tensors from the archive's
    ``data/`` entries and replaces ``__torch__.*`` module classes with inert stubs. Every tensor
    attribute of the module tree is returned under its dotted name (parameters, buffers and tensor
    attributes such as ``attn_mask``); the caller keeps the keys its model expects.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ClipError(f"cannot read {path}: not a TorchScript archive ({_short(err)})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if not pkls:
            raise ClipError(f"cannot read {path}: the archive has no data.pkl; download it again")
        root = pkls[0].split("/", 1)[0]
        try:
            byteorder = zf.read(f"{root}/byteorder").decode().strip()
        except KeyError:
            byteorder = "little"
        if byteorder != "little":
            raise ClipError(f"cannot read {path}: big-endian TorchScript archives are not supported")
        try:
            data = zf.read(pkls[0])
            root_obj = _RestrictedUnpickler(data, zf, root, path).load()
        except ClipError:
            raise
        except Exception as err:
            raise ClipError(f"cannot read {path}: data.pkl is damaged ({_short(err)}); download it again") from None
    sd: dict[str, torch.Tensor] = {}
    _collect_tensors(root_obj, "", sd, set())
    return sd


def _collect_tensors(obj: Any, prefix: str, out: dict, seen: set) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    state = obj._state if isinstance(obj, _ScriptObjectStub) else obj if isinstance(obj, dict) else None
    if state is None:
        return
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, (_ScriptObjectStub, dict)):
            _collect_tensors(value, f"{prefix}{key}.", out, seen)


# ------------------------------------------------------------------------------------------------
# Architecture bookkeeping
# ------------------------------------------------------------------------------------------------
def _open_clip():
    try:
        import open_clip
    except ImportError as err:  # pragma: no cover - the venv ships it
        raise ClipError(f"the open_clip_torch package is missing ({err}); run: pip install open_clip_torch") from None
    return open_clip


def list_architectures() -> list[str]:
    """Names of the open_clip architectures known to this process (built-in plus registered)."""
    return list(_open_clip().list_models())


def resolve_architecture(name: str) -> str:
    """Normalise an architecture name (``ViT-B/32`` -> ``ViT-B-32``, case-insensitive match)."""
    known = list_architectures()
    cleaned = name.strip().replace("/", "-")
    if cleaned in known:
        return cleaned
    lower = {k.lower(): k for k in known}
    if cleaned.lower() in lower:
        return lower[cleaned.lower()]
    close = difflib.get_close_matches(cleaned, known, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else "see open_clip.list_models()"
    raise ClipError(f"unknown CLIP model {name!r}; {hint}")


def _arch_config(arch: str) -> dict:
    cfg = _open_clip().get_model_config(arch)
    if cfg is None:  # pragma: no cover - resolve_architecture checked it
        raise ClipError(f"unknown CLIP model {arch!r}")
    return copy.deepcopy(cfg)


def _quickgelu_variant(arch: str) -> str | None:
    if arch.endswith("-quickgelu"):
        return arch
    cand = arch + "-quickgelu"
    return cand if cand in list_architectures() else None


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


def _architecture_of_config(cfg: dict) -> dict[str, int] | None:
    v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in v or "hf_model_name" in t or isinstance(v.get("layers", 12), (list, tuple)):
        return None
    img = v.get("image_size", 224)
    if isinstance(img, (list, tuple)):
        if len(set(img)) != 1:
            return None
        img = img[0]
    return {"vision_width": v.get("width", 768), "patch_size": v.get("patch_size", 16),
            "vision_layers": v.get("layers", 12), "image_size": img, "text_width": t.get("width", 512),
            "text_layers": t.get("layers", 12), "context_length": t.get("context_length", 77),
            "embed_dim": cfg.get("embed_dim")}


def architectures_matching(facts: dict[str, int], quick_gelu: bool | None = None) -> list[str]:
    """Registered architecture names whose config has exactly these shape facts."""
    if len(facts) < 4:
        return []
    oc = _open_clip()
    names = []
    for name in oc.list_models():
        cfg = oc.get_model_config(name)
        summary = _architecture_of_config(cfg) if cfg else None
        if summary and all(summary.get(k) == v for k, v in facts.items()):
            if quick_gelu is None or bool(cfg.get("quick_gelu", False)) == quick_gelu:
                names.append(name)
    return names


# ------------------------------------------------------------------------------------------------
# Building and filling models
# ------------------------------------------------------------------------------------------------
_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _build_model(model_cfg: dict, quick_gelu: bool, precision: str, label: str):
    """Instantiate an open_clip model from a config dict (random weights, no downloads)."""
    import importlib.util

    _open_clip()
    from open_clip.model import CLIP, CustomTextCLIP, convert_weights_to_lp, get_cast_dtype

    cfg = copy.deepcopy(model_cfg)
    if quick_gelu:
        cfg["quick_gelu"] = True
    vision, text = cfg.setdefault("vision_cfg", {}), cfg.setdefault("text_cfg", {})
    if "timm_model_name" in vision:
        if importlib.util.find_spec("timm") is None:
            raise ClipError(f"CLIP model {label} needs the timm package; run: pip install timm")
        vision["timm_model_pretrained"] = False
    if "hf_model_name" in text:
        text["hf_model_pretrained"] = False
    custom_text = bool(cfg.pop("custom_text", False)) or "hf_model_name" in text
    if "multimodal_cfg" in cfg:
        from open_clip.coca_model import CoCa as model_class
    else:
        model_class = CustomTextCLIP if custom_text else CLIP
    for key in ("model_name", "preprocess_cfg"):
        cfg.pop(key, None)
    try:
        model = model_class(**cfg, cast_dtype=get_cast_dtype(precision))
    except ClipError:
        raise
    except Exception as err:
        raise ClipError(f"cannot build CLIP model {label}: {_short(err)}") from None
    if _PRECISIONS[precision] is not None:
        convert_weights_to_lp(model, dtype=_PRECISIONS[precision])
    return model


def _adapt_state_dict(sd: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """Small layout fixes between checkpoints and the model (as open_clip's own loader makes)."""
    from open_clip.model import convert_to_custom_text_state_dict

    sd = {k: v for k, v in sd.items() if k not in _OPENAI_EXTRA_KEYS}
    expected = model.state_dict()
    if "positional_embedding" in sd and "positional_embedding" not in expected:
        sd = convert_to_custom_text_state_dict(sd)
    for key in ("logit_scale", "logit_bias"):
        if key in sd and key in expected and sd[key].ndim != expected[key].ndim and sd[key].numel() == 1:
            sd[key] = sd[key].reshape(expected[key].shape)
    if "logit_bias" in expected and "logit_bias" not in sd:
        sd["logit_bias"] = torch.zeros_like(expected["logit_bias"])
    pos_ids = "text.transformer.embeddings.position_ids"
    if pos_ids in sd and pos_ids not in expected:
        del sd[pos_ids]
    return sd


def _fill_model(model, sd: dict[str, torch.Tensor], path: Path, arch: str, drop_unexpected: bool) -> None:
    """Copy ``sd`` into ``model`` or raise a ClipError saying what does not fit."""
    sd = _adapt_state_dict(sd, model)
    expected = model.state_dict()
    if drop_unexpected:  # TorchScript archives also hold attributes that are no weights
        sd = {k: v for k, v in sd.items() if k in expected}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        raise ClipError(_mismatch_message(sd, expected, path, arch, missing, unexpected, wrong))
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ClipError(f"CLIP weights {path} hold NaN/inf values (e.g. {bad[0]}); the file is damaged, "
                        f"download it again")
    model.load_state_dict(sd, strict=True)


def _shape_mismatch(have: dict[str, int], want: dict[str, int] | None, path: Path, arch: str) -> str | None:
    """A message naming the architecture facts that differ (None when they agree)."""
    if not want:
        return None
    diffs = [f"{label} {have[k]} (it expects {want[k]})" for k, label in _SUMMARY_LABELS
             if k in have and want.get(k) is not None and have[k] != want[k]]
    if not diffs:
        return None
    msg = f"CLIP weights {path.name} do not fit {arch}: the weights have {', '.join(diffs[:4])}"
    fits = architectures_matching(have)
    preferred = [n for n in fits if n.endswith("-quickgelu") == arch.endswith("-quickgelu")] or fits
    if preferred:
        return msg + f"; pass {preferred[0]}:{path}"
    return msg + "; pass the model name these weights were trained as"


def _mismatch_message(sd, expected, path: Path, arch: str, missing, unexpected, wrong) -> str:
    quick = _shape_mismatch(architecture_of_weights(sd), architecture_of_weights(expected), path, arch)
    if quick:
        return quick
    base = arch.removesuffix("-quickgelu")
    detail = []
    if wrong:
        k = wrong[0]
        detail.append(f"{len(wrong)} tensors have other shapes (e.g. {k}: file {list(sd[k].shape)}, "
                      f"{base} {list(expected[k].shape)})")
    if missing:
        detail.append(f"{len(missing)} weights are missing (e.g. {missing[0]})")
    if unexpected:
        detail.append(f"{len(unexpected)} are unknown to {base} (e.g. {unexpected[0]})")
    return (f"CLIP weights {path.name} do not fit {arch}: {'; '.join(detail)}; "
            f"pass the model name these weights belong to")


def _is_openai_layout(sd: dict[str, torch.Tensor], path: Path, fmt: str) -> bool:
    """OpenAI's checkpoints: TorchScript, the extra hyper-parameter keys, or their file names + fp16."""
    if fmt == "torchscript" or any(k in sd for k in _OPENAI_EXTRA_KEYS):
        return True
    conv = sd.get("visual.conv1.weight")
    return bool(_OPENAI_FILE_RE.match(path.name)) and conv is not None and conv.dtype == torch.float16


def _openai_config_from_weights(sd: dict[str, torch.Tensor], path: Path) -> dict:
    """An open_clip model config for an OpenAI-layout ViT state dict (heads = width / 64, as OpenAI)."""
    facts = architecture_of_weights(sd)
    needed = ("vision_width", "patch_size", "vision_layers", "image_size", "text_width", "text_layers",
              "context_length", "embed_dim")
    if not all(k in facts for k in needed) or "token_embedding.weight" not in sd:
        raise ClipError(f"cannot tell the CLIP architecture of {path}; pass the model name too, e.g. "
                        f"'ViT-B-32:{path}'")
    if facts["vision_width"] % 64 or facts["text_width"] % 64:
        raise ClipError(f"{path}: OpenAI-layout weights with widths {facts['vision_width']}/"
                        f"{facts['text_width']} (not multiples of 64); pass the model name too")
    return {
        "embed_dim": facts["embed_dim"], "quick_gelu": True,
        "vision_cfg": {"image_size": facts["image_size"], "layers": facts["vision_layers"],
                       "width": facts["vision_width"], "patch_size": facts["patch_size"], "head_width": 64},
        "text_cfg": {"context_length": facts["context_length"],
                     "vocab_size": int(sd["token_embedding.weight"].shape[0]),
                     "width": facts["text_width"], "heads": facts["text_width"] // 64,
                     "layers": facts["text_layers"]},
    }


def _preprocess_for_arch(arch: str) -> dict:
    """Mean/std/resize settings for an architecture, from its pretrained tags when they all agree."""
    from open_clip import pretrained as ocp

    tags = [ocp.get_pretrained_cfg(arch, t) for t in ocp.list_pretrained_tags_by_model(arch)]
    keys = ("mean", "std", "interpolation", "resize_mode")
    out = {}
    for k in keys:
        values = {tuple(t[k]) if isinstance(t.get(k), (list, tuple)) else t.get(k) for t in tags if k in t}
        if len(values) == 1:
            v = values.pop()
            out[k] = list(v) if isinstance(v, tuple) else v
    return out


def _make_tokenizer(model_cfg: dict, arch: str | None, folder: Path | None, label: str):
    oc = _open_clip()
    text = model_cfg.get("text_cfg", {})
    ctx = int(text.get("context_length", 77))
    kwargs = dict(text.get("tokenizer_kwargs", {}) or {})
    try:
        if text.get("hf_tokenizer_name"):
            from open_clip.tokenizer import HFTokenizer

            local = folder is not None and any((folder / n).exists() for n in ("tokenizer.json", "tokenizer_config.json"))
            source = str(folder) if local else text["hf_tokenizer_name"]
            return HFTokenizer(source, context_length=ctx, tokenizer_mode=text.get("tokenizer_mode"), **kwargs)
        if arch and "siglip" in arch.lower():
            return oc.get_tokenizer(arch)
        from open_clip.tokenizer import SimpleTokenizer

        return SimpleTokenizer(context_length=ctx, **kwargs)
    except ClipError:
        raise
    except Exception as err:
        raise ClipError(f"cannot create the tokenizer of CLIP model {label}: {_short(err)}; it may need the "
                        f"transformers package and its tokenizer files downloaded") from None


# ------------------------------------------------------------------------------------------------
# Tensor preprocessing (differentiable copy of open_clip's PIL pipeline)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    """CLIP input settings. ``size``: square side in pixels; mean/std per RGB channel."""

    size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: float = 0.0

    @classmethod
    def from_cfg(cls, cfg: dict, size: int) -> "Preprocess":
        mode = cfg.get("resize_mode", "shortest")
        return cls(size=int(size), mean=tuple(float(v) for v in cfg.get("mean", OPENAI_MEAN)),
                   std=tuple(float(v) for v in cfg.get("std", OPENAI_STD)),
                   interpolation=str(cfg.get("interpolation", "bicubic")),
                   resize_mode=mode if mode in ("shortest", "squash", "longest") else "shortest",
                   fill_color=float(cfg.get("fill_color", 0)) / 255.0)


def _resize(x: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    mode = "bilinear" if interpolation == "bilinear" else "bicubic"
    # antialias=True makes torch use PIL's filters (bicubic a=-0.5, support scaled on downsampling),
    # so the result matches open_clip's PIL preprocessing of the same picture.
    return F.interpolate(x, size=size, mode=mode, antialias=True, align_corners=False)


def preprocess_unit_images(x: torch.Tensor, pre: Preprocess, clamp: bool = False) -> torch.Tensor:
    """``[N, 3, H, W]`` in [0, 1] (any H, W) -> CLIP input ``[N, 3, S, S]`` (normalised), differentiable.

    ``shortest``: resize the shortest side to S (long side ``int(S * long / short)``, as
    torchvision), centre crop (offsets ``round((h - S) / 2)``); ``squash``: resize to S x S;
    ``longest``: resize the longest side to S and pad centrally with ``fill_color``.
    ``clamp`` clips to [0, 1] after resizing, as PIL does for 8-bit images (kills gradients at
    clipped pixels, so generator images are not clamped).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"expected images [N, 3, H, W], got shape {list(x.shape)}")
    s = pre.size
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if pre.resize_mode == "squash":
        x = _resize(x, (s, s), pre.interpolation)
    elif pre.resize_mode == "longest":
        scale = max(h, w) / s
        nh, nw = max(1, round(h / scale)), max(1, round(w / scale))
        x = _resize(x, (nh, nw), pre.interpolation)
        pad = (max(0, (s - nw) // 2), max(0, (s - nw + 1) // 2), max(0, (s - nh) // 2), max(0, (s - nh + 1) // 2))
        if any(pad):
            x = F.pad(x, pad, value=pre.fill_color)
    else:
        if h <= w:
            nh, nw = s, int(s * w / h)
        else:
            nh, nw = int(s * h / w), s
        x = _resize(x, (nh, nw), pre.interpolation)
    if clamp:
        x = x.clamp(0.0, 1.0)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    x = x[..., top: top + s, left: left + s]
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _as_rgb(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise InputError(f"{what}: expected images [N, C, H, W], got shape {list(x.shape)}")
    c = x.shape[1]
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    elif c == 4:
        x = x[:, :3]
    elif c != 3:
        raise InputError(f"{what}: expected 1, 3 or 4 channels, got {c} (shape {list(x.shape)})")
    if x.shape[0] == 0:
        raise InputError(f"{what}: the image batch is empty")
    return x


# ------------------------------------------------------------------------------------------------
# The model wrapper
# ------------------------------------------------------------------------------------------------
class ClipModel:
    """A frozen CLIP model with cached text and differentiable image encoders.

    Attributes: ``name`` (``"<architecture>:<weights>"``, unique per weights), ``arch`` (open_clip
    architecture), ``source`` (weights file, folder or tag), ``image_size`` (CLIP input side in
    pixels), ``embed_dim``, ``device``, ``mean``/``std`` (RGB normalisation), ``quick_gelu``,
    ``precision``, ``model`` (the open_clip module; ``requires_grad`` off, eval mode).
    """

    def __init__(self, model, tokenizer, *, arch: str, source: str, preprocess: Preprocess,
                 device: torch.device | str = "cpu", quick_gelu: bool = False, precision: str = "fp32",
                 name: str | None = None, spec: str | None = None) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.tokenizer = tokenizer
        self.arch, self.source = arch, source
        self.name = name or f"{arch}:{source}"
        self.spec = spec or self.name
        self.preprocess = preprocess
        self.quick_gelu, self.precision = quick_gelu, precision
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.text_encoder_calls = 0  # batches sent to the text tower (caching is observable)
        self.image_encoder_calls = 0
        self.embed_dim = int(self._infer_embed_dim())

    # -- properties ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype the image tower expects its input in (that of its first conv/linear weight)."""
        visual = getattr(self.model, "visual", self.model)
        for module in visual.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                return module.weight.dtype
        return next(visual.parameters()).dtype

    @property
    def image_size(self) -> int:
        return self.preprocess.size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    def _infer_embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor) and proj.ndim == 2:
            return proj.shape[1]
        visual = getattr(self.model, "visual", None)
        vproj = getattr(visual, "proj", None)
        if isinstance(vproj, torch.Tensor) and vproj.ndim == 2:
            return vproj.shape[1]
        with torch.no_grad():
            return self.encode_text(["a"]).shape[-1]

    def describe(self) -> dict:
        """JSON-able facts for provenance records."""
        return {"name": self.name, "arch": self.arch, "source": self.source, "spec": self.spec,
                "embed_dim": self.embed_dim, "image_size": self.image_size, "quick_gelu": self.quick_gelu,
                "precision": self.precision, "mean": list(self.mean), "std": list(self.std)}

    def to(self, device: torch.device | str) -> "ClipModel":
        self.model.to(device)
        self._text_cache.clear()
        return self

    def __repr__(self) -> str:
        return (f"ClipModel({self.name!r}, image_size={self.image_size}, embed_dim={self.embed_dim}, "
                f"device={self.device})")

    # -- text ---------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Prompts -> ``[T, D]`` float32 L2-normalised embeddings (no grad). Cached per text."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise InputError("no prompts to encode")
        if not all(isinstance(t, str) for t in texts):
            raise InputError("prompts must be strings")
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            with torch.no_grad():
                emb = self.model.encode_text(tokens)
            self.text_encoder_calls += 1
            emb = F.normalize(emb.float(), dim=-1)
            for t, e in zip(todo, emb):
                self._text_cache[t] = e
                if len(self._text_cache) > _TEXT_CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        for t in texts:
            if t in self._text_cache:
                self._text_cache.move_to_end(t)
        return torch.stack([self._text_cache[t] for t in texts])

    # -- images -------------------------------------------------------------------------------
    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Generator output ``[N, C, H, W]`` in [-1, 1] (C = 1 or 3, any size) -> ``[N, D]`` float32,
        L2-normalised, differentiable w.r.t. ``img``. Values outside [-1, 1] are not clamped, so
        saturated pixels still get gradients (as in the reference implementation)."""
        x = _as_rgb(img, "encode_image")
        return self._encode_pixels(preprocess_unit_images((x.float() + 1.0) * 0.5, self.preprocess))

    def encode_unit_images(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """User images in [0, 1]: a batch ``[N, 3, H, W]`` or a list of ``[3, H, W]`` of any sizes
        -> ``[N, D]``. Matches open_clip's PIL preprocessing (values clipped after resizing)."""
        if isinstance(images, torch.Tensor):
            batch = [_as_rgb(images, "encode_unit_images")]
        else:
            batch = [_as_rgb(im, "encode_unit_images") for im in images]
            if not batch:
                raise InputError("encode_unit_images: no images given")
        pixels = torch.cat([preprocess_unit_images(b.float().to(self.device), self.preprocess, clamp=True)
                            for b in batch])
        return self._encode_pixels(pixels)

    def encode_pil(self, images) -> torch.Tensor:
        """PIL image(s) of any mode -> ``[N, D]`` (see :func:`nada_core.media.images.pil_to_unit`)."""
        from ..media.images import pil_to_unit

        if not isinstance(images, (list, tuple)):
            images = [images]
        return self.encode_unit_images([pil_to_unit(im) for im in images])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.model.encode_image(pixels.to(device=self.device, dtype=self.dtype))
        self.image_encoder_calls += 1
        return F.normalize(feats.float(), dim=-1)


# ------------------------------------------------------------------------------------------------
# Several guides
# ------------------------------------------------------------------------------------------------
class ClipEnsemble:
    """Several CLIP models guiding together, each with a loss weight.

    Members with weight 0 are dropped at construction (never called); their names are kept in
    ``dropped``. Weights must be finite and >= 0 with at least one > 0.
    """

    def __init__(self, members: Sequence[tuple[ClipModel, float]] | ClipModel) -> None:
        if isinstance(members, ClipModel):
            members = [(members, 1.0)]
        members = list(members)
        if not members:
            raise InputError("no CLIP model given; add at least one CLIP guide")
        kept, dropped, names = [], [], set()
        for item in members:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise InputError("CLIP guides must be (model, weight) pairs")
            model, weight = item
            weight = _check_weight(weight, getattr(model, "name", "?"))
            if weight == 0.0:
                dropped.append(getattr(model, "name", "?"))
                continue
            if model.name in names:
                raise InputError(f"CLIP model {model.name} is listed twice; list each guide once")
            names.add(model.name)
            kept.append((model, weight))
        if not kept:
            raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
        self.members: list[tuple[ClipModel, float]] = kept
        self.dropped: list[str] = dropped

    @property
    def models(self) -> list[ClipModel]:
        return [m for m, _ in self.members]

    @property
    def names(self) -> list[str]:
        return [m.name for m, _ in self.members]

    @property
    def weights(self) -> dict[str, float]:
        return {m.name: w for m, w in self.members}

    def __iter__(self) -> Iterator[tuple[ClipModel, float]]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, name: str) -> ClipModel:
        for m, _ in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def encode_text(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {m.name: m.encode_text(texts) for m, _ in self.members}

    def encode_image(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return {m.name: m.encode_image(img) for m, _ in self.members}

    def describe(self) -> list[dict]:
        return [dict(m.describe(), weight=w) for m, w in self.members]

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.name}x{w:g}" for m, w in self.members)
        return f"ClipEnsemble([{inner}])"


def _check_weight(weight, label: str) -> float:
    return non_negative_weight(weight, f"weight of CLIP model {label}")


def as_ensemble(guide: ClipModel | ClipEnsemble) -> ClipEnsemble:
    """Wrap a single model (weight 1) or pass an ensemble through."""
    if isinstance(guide, ClipEnsemble):
        return guide
    if hasattr(guide, "encode_text") and hasattr(guide, "encode_image") and hasattr(guide, "name"):
        ens = ClipEnsemble.__new__(ClipEnsemble)
        ens.members, ens.dropped = [(guide, 1.0)], []
        return ens
    raise InputError(f"expected a ClipModel or ClipEnsemble, got {type(guide).__name__}")


def load_clip_ensemble(specs: Sequence[tuple[str, float]], device: str | torch.device = "cpu",
                       precision: str | None = None) -> ClipEnsemble:
    """Load ``[(spec, weight), ...]`` into a :class:`ClipEnsemble`; specs with weight 0 are never loaded."""
    specs = list(specs)
    if not specs:
        raise InputError("no CLIP model given; add at least one CLIP guide")
    checked = [(spec, _check_weight(w, str(spec))) for spec, w in specs]
    if all(w == 0 for _, w in checked):
        raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
    members = [(load_clip(spec, device=device, precision=precision), w) for spec, w in checked if w > 0]
    ens = ClipEnsemble(members)
    ens.dropped = [str(spec) for spec, w in checked if w == 0]
    return ens


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def load_clip(spec: str, device: str | torch.device = "cpu", precision: str | None = None,
              quick_gelu: bool | None = None) -> ClipModel:
    """Load a frozen CLIP model from a spec string (see the module docstring for the forms).

    ``precision``: ``None``/``"fp32"`` (default), ``"fp16"`` or ``"bf16"`` weights. ``quick_gelu``
    forces the activation on (True) or off (False); ``None`` decides from the source. Raises
    :class:`ClipError` with a one-line reason and fix for every bad spec or file.
    """
    from ..devices import resolve_device

    precision = (precision or "fp32").lower()
    if precision not in _PRECISIONS:
        raise ClipError(f"unknown CLIP precision {precision!r}; use fp32, fp16 or bf16")
    try:
        dev = resolve_device(device)
    except InputError as err:
        raise ClipError(str(err)) from None
    parsed = parse_clip_spec(spec)
    # ComfyUI runs nodes under inference mode; tensors made there can never take part in autograd,
    # so build the model outside it (gradients must flow through the image tower for training).
    with torch.inference_mode(False):
        if parsed.kind == "folder":
            model = _load_folder(parsed.path, precision, quick_gelu, parsed.raw)
        elif parsed.kind == "file":
            model = _load_file(parsed.path, parsed.arch, precision, quick_gelu, parsed.raw)
        elif parsed.kind == "tag":
            model = _load_tag(parsed.arch, parsed.tag, precision, quick_gelu, parsed.raw)
        else:
            model = _load_hub(parsed.tag, precision, quick_gelu, parsed.raw)
        return model.to(dev)


def _finish(model, tokenizer, *, arch, source, preprocess_cfg: dict, quick_gelu, precision, spec) -> ClipModel:
    size = getattr(getattr(model, "visual", None), "image_size", None) or preprocess_cfg.get("size", 224)
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ClipError(f"CLIP model {arch} has a non-square input {tuple(size)}; not supported")
        size = size[0]
    pre = Preprocess.from_cfg(preprocess_cfg, int(size))
    return ClipModel(model, tokenizer, arch=arch, source=source, preprocess=pre, quick_gelu=quick_gelu,
                     precision=precision, spec=spec)


def _load_file(path: Path, arch: str | None, precision: str, quick_gelu: bool | None, spec: str,
               preprocess_cfg: dict | None = None) -> ClipModel:
    _check_file(path)
    if (path.parent / HF_CONFIG_NAME).is_file() and arch is None:
        return _load_folder(path.parent, precision, quick_gelu, spec, weights=path)
    if arch is not None:
        arch = resolve_architecture(arch)
    sd, fmt = read_state_dict(path)
    openai = _is_openai_layout(sd, path, fmt)
    qg = quick_gelu if quick_gelu is not None else (openai or bool(arch and arch.endswith("-quickgelu")))
    if arch is None:
        if not openai:
            fits = architectures_matching(architecture_of_weights(sd))
            hint = f" (the weights fit {', '.join(fits[:3])})" if fits else ""
            raise ClipError(f"{path.name} holds open_clip weights but not their architecture; pass the model "
                            f"name too, e.g. 'ViT-B-32:{path}'{hint}")
        if "visual.proj" not in sd:  # OpenAI ResNet models: let open_clip infer the layout
            return _load_openai_resnet(sd, path, precision, spec)
        cfg = _openai_config_from_weights(sd, path)
        known = architectures_matching(architecture_of_weights(sd), quick_gelu=True)
        v = cfg["vision_cfg"]
        arch_name = known[0] if known else f"openai-ViT-w{v['width']}-p{v['patch_size']}-{v['image_size']}px"
        qg = True if quick_gelu is None else quick_gelu
        model = _build_model(cfg, qg, precision, arch_name)
        _fill_model(model, sd, path, arch_name, drop_unexpected=True)
        tok = _make_tokenizer(cfg, None, None, arch_name)
        return _finish(model, tok, arch=arch_name, source=path.name, quick_gelu=qg,
                       preprocess_cfg={"mean": OPENAI_MEAN, "std": OPENAI_STD}, precision=precision, spec=spec)
    if qg and not arch.endswith("-quickgelu"):
        arch = _quickgelu_variant(arch) or arch
    cfg = _arch_config(arch)
    # Cheap check before building (a full-size model takes seconds to initialise).
    early = _shape_mismatch(architecture_of_weights(sd), _architecture_of_config(cfg), path, arch)
    if early:
        raise ClipError(early)
    qg = bool(qg or cfg.get("quick_gelu", False)) if quick_gelu is None else quick_gelu
    model = _build_model(cfg, qg, precision, arch)
    _fill_model(model, sd, path, arch, drop_unexpected=(fmt == "torchscript"))
    pcfg = dict(_preprocess_for_arch(arch))
    if openai:
        pcfg.update(mean=OPENAI_MEAN, std=OPENAI_STD)
    pcfg.update(preprocess_cfg or {})
    tok = _make_tokenizer(cfg, arch, None, arch)
    return _finish(model, tok, arch=arch, source=path.name, preprocess_cfg=pcfg, quick_gelu=qg,
                   precision=precision, spec=spec)


def _load_openai_resnet(sd, path: Path, precision: str, spec: str) -> ClipModel:
    from open_clip.model import build_model_from_openai_state_dict

    try:
        model = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None)
    except Exception as err:
        raise ClipError(f"cannot build a CLIP model from {path}: {_short(err)}; pass the model name too, "
                        f"e.g. 'RN50:{path}'") from None
    model = model.float()
    if _PRECISIONS[precision] is not None:
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, dtype=_PRECISIONS[precision])
    tok = _make_tokenizer({"text_cfg": {"context_length": model.context_length}}, None, None, path.name)
    return _finish(model, tok, arch="openai-ResNet", source=path.name, quick_gelu=True,
                   preprocess_cfg={"mean": OPENAI_MEAN, "std": OPENAI_STD}, precision=precision, spec=spec)


def _find_folder_weights(folder: Path) -> Path:
    for name in HF_WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
    found = f" (found {', '.join(others[:4])}; these look like another library's layout)" if others else ""
    raise ClipError(f"CLIP folder {folder} has no {HF_WEIGHT_NAMES[0]} or {HF_WEIGHT_NAMES[2]}{found}; "
                    f"download the open_clip weights file into it")


def _load_folder(folder: Path, precision: str, quick_gelu: bool | None, spec: str,
                 weights: Path | None = None, label: str | None = None) -> ClipModel:
    if not folder.is_dir():
        raise ClipError(f"CLIP folder not found: {folder}; check the path")
    cfg_path = folder / HF_CONFIG_NAME
    if not cfg_path.is_file():
        raise ClipError(f"CLIP folder {folder} has no {HF_CONFIG_NAME}; download it from the model's hub page "
                        f"into the folder, or pass 'MODEL:{folder}/<weights file>'")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ClipError(f"cannot read {cfg_path}: {_short(err)}; download it again") from None
    model_cfg = config.get("model_cfg") if isinstance(config, dict) else None
    if not isinstance(model_cfg, dict) or "vision_cfg" not in model_cfg or "text_cfg" not in model_cfg:
        raise ClipError(f"{cfg_path} has no 'model_cfg' with vision_cfg and text_cfg; this is not an open_clip "
                        f"model folder")
    weights = weights or _find_folder_weights(folder)
    sd, fmt = read_state_dict(weights)
    # OpenAI weights need QuickGELU; hub folders of OpenAI models are named '...openai'.
    named_openai = "openai" in (label or folder.name).lower() and "quick_gelu" not in model_cfg
    qg = bool(model_cfg.get("quick_gelu", False)) or named_openai or _is_openai_layout(sd, weights, fmt)
    if quick_gelu is not None:
        qg = quick_gelu
    arch = _match_builtin(model_cfg, qg) or (label or folder.name)
    model = _build_model(model_cfg, qg, precision, arch)
    _fill_model(model, sd, weights, arch, drop_unexpected=(fmt == "torchscript"))
    known = arch in list_architectures()
    pcfg = _preprocess_for_arch(arch) if known else {}
    pcfg.update(config.get("preprocess_cfg") or {})
    tok = _make_tokenizer(model_cfg, arch if known else None, folder, arch)
    return _finish(model, tok, arch=arch, source=label or folder.name, preprocess_cfg=pcfg, quick_gelu=qg,
                   precision=precision, spec=spec)


def _match_builtin(model_cfg: dict, quick_gelu: bool) -> str | None:
    """Name of a registered architecture with exactly this config (ignoring quick_gelu)."""
    oc = _open_clip()

    def strip(cfg: dict) -> dict:
        cfg = copy.deepcopy(cfg)
        cfg.pop("quick_gelu", None)
        return cfg

    want = strip(model_cfg)
    for name in oc.list_models():
        cfg = oc.get_model_config(name)
        if cfg is not None and strip(cfg) == want and bool(cfg.get("quick_gelu", False)) == quick_gelu:
            return name
    return None


# --- downloads (online only, fail fast offline) ---------------------------------------------------
def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def _probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Try a TCP connection to ``url``'s host (or the HTTPS proxy). None when reachable, else the reason."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy and url.startswith("https") else url)
    host = target.hostname
    if not host:
        return f"bad address {url!r}"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return _short(err, 80)


def _offline_error(what: str, repo: str | None, url: str | None, reason: str, arch: str | None) -> ClipError:
    if repo:
        page = f"https://huggingface.co/{repo}"
        folder = f"{MODELS_HINT}/{repo.split('/')[-1]}"
        fix = (f"download {HF_CONFIG_NAME} and {HF_WEIGHT_NAMES[0]} from {page} into {folder} "
               f"and pass that folder")
    else:
        fix = (f"download {url} into {MODELS_HINT} and pass "
               f"'{MODELS_HINT}/{os.path.basename(urlparse(url or '').path) or 'weights.pt'}'")
    return ClipError(f"CLIP {what} needs a download but {reason}; {fix}")


def _ensure_online(what: str, repo: str | None, url: str | None, arch: str | None) -> None:
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise _offline_error(what, repo, url, "offline mode is on (HF_HUB_OFFLINE)", arch)
    endpoint = _hub_endpoint() if repo else (url or "")
    reason = _probe(endpoint)
    if reason is not None:
        raise _offline_error(what, repo, url, f"{urlparse(endpoint).netloc or endpoint} is unreachable ({reason})",
                             arch)


def _hub_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _hub_download(repo: str, filenames: Sequence[str], what: str) -> Path:
    """First of ``filenames`` found in the cache, else downloaded (call :func:`_ensure_online` first)."""
    for name in filenames:
        cached = _hub_cached(repo, name)
        if cached is not None:
            return cached
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover
        raise ClipError("downloading CLIP weights needs the huggingface_hub package") from None
    errors = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo, filename=name, etag_timeout=10))
        except Exception as err:
            errors.append(f"{name}: {_short(err, 80)}")
    raise ClipError(f"cannot download CLIP {what} from https://huggingface.co/{repo} ({'; '.join(errors)}); "
                    f"download the files by hand into {MODELS_HINT}")


def _tag_files(hf_hub: str) -> tuple[str, list[str]]:
    """open_clip writes ``org/repo/`` (default file names) or ``org/repo/file.bin``."""
    if hf_hub.endswith("/"):
        return hf_hub.rstrip("/"), [HF_WEIGHT_NAMES[0], HF_WEIGHT_NAMES[2]]
    repo, filename = os.path.split(hf_hub)
    stem, ext = os.path.splitext(filename)
    names = [stem + ".safetensors"] if ext in (".bin", ".pth") else []
    return repo, names + [filename]


def _load_tag(arch: str, tag: str, precision: str, quick_gelu: bool | None, spec: str) -> ClipModel:
    from open_clip import pretrained as ocp

    arch = resolve_architecture(arch)
    pcfg = ocp.get_pretrained_cfg(arch, tag)
    if not pcfg:
        tags = ocp.list_pretrained_tags_by_model(arch)
        known = f"known tags: {', '.join(tags[:8])}" if tags else f"{arch} has no downloadable weights"
        raise ClipError(f"CLIP weights {tag!r} not found for {arch}: not a file and not a pretrained tag ({known}); "
                        f"pass a weights file as '{arch}:/path/to/file.safetensors'")
    hf_hub, url = pcfg.get("hf_hub", ""), pcfg.get("url", "")
    qg = bool(pcfg.get("quick_gelu", False)) if quick_gelu is None else quick_gelu
    if qg and not arch.endswith("-quickgelu"):
        arch = _quickgelu_variant(arch) or arch
    pre = {k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in pcfg}
    what = f"weights {arch.removesuffix('-quickgelu')}:{tag}"
    if hf_hub:
        repo, names = _tag_files(hf_hub)
        path = next((p for p in (_hub_cached(repo, n) for n in names) if p is not None), None)
        if path is None:
            _ensure_online(what, repo, None, arch)
            path = _hub_download(repo, names, what)
    else:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(urlparse(url).path)
        if not path.is_file():
            _ensure_online(what, None, url, arch)
            try:
                path = Path(ocp.download_pretrained_from_url(url))
            except Exception as err:
                raise ClipError(f"cannot download CLIP {what} from {url}: {_short(err)}") from None
    model = _load_file(path, arch, precision, qg, spec, preprocess_cfg=pre)
    model.source = tag
    model.name = f"{model.arch}:{tag}"
    return model


def _load_hub(repo: str, precision: str, quick_gelu: bool | None, spec: str) -> ClipModel:
    what = f"model hf-hub:{repo}"
    cfg = _hub_cached(repo, HF_CONFIG_NAME)
    weights = next((p for p in (_hub_cached(repo, n) for n in HF_WEIGHT_NAMES) if p is not None), None)
    if cfg is None or weights is None:
        _ensure_online(what, repo, None, None)
        cfg = _hub_download(repo, [HF_CONFIG_NAME], what)
        weights = _hub_download(repo, list(HF_WEIGHT_NAMES), what)
    if cfg.parent != weights.parent:  # pragma: no cover - same snapshot folder in the HF cache
        raise ClipError(f"CLIP {what}: config and weights were cached in different snapshots; clear the cache")
    return _load_folder(cfg.parent, precision, quick_gelu, spec, weights=weights, label=repo.split("/")[-1])


__all__ = [
    "ClipModel", "ClipEnsemble", "ClipSpec", "Preprocess", "as_ensemble", "load_clip", "load_clip_ensemble",
    "parse_clip_spec", "read_state_dict", "read_torchscript_state_dict", "is_torchscript_archive",
    "preprocess_unit_images", "architecture_of_weights", "architectures_matching", "resolve_architecture",
    "list_architectures", "OPENAI_MEAN", "OPENAI_STD",
]
