"""Model folders: ``models/stylegan`` (generators) and ``models/open_clip`` (CLIP weights).

Inside ComfyUI both are registered with its folder system (``folder_paths``), merged with any
folders the user configured in ``extra_model_paths.yaml`` (never replacing them), so model files
can live anywhere ComfyUI knows about. Outside ComfyUI the folders are
``$NADA_MODELS_DIR/<name>`` (default ``./models/<name>``), and inputs/outputs go to
``$NADA_INPUT_DIR`` / ``$NADA_OUTPUT_DIR`` (default ``./input``, ``./output``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from . import comfy_bridge

STYLEGAN = "stylegan"
OPEN_CLIP = "open_clip"
DOMAINS = "stylegan_domains"  # compact domain files: models/stylegan/domains/
SAVED_SUBFOLDER = "nada"  # adapted generators are saved under models/stylegan/nada/
DOMAINS_SUBFOLDER = "domains"  # the domains folder, inside the default stylegan folder

GENERATOR_EXTENSIONS = {".pt", ".pkl", ".safetensors"}
CLIP_EXTENSIONS = {".pt", ".pkl", ".safetensors", ".pth", ".bin"}
LATENT_EXTENSIONS = {".safetensors"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
OPEN_CLIP_CONFIG = "open_clip_config.json"  # marks a Hugging Face-layout open_clip folder

DOMAIN_EXTENSIONS = {".safetensors"}
_EXTENSIONS = {STYLEGAN: GENERATOR_EXTENSIONS, OPEN_CLIP: CLIP_EXTENSIONS, DOMAINS: DOMAIN_EXTENSIONS}
_KIND = {STYLEGAN: "stylegan", OPEN_CLIP: "open_clip", DOMAINS: "domain"}
_DEFAULT_SUBPATH = {DOMAINS: os.path.join(STYLEGAN, DOMAINS_SUBFOLDER)}  # else models/<name>


class ModelNotFound(Exception):
    """Internal: raised by :func:`resolve_model`; nodes turn it into their own error."""


# ------------------------------------------------------------------------------------ registration


def register_model_folders() -> None:
    """Register ``stylegan``, ``open_clip`` and ``stylegan_domains`` (default
    ``models/stylegan/domains``) with ComfyUI (no-op outside ComfyUI).

    Merges: folders already configured (``extra_model_paths.yaml`` is read before packs load) are
    kept in their order; the default ``ComfyUI/models/<name>`` is appended if missing; extensions
    are united with ours.
    """
    fp = comfy_bridge.folder_paths()
    if fp is None:
        return
    for name, exts in _EXTENSIONS.items():
        default = os.path.join(fp.models_dir, _DEFAULT_SUBPATH.get(name, name))
        if name in fp.folder_names_and_paths:
            folders, old_exts = fp.folder_names_and_paths[name]
            folders = list(folders)
            if default not in folders:
                folders.append(default)
            merged = set(old_exts) | exts if old_exts else set(exts)
            fp.folder_names_and_paths[name] = (folders, merged)
        else:
            fp.folder_names_and_paths[name] = ([default], set(exts))
        try:  # create the default folder so users see where to put files; harmless if it fails
            os.makedirs(default, exist_ok=True)
        except OSError:
            pass


# ----------------------------------------------------------------------------------------- folders


def model_folders(name: str) -> list[Path]:
    """Folders searched for model kind ``name`` (``stylegan``, ``open_clip``, ``stylegan_domains``), first = default."""
    fp = comfy_bridge.folder_paths()
    if fp is not None and name in fp.folder_names_and_paths:
        return [Path(p) for p in fp.get_folder_paths(name)]
    root = os.environ.get("NADA_MODELS_DIR") or "models"
    return [Path(root) / _DEFAULT_SUBPATH.get(name, name)]


def output_dir() -> Path:
    fp = comfy_bridge.folder_paths()
    if fp is not None:
        return Path(fp.get_output_directory())
    return Path(os.environ.get("NADA_OUTPUT_DIR") or "output")


def input_dir() -> Path:
    fp = comfy_bridge.folder_paths()
    if fp is not None:
        return Path(fp.get_input_directory())
    return Path(os.environ.get("NADA_INPUT_DIR") or "input")


def generator_save_dir() -> Path:
    """Where adapted generators are saved: ``<first stylegan folder>/nada``."""
    return model_folders(STYLEGAN)[0] / SAVED_SUBFOLDER


def domain_save_dir() -> Path:
    """Where domains are saved: the first ``stylegan_domains`` folder (default ``models/stylegan/domains``)."""
    return model_folders(DOMAINS)[0]


# ----------------------------------------------------------------------------------------- listing


MAX_WALK_DEPTH = 16  # model folders nest 2-3 levels; a deeper tree is a mistake or a link farm


def walk_folder(root: Path, skip: Callable[[str], bool] = lambda name: name.startswith(".")):
    """Yield ``(folder, sub_folder_names, file_names)`` under ``root``, sorted, top-down.

    Symbolic links to folders are followed (models often live on another drive), but each real
    folder (``st_dev``, ``st_ino``) is entered at most once and at most :data:`MAX_WALK_DEPTH`
    levels deep, so a symlink loop cannot make ComfyUI's start-up walk forever. Unreadable
    folders are skipped.
    """
    seen: set[tuple[int, int]] = set()
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            st = folder.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        dirs, files = [], []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    try:
                        if entry.is_dir():  # follows links
                            if not skip(entry.name):
                                dirs.append(entry.name)
                        elif entry.is_file():
                            files.append(entry.name)
                    except OSError:
                        continue
        except OSError:
            continue
        dirs.sort()
        files.sort()
        yield folder, dirs, files
        if depth < MAX_WALK_DEPTH:
            stack.extend((folder / d, depth + 1) for d in reversed(dirs))


def _walk_files(folder: Path, exts: set[str] | None) -> list[str]:
    """Files under ``folder`` whose extension is in ``exts`` (``None``: every file), relative names."""
    out = []
    if not folder.is_dir():
        return out
    for dirpath, _dirs, filenames in walk_folder(folder):
        for f in filenames:
            if exts is None or os.path.splitext(f)[1].lower() in exts:
                out.append((dirpath / f).relative_to(folder).as_posix())
    return out


def _walk_clip_dirs(folder: Path) -> list[str]:
    """Sub-folders holding an ``open_clip_config.json`` (Hugging Face layout), relative names."""
    out = []
    if not folder.is_dir():
        return out
    for dirpath, _dirs, filenames in walk_folder(folder):
        if OPEN_CLIP_CONFIG in filenames and dirpath != folder:
            out.append(dirpath.relative_to(folder).as_posix())
    return out


def list_models(name: str) -> list[str]:
    """Names (relative paths, ``/``-separated) shown in a loader's dropdown, sorted.

    Inside ComfyUI: every folder and extension registered for ``name`` (extra_model_paths.yaml
    included), walked with :func:`walk_folder` (symlink-loop safe). ``open_clip`` also lists Hugging Face-layout folders (ComfyUI only lists files).
    """
    fp = comfy_bridge.folder_paths()
    found: set[str] = set()
    if fp is not None and name in fp.folder_names_and_paths:
        # ComfyUI's folders and extensions, but our walk: ComfyUI's own get_filename_list follows
        # symlinks without remembering where it has been, so a link loop would hang its start-up.
        exts = {e.lower() for e in (fp.folder_names_and_paths[name][1] or ())}
        for folder in fp.get_folder_paths(name):
            found.update(_walk_files(Path(folder), exts or None))
    else:
        for folder in model_folders(name):
            found.update(_walk_files(folder, _EXTENSIONS[name]))
    if name == OPEN_CLIP:
        for folder in model_folders(name):
            found.update(_walk_clip_dirs(folder))
    if name == STYLEGAN:  # domain files live in stylegan/domains/ but are not generators
        found = {f for f in found if not f.startswith(DOMAINS_SUBFOLDER + "/")}
    return sorted(found)


def list_input_subfolders() -> list[str]:
    """Sub-folders of the input folder (relative names), for folder-of-images loaders."""
    root = input_dir()
    if not root.is_dir():
        return []
    out = []
    for dirpath, _dirs, _files in walk_folder(root, skip=lambda d: d.startswith(".") or d == "clipspace"):
        if dirpath != root:
            out.append(dirpath.relative_to(root).as_posix())
    return sorted(out)


def list_files(folder: Path, exts: set[str]) -> list[str]:
    """Files under ``folder`` with one of ``exts``, relative names, sorted."""
    return sorted(_walk_files(folder, exts))


# --------------------------------------------------------------------------------------- resolving


def safe_join(folder: Path, name: str) -> Path:
    """``folder / name`` where ``name`` may not escape ``folder`` (no absolute paths, no ``..``)."""
    rel = os.path.normpath(os.path.join(os.sep, name)).lstrip(os.sep)  # drop .. above the root
    return folder / rel


def resolve_model(name: str, kind: str, allow_dir: bool = False) -> Path:
    """Full path of model ``name`` of ``kind``; raises :class:`ModelNotFound` with a helpful message."""
    name = (name or "").strip()
    folders = model_folders(kind)
    if not name:
        raise ModelNotFound(f"no {_KIND[kind]} file chosen; put one in {folders[0]} and pick it in the list")
    for folder in folders:
        path = safe_join(folder, name)
        if path.is_file() or (allow_dir and path.is_dir()):
            return path
    searched = ", ".join(str(f) for f in folders)
    raise ModelNotFound(
        f"{_KIND[kind]} file '{name}' not found; put it in {folders[0]} (searched: {searched})"
    )


def resolve_in(folder: Path, name: str, what: str) -> Path:
    """A file ``name`` inside ``folder`` (input/output), or :class:`ModelNotFound` saying where."""
    path = safe_join(folder, (name or "").strip())
    if not name or not path.is_file():
        raise ModelNotFound(f"{what} '{name}' not found; put it in {folder}")
    return path


def resolve_dir(root: Path, name: str, what: str) -> Path:
    """A sub-folder ``name`` of ``root`` (e.g. the input folder), or :class:`ModelNotFound` saying where."""
    path = safe_join(root, (name or "").strip())
    if not name or not path.is_dir() or path == root:
        raise ModelNotFound(f"{what} '{name}' not found; create it inside {root} and put the files there")
    return path
