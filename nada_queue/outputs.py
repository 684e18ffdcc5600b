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


# ------------------------------------------------------------------------------- text outputs

TEXT_LIMIT = 16_384  # characters kept of one text output (a metrics table is a few hundred)
MAX_TEXTS = 64  # text entries kept per node
# Output nodes whose text output names the file they wrote, and where that file is on the server.
SAVING_NODES = {"NadaSaveGenerator": "models/stylegan", "NadaSaveLatent": "output"}
_OUTPUT_MARK = " [output]"  # NADA Save Latent names its file as NADA Load Latent lists it


def _clip_text(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f" ... [{len(text) - TEXT_LIMIT} more characters]"


def text_outputs(history_outputs: dict[str, Any] | None, workflow: dict[str, Any] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """The text a finished prompt's nodes showed: ``{node id: {"class_type", "title", "text": [str]}}``.

    Every list of strings in a node's history ``outputs`` counts (ComfyUI's Preview Any ``text``,
    NADA Metrics' metrics, the names NADA Save Generator / Save Latent wrote), each cut to
    :data:`TEXT_LIMIT` characters. ``class_type`` and ``title`` come from ``workflow``.
    """
    texts: dict[str, dict[str, Any]] = {}
    for node_id, out in (history_outputs or {}).items():
        if not isinstance(out, dict):
            continue
        lines = [_clip_text(item) for items in out.values() if isinstance(items, list)
                 for item in items if isinstance(item, str)]
        if not lines:
            continue
        node = (workflow or {}).get(str(node_id))
        node = node if isinstance(node, dict) else {}
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        texts[str(node_id)] = {"class_type": node.get("class_type") if isinstance(node.get("class_type"), str) else None,
                               "title": title if isinstance(title, str) else None,
                               "text": lines[:MAX_TEXTS]}
    return texts


def saved_files(texts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Files written on the server by saving nodes (:data:`SAVING_NODES`), from :func:`text_outputs`:
    ``[{"node", "class_type", "name", "folder"}]``, e.g. ``nada/ffhq_sketch.safetensors`` in ``models/stylegan``."""
    saved = []
    for node_id, entry in texts.items():
        folder = SAVING_NODES.get(entry.get("class_type") or "")
        if folder is None:
            continue
        for text in entry["text"]:
            name = text[: -len(_OUTPUT_MARK)] if text.endswith(_OUTPUT_MARK) else text
            saved.append({"node": node_id, "class_type": entry["class_type"], "name": name, "folder": folder})
    return saved


def texts_relpath(label: str, layout: str = "folders") -> str:
    """Where ``--download`` writes a variant's text outputs: ``v003/texts.json`` or ``v003_texts.json``."""
    return f"{label}_texts.json" if layout == "prefix" else str(PurePosixPath(label, "texts.json"))
