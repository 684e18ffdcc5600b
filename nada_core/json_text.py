"""The one way to read JSON text from a file, a header or a server: bounded, typed, one-line errors.

``json.loads`` on untrusted text can raise five different exceptions (bad syntax, bad bytes,
``RecursionError`` for deep nesting, ``ValueError`` for huge integers, ``MemoryError``) and
returns any JSON type. :func:`parse_json` turns all of them into one :class:`InputError` (or the
class the caller names) naming the source and the fix, and checks the top-level type.
Standard library only: the queue client uses it too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import InputError, NadaError

MAX_DEPTH = 64  # real headers, workflows and reports nest < 12 levels


# A JSON string (an unterminated one runs to the end); brackets inside strings do not nest.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_TO_PARENS = bytes.maketrans(b"[]{}", b"()()")


def json_depth_exceeds(text: str, limit: int) -> bool:
    """True when brackets nest deeper than ``limit`` (strings are skipped).

    Exact for balanced brackets (valid JSON); an unbalanced text counts its unclosed openings.
    Done with C-speed string operations (a regex drops strings, ``bytes.translate`` keeps the
    brackets, each ``replace`` pass peels the innermost pairs), so a header of megabytes is
    checked in a fraction of a second instead of a character-by-character Python loop.
    """
    brackets = _STRING.sub("", text).encode("utf-8", "surrogatepass").translate(_TO_PARENS, _NOT_BRACKETS)
    for _ in range(limit):  # pass k removes the pairs at depth k from the bottom
        if b"()" not in brackets:
            break
        brackets = brackets.replace(b"()", b"")
    return b"()" in brackets or brackets.count(b"(") > limit


def parse_json(text: str | bytes | bytearray, what: str, fix: str = "", *,
               expect: type | tuple[type, ...] | None = None, max_depth: int = MAX_DEPTH,
               error: type[NadaError] = InputError) -> Any:
    """Parse ``text`` as JSON or raise ``error`` with one line: ``"{what}: {problem}; {fix}"``.

    ``expect``: the required top-level type(s) (e.g. ``dict``); ``max_depth``: nesting refused
    beyond it (before parsing, so no ``RecursionError`` can escape).
    """
    tail = f"; {fix}" if fix else ""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise error(f"{what}: not UTF-8 text (byte {err.start}){tail}") from None
    if not isinstance(text, str):
        raise error(f"{what}: expected JSON text, got {type(text).__name__}{tail}")
    if json_depth_exceeds(text, max_depth):
        raise error(f"{what}: JSON nested deeper than {max_depth} levels{tail}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{what}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}){tail}") from None
    except (ValueError, RecursionError, MemoryError) as err:  # e.g. integers with too many digits
        raise error(f"{what}: unreadable JSON ({type(err).__name__}: {str(err)[:80]}){tail}") from None
    if expect is not None and not isinstance(value, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise error(f"{what}: expected a JSON {_json_name(names)}, got {_json_name(type(value).__name__)}{tail}")
    return value


def _json_name(py: str) -> str:
    table = {"dict": "object", "list": "array", "str": "string", "int": "number", "float": "number",
             "bool": "boolean", "NoneType": "null"}
    return " or ".join(table.get(p, p) for p in py.split(" or "))
