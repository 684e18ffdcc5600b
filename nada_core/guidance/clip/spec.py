"""CLIP spec strings: what a user typed -> :class:`ClipSpec` (which loader, which file or tag)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ClipError


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
