"""Building open_clip models from configs (random init, no downloads) and filling them with weights.

Mismatches between weights and architecture become one-line :class:`ClipError` messages that
name the differing shapes and, where one fits, the architecture to pass instead.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ...errors import ClipError, short_reason
from .registry import _open_clip, architectures_matching
from .weights import _OPENAI_EXTRA_KEYS, _SUMMARY_LABELS, architecture_of_weights


_PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


# Bounds no released CLIP comes near (ViT-bigG: width 1664, 48 layers; context 77; vocab 250k),
# checked before any module is built so a small file cannot ask for gigabytes.
_MAX_WIDTH, _MAX_LAYERS, _MAX_CONTEXT, _MAX_VOCAB, _MAX_IMAGE = 8192, 128, 4096, 1 << 20, 2048


def _check_config_bounds(cfg: dict, label: str) -> None:
    """Refuse configs with absurd sizes (one :class:`ClipError` line) before anything is allocated."""
    vision, text = cfg.get("vision_cfg") or {}, cfg.get("text_cfg") or {}
    limits = [(vision, "width", _MAX_WIDTH), (vision, "layers", _MAX_LAYERS), (vision, "image_size", _MAX_IMAGE),
              (vision, "patch_size", _MAX_IMAGE), (text, "width", _MAX_WIDTH), (text, "layers", _MAX_LAYERS),
              (text, "context_length", _MAX_CONTEXT), (text, "vocab_size", _MAX_VOCAB),
              (cfg, "embed_dim", _MAX_WIDTH)]
    for part, key, top in limits:
        value = part.get(key)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]  # e.g. image_size [224, 224]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= top for v in values):
            raise ClipError(f"CLIP model {label} asks for {key} {value!r} (allowed 1..{top}); the file or config "
                            f"is damaged or not a CLIP model")


def build_checked_model(model_cfg: dict, quick_gelu: bool, precision: str, label: str,
                        sd: dict[str, torch.Tensor], path: Path, drop_unexpected: bool):
    """Build the model for ``model_cfg`` and fill it with ``sd``, checking the fit first.

    The fit is checked on a model built on the ``meta`` device (shapes only, no memory), so weights
    that describe a larger model than they hold are refused before the real model is allocated.
    """
    _check_config_bounds(model_cfg, label)
    with torch.device("meta"):
        shape_only = _build_model(model_cfg, quick_gelu, "fp32", label)
    problem = _fit_problem(shape_only, sd, path, label, drop_unexpected)
    del shape_only
    if problem:
        raise ClipError(problem)
    model = _build_model(model_cfg, quick_gelu, precision, label)
    _fill_model(model, sd, path, label, drop_unexpected)
    return model


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
        raise ClipError(f"cannot build CLIP model {label}: {short_reason(err)}") from None
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


def _fitting_state_dict(model, sd: dict[str, torch.Tensor], drop_unexpected: bool) -> dict[str, torch.Tensor]:
    sd = _adapt_state_dict(sd, model)
    if drop_unexpected:  # TorchScript archives also hold attributes that are no weights
        expected = model.state_dict()
        sd = {k: v for k, v in sd.items() if k in expected}
    return sd


def _fit_problem(model, sd: dict[str, torch.Tensor], path: Path, arch: str, drop_unexpected: bool) -> str | None:
    """The one-line message saying how ``sd`` does not fit ``model`` (None when it fits)."""
    sd = _fitting_state_dict(model, sd, drop_unexpected)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        return _mismatch_message(sd, expected, path, arch, missing, unexpected, wrong)
    return None


def _fill_model(model, sd: dict[str, torch.Tensor], path: Path, arch: str, drop_unexpected: bool) -> None:
    """Copy ``sd`` into ``model`` or raise a ClipError saying what does not fit."""
    problem = _fit_problem(model, sd, path, arch, drop_unexpected)
    if problem:
        raise ClipError(problem)
    sd = _fitting_state_dict(model, sd, drop_unexpected)
    own = model.state_dict()
    ints = [k for k, v in sd.items() if own[k].is_floating_point() and not v.is_floating_point()]
    if ints:  # load_state_dict would cast integers/bools silently and drop imaginary parts
        raise ClipError(f"CLIP weights {path} hold {sd[ints[0]].dtype} values where floats belong (e.g. {ints[0]}); "
                        f"the file is damaged or not CLIP weights, download it again")
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
        raise ClipError(f"cannot create the tokenizer of CLIP model {label}: {short_reason(err)}; it may need the "
                        f"transformers package and its tokenizer files downloaded") from None
