"""Atomic file writes: a save either completes or leaves the previous file untouched.

Temporary files are named ``.NAME.nada-<pid>-<hex>.tmp`` next to the target, so that one left
behind by a killed process (SIGKILL, power loss) can be recognised as ours and removed by the
next atomic write in that folder. Write failures the user can fix (disk full, quota, read-only
file system, no permission, name too long) become one :class:`WriteError` line.

:func:`check_output` is the one check every command and node runs on an output path *before*
doing any work: not the same file as an input, the right extension, a file where a file is
expected (a folder where a folder is), a writable parent, a name the file system accepts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from .errors import InputError, NadaError

TMP_PATTERN = re.compile(r"^\..*\.nada-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
STALE_AGE_S = 6 * 3600  # a temp file this old is stale even if its pid is alive again (pid reuse)
_TMP_NAME_CHARS = 80  # the target's name is cut to this in the temp name, so the temp never exceeds NAME_MAX

# errno -> the fix, for failures a user can do something about.
_WRITE_FIXES = {
    errno.ENOSPC: "free some disk space or write to another drive",
    errno.EDQUOT: "your disk quota is full; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write to another folder",
    errno.EACCES: "you have no permission to write there; pick a folder you own",
    errno.EPERM: "you have no permission to write there; pick a folder you own",
    errno.ENAMETOOLONG: "use a shorter file or folder name",
    errno.EFBIG: "the file is too large for this file system; write to another drive",
    errno.EISDIR: "a folder has that name; choose another file name",
    errno.ENOTDIR: "part of the path is a file, not a folder; choose another folder",
}


class WriteError(NadaError):
    """An output could not be written (disk full, read-only, no permission...); nothing was replaced."""


def _describe_write_error(target: Path, err: OSError) -> WriteError:
    reason = os.strerror(err.errno) if err.errno else str(err)
    return WriteError(f"cannot write {target}: {reason}; {_WRITE_FIXES[err.errno]}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def remove_stale_temps(folder: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Delete our temp files in ``folder`` left by dead processes (or older than ``STALE_AGE_S``).

    Only names matching :data:`TMP_PATTERN` are touched; a temp of a live writer is kept.
    Returns the paths removed. Never raises (cleaning up is best effort).
    """
    removed: list[Path] = []
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = TMP_PATTERN.match(entry.name)
        if not m:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            pid = int(m.group("pid"))
            old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AGE_S
            if old or (pid != os.getpid() and not _pid_alive(pid)):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


_CLEAN_INTERVAL_S = 60.0
_last_clean: dict[str, float] = {}


def _clean_once_in_a_while(folder: Path) -> None:
    """:func:`remove_stale_temps` at most once a minute per folder, so writing thousands of
    frames into one folder does not rescan it for every frame."""
    key = os.path.abspath(folder)
    now = time.monotonic()
    if now - _last_clean.get(key, -_CLEAN_INTERVAL_S) >= _CLEAN_INTERVAL_S:
        _last_clean[key] = now
        remove_stale_temps(folder)


def _file_mode(p: Path) -> int | None:
    """Permission bits of ``p`` (None where the file system cannot say)."""
    try:
        return stat.S_IMODE(os.stat(p).st_mode)
    except OSError:
        return None


