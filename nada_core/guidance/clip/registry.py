"""open_clip's architecture registry: names, configs, per-architecture preprocessing defaults.

open_clip is imported on first use only, so importing the CLIP package stays light.
"""

from __future__ import annotations

import copy
import difflib

from ...errors import ClipError


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
