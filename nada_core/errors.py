"""One exception family for every user-facing problem.

Each error message names the problem and the fix in one line, so the CLI and the ComfyUI nodes
can show ``str(err)`` as-is instead of a traceback.
"""


class NadaError(Exception):
    """Base class: a problem the user can fix (bad file, bad input, bad setting)."""


class CheckpointError(NadaError):
    """A generator/latent file is missing, corrupt, unsafe or of an unknown layout."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle asked to call something outside the allowlist; nothing was executed."""


class ClipError(NadaError):
    """A CLIP model could not be loaded or used."""


class InputError(NadaError):
    """Bad user input: prompts, images, seeds, settings."""


class Interrupted(NadaError):
    """Long work was stopped by the user (Cancel in ComfyUI, Ctrl-C on the CLI)."""


def non_negative_weight(value, what: str) -> float:
    """``float(value)`` when it is a finite number >= 0; otherwise :class:`InputError` naming ``what``."""
    import math

    try:
        w = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(w) or w < 0:
        raise InputError(f"{what} must be a finite number >= 0, got {value!r}")
    return w


def short_reason(err: BaseException | str, limit: int = 200) -> str:
    """``str(err)`` on one line (whitespace collapsed), cut to ``limit`` characters with ``...``.

    For quoting a library's error inside our own one-line messages; an empty message gives the
    exception's type name.
    """
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
