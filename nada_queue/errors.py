"""Errors of the queue client (all :class:`~nada_core.errors.NadaError`: one line, problem + fix)."""

from __future__ import annotations

from nada_core.errors import NadaError


class ComfyError(NadaError):
    """The server answered, but not with what we asked for (HTTP error, bad JSON)."""


class Unreachable(ComfyError):
    """The server could not be reached (refused, reset, timed out, too slow, gateway error)."""


class BadAnswer(ComfyError):
    """An answer that is not what ComfyUI sends: not JSON, wrong shape, too large."""
