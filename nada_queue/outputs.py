"""Output files of a finished prompt, and where ``--download`` puts them.

ComfyUI's history lists outputs per node: ``{"9": {"images": [{"filename", "subfolder", "type"}]}}``
(also ``gifs``, ``audio``, ``video``... for other nodes). ``type`` is ``output`` for saved files and
``temp`` for previews.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

FileRef = dict[str, Any]

LAYOUTS = ("folders", "prefix")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@ -]")


def file_refs(history_outputs: dict[str, Any] | None) -> dict[str, list[FileRef]]:
    """``{node id: [{"filename", "subfolder", "type", "kind"}]}`` from a history entry's ``outputs``."""
    refs: dict[str, list[FileRef]] = {}
    for node_id, out in (history_outputs or {}).items():
        if not isinstance(out, dict):
            continue
        for kind, items in out.items():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str) and item["filename"]:
                    refs.setdefault(str(node_id), []).append({
                        "filename": item["filename"],
                        "subfolder": str(item.get("subfolder") or ""),
                        "type": str(item.get("type") or "output"),
                        "kind": kind,
                    })
    return refs


def safe_component(name: str) -> str:
    """A file-name component that cannot escape its folder (no separators, no ``..``)."""
    cleaned = _UNSAFE.sub("_", name.replace("/", "_").replace("\\", "_")).strip(" .")
    return cleaned or "_"


def local_relpath(ref: FileRef, label: str, layout: str = "folders") -> str:
    """Where a file goes under the download folder, relative and POSIX-style.

    ``folders``: ``v003/<subfolder>/<filename>``; ``prefix``: ``v003_<subfolder>_<filename>``.
    Every variant has its own folder or prefix, so variants never overwrite each other's files.
    """
    sub = [safe_component(p) for p in PurePosixPath(ref.get("subfolder") or "").parts if p not in ("", ".", "..", "/")]
    filename = safe_component(ref["filename"])
    if layout == "prefix":
        return "_".join([label, *sub, filename])
    return str(PurePosixPath(label, *sub, filename))
