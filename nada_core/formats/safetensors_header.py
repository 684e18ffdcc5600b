"""The JSON header of an untrusted ``.safetensors`` file, read and checked before any tensor.

Layout: 8 bytes little-endian header length ``n``, ``n`` bytes of JSON (``{name: {"dtype",
"shape", "data_offsets"}, "__metadata__": {str: str}}``), then the tensor data. The safetensors
library accepts headers up to 100 MB; every file this pack reads (generators, domains, latents,
directions, training states) has one of a few kilobytes to a few hundred, so a far larger one is
refused here before it is parsed (a crafted header of tens of megabytes would otherwise cost
seconds and hundreds of megabytes of Python objects in every reader that parses it).
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import CheckpointError
from ..json_text import parse_json

#: Largest header read: ~100,000 tensor entries, or metadata of megabytes.
MAX_HEADER_BYTES = 16 * 1024 * 1024


def read_header(path: str | Path, *, what: str, fix: str, max_bytes: int = MAX_HEADER_BYTES) -> dict:
    """The parsed header of ``path`` (``what`` names it in messages, ``fix`` ends them).

    Raises one :class:`CheckpointError` line for a short file, a header length that is absurd,
    past the end of the file or over ``max_bytes``, JSON that is bad or nested too deep, and
    ``__metadata__`` that is not a table of strings. Tensor entries are not checked here.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{what}: too short to be a .safetensors file; {fix}")
        (n,) = struct.unpack("<Q", head)
        if n < 2 or 8 + n > size:
            raise CheckpointError(f"{what}: bad .safetensors header size ({n} bytes in a {size}-byte file; the file "
                                  f"is truncated or not a .safetensors file); {fix}")
        if n > max_bytes:
            raise CheckpointError(f"{what}: bad .safetensors header size ({n:,} bytes, over the {max_bytes:,} any "
                                  f"file of this kind needs); the file is corrupt or hostile; {fix}")
        blob = fh.read(n)
    header = parse_json(blob, f"{what}: the .safetensors header", fix, expect=dict, error=CheckpointError)
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise CheckpointError(f"{what}: the .safetensors metadata is not a table of text values; {fix}")
    return header
