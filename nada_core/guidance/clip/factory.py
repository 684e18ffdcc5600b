"""Loading CLIP models: :func:`load_clip` dispatches a spec to the file, folder, tag or hub loader."""

from __future__ import annotations


import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch

from ...errors import ClipError, InputError, short_reason
from ...json_text import parse_json
from .build import (_PRECISIONS, build_checked_model, _make_tokenizer, _openai_config_from_weights,
                    _shape_mismatch)
from .hub import _ensure_online, _hub_cached, _hub_download, _tag_files
from .model import ClipEnsemble, ClipModel, _check_weight
from .preprocess import OPENAI_MEAN, OPENAI_STD, Preprocess
from .registry import (_arch_config, _architecture_of_config, _match_builtin, _preprocess_for_arch,
                       _quickgelu_variant, architectures_matching, list_architectures, resolve_architecture)
from .spec import HF_CONFIG_NAME, HF_WEIGHT_NAMES, parse_clip_spec
from .weights import _check_file, _find_folder_weights, _is_openai_layout, architecture_of_weights, read_state_dict


def load_clip(spec: str, device: str | torch.device = "cpu", precision: str | None = None,
              quick_gelu: bool | None = None) -> ClipModel:
    """Load a frozen CLIP model from a spec string (see :mod:`nada_core.guidance.clip` for the forms).

    ``precision``: ``None``/``"fp32"`` (default), ``"fp16"`` or ``"bf16"`` weights. ``quick_gelu``
    forces the activation on (True) or off (False); ``None`` decides from the source. Raises
    :class:`ClipError` with a one-line reason and fix for every bad spec or file.
    """
    from ...devices import resolve_device

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
        model = build_checked_model(cfg, qg, precision, arch_name, sd, path, drop_unexpected=True)
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
    model = build_checked_model(cfg, qg, precision, arch, sd, path, drop_unexpected=(fmt == "torchscript"))
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
        raise ClipError(f"cannot build a CLIP model from {path}: {short_reason(err)}; pass the model name too, "
                        f"e.g. 'RN50:{path}'") from None
    model = model.float()
    if _PRECISIONS[precision] is not None:
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, dtype=_PRECISIONS[precision])
    tok = _make_tokenizer({"text_cfg": {"context_length": model.context_length}}, None, None, path.name)
    return _finish(model, tok, arch="openai-ResNet", source=path.name, quick_gelu=True,
                   preprocess_cfg={"mean": OPENAI_MEAN, "std": OPENAI_STD}, precision=precision, spec=spec)


def _load_folder(folder: Path, precision: str, quick_gelu: bool | None, spec: str,
                 weights: Path | None = None, label: str | None = None) -> ClipModel:
    if not folder.is_dir():
        raise ClipError(f"CLIP folder not found: {folder}; check the path")
    cfg_path = folder / HF_CONFIG_NAME
    if not cfg_path.is_file():
        raise ClipError(f"CLIP folder {folder} has no {HF_CONFIG_NAME}; download it from the model's hub page "
                        f"into the folder, or pass 'MODEL:{folder}/<weights file>'")
    try:
        raw = cfg_path.read_bytes()
    except OSError as err:
        raise ClipError(f"cannot read {cfg_path}: {short_reason(err)}; download it again") from None
    config = parse_json(raw, f"cannot read {cfg_path}", "download it again", expect=dict, error=ClipError)
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
    model = build_checked_model(model_cfg, qg, precision, arch, sd, weights, drop_unexpected=(fmt == "torchscript"))
    known = arch in list_architectures()
    pcfg = _preprocess_for_arch(arch) if known else {}
    pcfg.update(config.get("preprocess_cfg") or {})
    tok = _make_tokenizer(model_cfg, arch if known else None, folder, arch)
    return _finish(model, tok, arch=arch, source=label or folder.name, preprocess_cfg=pcfg, quick_gelu=qg,
                   precision=precision, spec=spec)


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
                raise ClipError(f"cannot download CLIP {what} from {url}: {short_reason(err)}") from None
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
