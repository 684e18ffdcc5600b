"""Which generator format a file holds, from its first bytes and header; imports no torch.

``nada info`` and the loaders call :func:`detect_format` first, so a missing, empty or
unrecognised file (or a broken ``.safetensors`` header) is refused in one line before the
heavy libraries are even imported. Format ids and descriptions live here for the same reason.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from ..errors import CheckpointError

FORMAT_ROSINALITY = "rosinality-pt"
FORMAT_NVIDIA = "stylegan2-ada-pkl"
FORMAT_NADA = "nada-safetensors"
FORMAT_TF = "stylegan2-tf-pkl"  # told apart from FORMAT_NVIDIA only after (safe) unpickling
FORMAT_STYLEGAN3 = "stylegan3-pkl"  # likewise: an NVIDIA pickle whose G_ema is a StyleGAN3
FORMAT_DFL = "dfl-safetensors"  # dfl/ComfyUI-StyleGan's cache: NVIDIA state dict + arch/init_kwargs metadata
FORMAT_DESCRIPTIONS = {
    FORMAT_ROSINALITY: "rosinality stylegan2-pytorch checkpoint (.pt)",
    FORMAT_NVIDIA: "NVIDIA stylegan2-ada-pytorch pickle (.pkl)",
    FORMAT_TF: "NVIDIA StyleGAN2 TensorFlow pickle (.pkl, e.g. stylegan2-ffhq-config-f.pkl)",
    FORMAT_STYLEGAN3: "NVIDIA stylegan3 pickle (.pkl, StyleGAN3-T or -R)",
    FORMAT_NADA: "ComfyUI-NADA generator (.safetensors)",
    FORMAT_DFL: "dfl/ComfyUI-StyleGan cache of an NVIDIA pickle (.safetensors)",
}
SUPPORTED_FORMATS = ("a rosinality stylegan2-pytorch .pt, an NVIDIA stylegan2-ada-pytorch, stylegan3 or StyleGAN2 "
                     "TensorFlow .pkl or a ComfyUI-NADA (or dfl/ComfyUI-StyleGan) .safetensors generator")

_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # pickle of torch's magic number
_SAFETENSORS_LIBRARY_MAX_HEADER = 100 * 1024 * 1024  # what the safetensors library itself accepts


def existing_file(path: str | os.PathLike, what: str = "generator", expected: str = SUPPORTED_FORMATS) -> Path:
    """``path`` as a :class:`Path` when it names an existing file; else one :class:`CheckpointError` line
    naming ``what`` was wanted and the ``expected`` formats."""
    if path is None or str(path) == "":
        raise CheckpointError(f"no {what} file given; expected {expected}")
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{p}: no such file; expected {expected}")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a folder, not a file; expected {expected}")
    return p


def detect_format(path: str | os.PathLike) -> str:
    """Format id (``FORMAT_*``) of a generator file from its first bytes.

    Raises :class:`CheckpointError` for missing, empty or unrecognised files.
    """
    p = existing_file(path)
    with open(p, "rb") as fh:
        head = fh.read(64)
    size = p.stat().st_size
    if not head:
        raise CheckpointError(f"{p}: the file is empty; expected {SUPPORTED_FORMATS}")
    # safetensors first: its 8-byte header length can itself start with 0x80 0x02..0x05.
    if len(head) >= 10 and head[8:10] in (b'{"', b"{}"):
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= _SAFETENSORS_LIBRARY_MAX_HEADER:
            return _safetensors_format(p)
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return FORMAT_ROSINALITY
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return FORMAT_NVIDIA
    raise CheckpointError(f"{p}: not a recognised generator file ({size} bytes, unknown content); expected "
                          f"{SUPPORTED_FORMATS}")


def read_safetensors_header(p: Path) -> dict:
    """The checked header of a generator ``.safetensors`` (:mod:`.safetensors_header`)."""
    from .safetensors_header import read_header

    return read_header(p, what=str(p), fix="the file is corrupt; get or save it again")


def is_dfl_metadata(meta: Any) -> bool:
    """True for a safetensors ``__metadata__`` table with dfl's ``arch`` and ``init_kwargs``."""
    return isinstance(meta, dict) and isinstance(meta.get("arch"), str) and isinstance(meta.get("init_kwargs"), str)


def _safetensors_format(p: Path) -> str:
    """``FORMAT_DFL`` when the header metadata is dfl/ComfyUI-StyleGan's (``arch`` + ``init_kwargs``,
    no ``nada_format``), else ``FORMAT_NADA`` (whose reader names any other problem). A broken header
    is refused here already, in the words the loader would use."""
    meta = read_safetensors_header(p).get("__metadata__")
    if is_dfl_metadata(meta) and meta.get("nada_format") is None:
        return FORMAT_DFL
    return FORMAT_NADA
