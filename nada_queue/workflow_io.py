"""Read an API-format ComfyUI workflow from a JSON file or from a PNG saved by ComfyUI.

API format (what ``POST /prompt`` takes)::

    {"3": {"class_type": "EmptyImage", "inputs": {"width": 64, ...}, "_meta": {"title": "..."}}, ...}

An input is a literal (int/float/bool/str/...) or a link ``["<node id>", <output index>]``.
The canvas ("UI") format that ComfyUI saves by default (``{"nodes": [...], "links": [...]}``)
cannot be queued; we recognise it and tell the user how to export the API format.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nada_core.errors import InputError
from nada_core.json_text import parse_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPORT_HINT = 'in ComfyUI use Workflow -> Export (API) and pass that file'

MAX_WORKFLOW_BYTES = 64 * 1024 * 1024  # real API workflows are kilobytes; big ones embed a few images as text
Workflow = dict[str, dict[str, Any]]


def load_workflow(path: str | os.PathLike) -> Workflow:
    """Return the API-format workflow stored in ``path`` (``.json`` or a ComfyUI ``.png``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"workflow file {str(p)!r} not found; pass an API-format .json or a PNG saved by ComfyUI")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head == PNG_MAGIC:
        return read_png_prompt(p)
    size = p.stat().st_size
    if size > MAX_WORKFLOW_BYTES:  # read whole below: refuse what no workflow is before it fills memory
        raise InputError(f"{p.name} is {size:,} bytes, far more than an API-format workflow "
                         f"({MAX_WORKFLOW_BYTES:,} at most); pass the exported workflow .json")
    # parse_json: deep nesting, huge integers and bad bytes are one line too (json.loads raised them)
    data = parse_json(p.read_bytes(), f"{p.name} is neither JSON nor a PNG", "pass an API-format workflow")
    return parse_workflow(data, source=p.name)


def read_png_prompt(path: str | os.PathLike) -> Workflow:
    """The API workflow ComfyUI embeds in the PNG text chunk ``prompt`` (tEXt, zTXt or iTXt)."""
    from PIL import Image  # lazy: keeps ``import nada_queue`` light

    p = Path(path)
    try:
        with Image.open(p) as im:
            # ``text`` also reads chunks stored after the image data.
            chunks = dict(getattr(im, "text", {}) or im.info)
    except Exception as err:  # Pillow raises many types for broken files
        raise InputError(f"cannot read PNG {p.name}: {err}") from None
    raw = chunks.get("prompt")
    if raw is None:
        if "workflow" in chunks:
            raise InputError(
                f"{p.name} holds only a canvas (UI) workflow, no API prompt; {EXPORT_HINT}")
        raise InputError(f"{p.name} has no embedded ComfyUI prompt; pass a PNG saved by ComfyUI's Save Image "
                         "(metadata enabled) or an API-format .json")
    data = parse_json(raw, f"the prompt embedded in {p.name}", "save the image again from ComfyUI or pass the "
                      "exported workflow .json")
    return parse_workflow(data, source=p.name)


def is_ui_format(data: Any) -> bool:
    """True for ComfyUI's canvas format (``nodes`` list + ``links``), which ``/prompt`` rejects."""
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and (
        "links" in data or "last_node_id" in data or "version" in data)


def parse_workflow(data: Any, source: str = "workflow") -> Workflow:
    """Validate an already decoded API workflow; also unwraps ``{"prompt": {...}}`` request bodies."""
    if is_ui_format(data):
        raise InputError(f"{source} is a ComfyUI canvas (UI) workflow, not the API format; {EXPORT_HINT}")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data.get("prompt", {}):
        data = data["prompt"]
    if not isinstance(data, dict) or not data:
        raise InputError(f"{source} is not an API-format workflow (expected an object of nodes); {EXPORT_HINT}")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise InputError(f"{source}: node {node_id!r} has no class_type, so this is not an API-format "
                             f"workflow; {EXPORT_HINT}")
        if not isinstance(node.get("inputs", {}), dict):
            raise InputError(f"{source}: node {node_id!r} ({node['class_type']}) has inputs that are not an object")
    return {str(k): v for k, v in data.items()}


def node_title(node: dict[str, Any]) -> str | None:
    """The user-visible title (``_meta.title``) of an API node, if any."""
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) and title else None


def is_link(value: Any) -> bool:
    """A link to another node's output: ``["<node id>", <output index>]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int))
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def workflow_sha256(workflow: Workflow) -> str:
    """A stable fingerprint of a workflow (key order and whitespace do not matter)."""
    blob = json.dumps(workflow, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
