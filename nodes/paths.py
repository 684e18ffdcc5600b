"""Model folders: ``models/stylegan`` (generators), ``models/stylegan/directions`` (latent editing
directions: InterFaceGAN boundaries, SeFa/GANSpace files), ``models/open_clip`` (CLIP weights) and
``models/encoders`` (e4e / pSp / ReStyle encoder checkpoints).

Inside ComfyUI both are registered with its folder system (``folder_paths``), merged with any
folders the user configured in ``extra_model_paths.yaml`` (never replacing them), so model files
can live anywhere ComfyUI knows about. Outside ComfyUI the folders are
``$NADA_MODELS_DIR/<name>`` (default ``./models/<name>``), and inputs/outputs go to
``$NADA_INPUT_DIR`` / ``$NADA_OUTPUT_DIR`` (default ``./input``, ``./output``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

from . import comfy_bridge

STYLEGAN = "stylegan"
OPEN_CLIP = "open_clip"
DIRECTIONS = "stylegan_directions"  # ComfyUI folder name; its default is models/stylegan/directions
ENCODERS = "encoders"
SAVED_SUBFOLDER = "nada"  # adapted generators are saved under models/stylegan/nada/
DIRECTIONS_SUBFOLDER = "directions"
DOMAINS = "stylegan_domains"  # compact domain files: models/stylegan/domains/
DOMAINS_SUBFOLDER = "domains"  # the domains folder, inside the default stylegan folder

GENERATOR_EXTENSIONS = {".pt", ".pkl", ".safetensors"}
CLIP_EXTENSIONS = {".pt", ".pkl", ".safetensors", ".pth", ".bin"}
ENCODER_EXTENSIONS = {".pt", ".pth"}
LATENT_EXTENSIONS = {".safetensors"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
DIRECTION_EXTENSIONS = {".safetensors", ".npy", ".npz", ".pt", ".pth"}  # nada_core.editing.direction_files
OPEN_CLIP_CONFIG = "open_clip_config.json"  # marks a Hugging Face-layout open_clip folder

DOMAIN_EXTENSIONS = {".safetensors"}
_EXTENSIONS = {STYLEGAN: GENERATOR_EXTENSIONS, OPEN_CLIP: CLIP_EXTENSIONS, DIRECTIONS: DIRECTION_EXTENSIONS,
               ENCODERS: ENCODER_EXTENSIONS, DOMAINS: DOMAIN_EXTENSIONS}
_KIND = {STYLEGAN: "stylegan", OPEN_CLIP: "open_clip", DIRECTIONS: "direction", ENCODERS: "encoder", DOMAINS: "domain"}
# else models/<name>
_DEFAULT_SUBDIR = {DIRECTIONS: os.path.join(STYLEGAN, DIRECTIONS_SUBFOLDER), DOMAINS: os.path.join(STYLEGAN, DOMAINS_SUBFOLDER)}


class ModelNotFound(Exception):
    """Internal: raised by :func:`resolve_model`; nodes turn it into their own error."""


# ------------------------------------------------------------------------------------ registration


def register_model_folders() -> None:
    """Register ``stylegan``, ``stylegan_directions``, ``stylegan_domains``, ``open_clip`` and ``encoders`` with
    ComfyUI (no-op outside ComfyUI).

    Merges: folders already configured (``extra_model_paths.yaml`` is read before packs load) are
    kept in their order; the default ``ComfyUI/models/<name>`` is appended if missing; extensions
    are united with ours.
    """
    fp = comfy_bridge.folder_paths()
    if fp is None:
        return
    for name, exts in _EXTENSIONS.items():
        default = os.path.join(fp.models_dir, _DEFAULT_SUBDIR.get(name, name))
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
    """Folders searched for model kind ``name`` (``stylegan``, ``stylegan_directions``, ``stylegan_domains``,
    ``open_clip``, ``encoders``), first = default."""
    fp = comfy_bridge.folder_paths()
    if fp is not None and name in fp.folder_names_and_paths:
        return [Path(p) for p in fp.get_folder_paths(name)]
    root = os.environ.get("NADA_MODELS_DIR") or "models"
    return [Path(root) / _DEFAULT_SUBDIR.get(name, name)]


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
    """Where adapted generators (and training snapshots) are saved: ``<first stylegan folder>/nada``.

    The first stylegan folder is ``ComfyUI/models/stylegan`` unless ``extra_model_paths.yaml`` names
    a ``stylegan:`` folder: that one comes first (it is where the user keeps StyleGAN models), so
    saved files land in its ``nada/`` and NADA Load Generator lists them as ``nada/<name>``.
    """
    return model_folders(STYLEGAN)[0] / SAVED_SUBFOLDER


SAVE_DIR_RULE = ("the first stylegan folder's nada/ sub-folder: ComfyUI/models/stylegan/nada/, or, when "
                 "extra_model_paths.yaml names a stylegan: folder, that folder's nada/")


def save_dir_tooltip() -> str:
    """Where files are saved, as a tooltip fragment: the rule and the folder it gives right now."""
    return f"{SAVE_DIR_RULE} (here: {generator_save_dir()})"


# ------------------------------------------------------------------------------------ fingerprints


def fingerprint(files: Iterable[Path], *extra: str) -> str:
    """Change marker of ``files`` for ComfyUI's cache (``IS_CHANGED``): replacing, editing or
    touching a file (new size or mtime) changes it.

    ComfyUI writes ``IS_CHANGED`` values into the prompt it embeds in every PNG/WebP it saves, so
    the marker holds no path (it would show the user's home folder to whoever gets the image): only
    a SHA-256 over each file's path, size and mtime, and ``extra``, travels.
    """
    h = hashlib.sha256()
    for part in extra:
        h.update(f"{part}\0".encode("utf-8", "surrogateescape"))
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{f}\0missing\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + h.hexdigest()[:32]


def domain_save_dir() -> Path:
    """Where domains are saved: the first ``stylegan_domains`` folder (default ``models/stylegan/domains``)."""
    return model_folders(DOMAINS)[0]


# ----------------------------------------------------------------------------------------- listing


MAX_WALK_DEPTH = 16  # model folders nest 2-3 levels; a deeper tree is a mistake or a link farm


def free_stem(folder: Path, stem: str, suffixes: Iterable[str] = (".safetensors",), numbered: bool = False) -> str:
    """``stem`` when no ``folder/<stem><suffix>`` exists for any suffix (and not ``numbered``), else the
    first ``<stem>_NNNNN`` (from 00001) free for every suffix: saves never replace an earlier file."""
    suffixes = tuple(suffixes)

    def taken(name: str) -> bool:
        return any((folder / f"{name}{ext}").exists() for ext in suffixes)

    if not numbered and not taken(stem):
        return stem
    counter = 1
    while taken(f"{stem}_{counter:05d}"):
        counter += 1
    return f"{stem}_{counter:05d}"


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
        dirs = {d for folder in model_folders(name) for d in _walk_clip_dirs(folder)}
        # A Hugging Face folder is one choice: its weights file is not listed on its own as well.
        found = {f for f in found if not any(f.startswith(d + "/") for d in dirs)} | dirs
    if name == STYLEGAN:  # direction files live in stylegan/directions/ but are not generators
        found = {f for f in found if not f.startswith(DIRECTIONS_SUBFOLDER + "/")}
    if name == STYLEGAN:  # domain files live in stylegan/domains/ but are not generators
        found = {f for f in found if not f.startswith(DOMAINS_SUBFOLDER + "/")}
    return sorted(found)


# Top-level input sub-folders that ComfyUI and its front end keep for themselves (3D models, mask
# editor, pasted and webcam captures, 3D viewer backgrounds, recorded audio): not image sets.
SYSTEM_INPUT_FOLDERS = frozenset({"3d", "clipspace", "pasted", "webcam", "threed", "backgrounds", "audio"})


def list_input_subfolders() -> list[str]:
    """Sub-folders of the input folder (relative names), for folder-of-images loaders; ComfyUI's own
    folders (:data:`SYSTEM_INPUT_FOLDERS`) and hidden ones are left out."""
    root = input_dir()
    if not root.is_dir():
        return []
    out = []
    for dirpath, _dirs, _files in walk_folder(root, skip=lambda d: d.startswith(".")):
        if dirpath == root:
            continue
        rel = dirpath.relative_to(root).as_posix()
        if rel.split("/", 1)[0].lower() not in SYSTEM_INPUT_FOLDERS:
            out.append(rel)
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