def _temp_name(target: Path) -> str:
    return f".{target.name[:_TMP_NAME_CHARS]}.nada-{os.getpid()}-{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the destination folder; rename it over ``path`` on success.

    The temporary file lives next to the target so the final ``os.replace`` is atomic on the
    same file system. On any exception (including KeyboardInterrupt) the temporary file is
    removed and ``path`` is left as it was; disk-full / read-only / permission / name-length
    failures are raised as one-line :class:`WriteError`. Stale temps of killed writers in the
    same folder are removed first. The final file has mode ``0666 & ~umask`` (what ``open()``
    gives any new file), even when the writer replaced the temp file with one of its own mode.
    """
    target = Path(path)
    tmp: Path | None = None
    if "\x00" in os.fspath(target):  # os calls would raise ValueError, not OSError
        raise WriteError(f"cannot write {os.fspath(target)[:80]!r}: the name holds a NUL character; use another name")
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file sits where a folder of the path should be
            raise WriteError(f"cannot write {target}: part of the path is a file, not a folder; "
                             "choose another folder") from None
        _clean_once_in_a_while(target.parent)
        while True:
            tmp = target.parent / _temp_name(target)
            try:
                # Mode 0666 filtered by the umask: saved files read like any other file.
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
        # The mode the kernel just gave the empty temp file IS 0666 filtered by the umask; read it
        # here rather than via os.umask(), which would change the umask of every thread for a moment.
        mode = _file_mode(tmp)
        yield tmp
        with open(tmp, "rb+") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        # Some writers (safetensors' save_file) replace the temp file with their own 0600 one:
        # the final file gets the umask's mode whichever library wrote it.
        if mode is not None and _file_mode(tmp) != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(err, OSError) and err.errno in _WRITE_FIXES:
            raise _describe_write_error(target, err) from None
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``. Returns ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------------------- output checks


def _limit(existing: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(existing, name))
    except (OSError, ValueError, AttributeError):
        return default


def _existing_ancestor(p: Path) -> Path:
    for parent in (p, *p.parents):
        if os.path.lexists(parent):
            return parent
    return Path(p.anchor or ".")


def check_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                 suffixes: Iterable[str] | None = None, kind: Literal["file", "dir"] = "file",
                 what: str = "output") -> Path:
    """Refuse an output path that would destroy an input or cannot be written; returns ``Path(out)``.

    ``inputs``: files read by the same run (``None`` entries ignored); the output may not be any
    of them (same file after symlinks and hard links). ``suffixes``: allowed extensions
    (e.g. ``(".png",)``) when ``kind == "file"``. ``kind``: whether a file or a folder is written.
    Raises :class:`InputError` with one line naming the problem and the fix.
    """
    p = Path(os.path.expanduser(os.fspath(out)))
    if not os.fspath(p).strip():
        raise InputError(f"{what}: no path given; name the {kind} to write")
    if "\x00" in os.fspath(p):  # no file system takes it (os calls raise ValueError)
        raise InputError(f"{what}: the name {os.fspath(p)[:60]!r} holds a NUL character; use another name")
    # Names the file system cannot hold: refuse before anything else touches the path.
    anchor = _existing_ancestor(p.absolute())
    name_max = _limit(anchor if anchor.is_dir() else anchor.parent, "PC_NAME_MAX", 255)
    path_max = _limit(anchor if anchor.is_dir() else anchor.parent, "PC_PATH_MAX", 4096)
    for part in p.parts:
        if len(os.fsencode(part)) > name_max:
            raise InputError(f"{what}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes, over this "
                             f"file system's limit of {name_max}; use a shorter name")
    if len(os.fsencode(os.fspath(p.absolute()))) >= path_max:
        raise InputError(f"{what}: the path is over this file system's limit of {path_max} bytes; "
                         "use a shorter path")
    # The worst mistake first: an output that IS an input (same file after links).
    for inp in inputs:
        if inp is None or not os.path.exists(inp) or not os.path.exists(p):
            continue
        if os.path.samefile(inp, p):
            raise InputError(f"{what} {p} is the input file {inp}, so writing it would destroy "
                             "the input; choose another output name")
    if kind == "file":
        if suffixes is not None:
            allowed = tuple(s.lower() for s in suffixes)
            if p.suffix.lower() not in allowed:
                got = f"{p.suffix!r}" if p.suffix else "no extension"
                raise InputError(f"{what} {p}: this writes {' or '.join(allowed)} but the name has {got}; "
                                 f"name it {p.stem or 'out'}{allowed[0]}")
        if p.is_dir():
            raise InputError(f"{what} {p} is an existing folder; give a file name inside it, "
                             f"e.g. {p / ('out' + (next(iter(suffixes), '') if suffixes else ''))}")
    elif os.path.lexists(p) and not p.is_dir():
        raise InputError(f"{what} {p} is an existing file but a folder is written there; "
                         "give a new folder name")
    # The folder the output goes into (or the nearest one that exists) must be a writable folder.
    parent = _existing_ancestor((p if kind == "dir" else p.parent).absolute())
    if not parent.is_dir():
        raise InputError(f"{what} {p}: {parent} is a file, not a folder; choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {p}: no permission to write in {parent}; pick a folder you can write to")
    return p
