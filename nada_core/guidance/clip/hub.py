"""Hugging Face hub access for tag and ``hf-hub:`` specs: cache first, fail fast when offline.

A download is only tried after a short TCP probe (:data:`PROBE_TIMEOUT_S`); offline the error
says which files to download by hand and where to put them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from ...errors import ClipError, short_reason
from .spec import HF_CONFIG_NAME, HF_WEIGHT_NAMES, MODELS_HINT


#: Seconds to wait for a TCP connection before declaring the hub unreachable.
PROBE_TIMEOUT_S = 2.5


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co"


def _probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Try a TCP connection to ``url``'s host (or the HTTPS proxy). None when reachable, else the reason."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy and url.startswith("https") else url)
    host = target.hostname
    if not host:
        return f"bad address {url!r}"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return short_reason(err, 80)


def _offline_error(what: str, repo: str | None, url: str | None, reason: str, arch: str | None) -> ClipError:
    if repo:
        page = f"https://huggingface.co/{repo}"
        folder = f"{MODELS_HINT}/{repo.split('/')[-1]}"
        fix = (f"download {HF_CONFIG_NAME} and {HF_WEIGHT_NAMES[0]} from {page} into {folder} "
               f"and pass that folder")
    else:
        fix = (f"download {url} into {MODELS_HINT} and pass "
               f"'{MODELS_HINT}/{os.path.basename(urlparse(url or '').path) or 'weights.pt'}'")
    return ClipError(f"CLIP {what} needs a download but {reason}; {fix}")


def _ensure_online(what: str, repo: str | None, url: str | None, arch: str | None) -> None:
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        raise _offline_error(what, repo, url, "offline mode is on (HF_HUB_OFFLINE)", arch)
    endpoint = _hub_endpoint() if repo else (url or "")
    reason = _probe(endpoint)
    if reason is not None:
        raise _offline_error(what, repo, url, f"{urlparse(endpoint).netloc or endpoint} is unreachable ({reason})",
                             arch)


def _hub_cached(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def _hub_download(repo: str, filenames: Sequence[str], what: str) -> Path:
    """First of ``filenames`` found in the cache, else downloaded (call :func:`_ensure_online` first)."""
    for name in filenames:
        cached = _hub_cached(repo, name)
        if cached is not None:
            return cached
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover
        raise ClipError("downloading CLIP weights needs the huggingface_hub package") from None
    errors = []
    for name in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo, filename=name, etag_timeout=10))
        except Exception as err:
            errors.append(f"{name}: {short_reason(err, 80)}")
    raise ClipError(f"cannot download CLIP {what} from https://huggingface.co/{repo} ({'; '.join(errors)}); "
                    f"download the files by hand into {MODELS_HINT}")


def _tag_files(hf_hub: str) -> tuple[str, list[str]]:
    """open_clip writes ``org/repo/`` (default file names) or ``org/repo/file.bin``."""
    if hf_hub.endswith("/"):
        return hf_hub.rstrip("/"), [HF_WEIGHT_NAMES[0], HF_WEIGHT_NAMES[2]]
    repo, filename = os.path.split(hf_hub)
    stem, ext = os.path.splitext(filename)
    names = [stem + ".safetensors"] if ext in (".bin", ".pth") else []
    return repo, names + [filename]
