"""The saved training state: what ``nada train --resume`` needs to continue bit-identically.

Persistence is kept apart from the maths (:mod:`nada_core.training.trainer`). One
``train_state.safetensors`` file holds the tensors (trained synthesis ``synthesis.*``, Adam moments
``adam.<param>.{step,exp_avg,exp_avg_sq}``, the training RNG ``rng.train``) and, in its metadata, a
JSON ``info`` object (step, settings, loss history, layer selection, source hash, the caller's
notes). Self-contained, so resuming never mixes files from different steps.

Reading treats the file as untrusted: a truncated file, bad JSON, wrong types, missing keys or
tensors of the wrong shape raise one :class:`CheckpointError` line naming the file and the fix.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import CheckpointError, InputError, NadaError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import NadaTrainer

STATE_FORMAT = "nada-train-state"
STATE_VERSION = 1
STATE_FILE = "train_state.safetensors"
GENERATOR_FILE = "generator.safetensors"

#: Settings that may change between a saved run and its resumption without changing the maths.
# Memory settings may change too (a run that ran out of memory can resume with them): they change
# how a step is computed, not what it computes (up to float rounding).
RESUMABLE_CHANGES = {"steps", "preview_every", "preview_seeds", "preview_truncation", "snapshot_every",
                     "select_chunk", "checkpointing"}

_FIX = "resume from an intact --out folder, or start a new run without --resume"
#: A 1024 px generator's synthesis has a few hundred tensors, each with three Adam entries.
MAX_STATE_TENSORS = 20_000
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")


def _bad(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"training state {path}: {problem}; {_FIX}")


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def state_tensors(trainer: "NadaTrainer") -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, info)`` of ``trainer`` (see the module docstring); ``info`` is JSON-able."""
    tensors: dict[str, torch.Tensor] = {}
    adapter = getattr(trainer, "adapter", None)
    if adapter is not None:  # compact domains: the vectors only (the synthesis is the frozen source)
        tensors.update(adapter.state_tensors())
    else:
        for name, t in trainer.G_train.synthesis.state_dict().items():
            tensors[f"synthesis.{name}"] = t.detach().cpu().contiguous()
    params = trainer.trainable_parameters()
    for name in trainer._opt_names:
        st = trainer.optimizer.state.get(params[name], {})
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"adam.{name}.{key}"] = val.detach().cpu().reshape(val.shape).contiguous()
    tensors["rng.train"] = trainer.rng.get_state()  # the only RNG training uses
    info = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "step": trainer.step_index,
        "config": trainer.config.to_dict(),
        "history": trainer.history,
        "layer_history": trainer.layer_history,
        "selector": trainer.selector.state_dict(),
        "source_sha256": trainer.source_sha256,
        "generator_config": trainer.G_frozen.config.to_dict(),
        "direction": describe_direction(trainer.direction),
        "extra": trainer.extra_info,
    }
    return tensors, info


def save_state(trainer: "NadaTrainer", path: str | Path) -> Path:
    """Write ``trainer``'s resumable state to one ``.safetensors`` file (atomic)."""
    import json

    from safetensors.torch import save_file

    from ..atomic import atomic_write

    tensors, info = state_tensors(trainer)
    meta = {"format": STATE_FORMAT, "nada_train_state": json.dumps(info)}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


# ----------------------------------------------------------------------------------------------
# Reading (untrusted)
# ----------------------------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_int_list(v) -> bool:
    return isinstance(v, list) and all(_is_int(i) and i >= 0 for i in v)


def _check_info(p: Path, info: dict) -> None:
    """Types of every ``info`` entry that resuming reads (one line naming the first bad one)."""
    if not _is_int(info.get("version", 0)):
        raise _bad(p, "'version' is not a whole number")
    if info.get("version", 0) > STATE_VERSION:
        raise CheckpointError(f"{p} was written by a newer version of nada; update nada to resume it")
    for key in ("step", "config"):
        if key not in info:
            raise _bad(p, f"the key '{key}' is missing")
    if not _is_int(info["step"]) or info["step"] < 0:
        raise _bad(p, f"'step' must be a whole number >= 0, got {info['step']!r}")
    if not isinstance(info["config"], dict):
        raise _bad(p, "'config' is not an object of settings")
    history = info.get("history", [])
    if not (isinstance(history, list) and all(
            isinstance(h, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                        for k, v in h.items()) for h in history)):
        raise _bad(p, "'history' must be a list of {loss name: number} objects")
    layers = info.get("layer_history", [])
    if not (isinstance(layers, list) and all(_is_int_list(x) for x in layers)):
        raise _bad(p, "'layer_history' must be a list of lists of W+ indices")
    selector = info.get("selector", {})
    if not isinstance(selector, dict) or not (selector.get("current") is None or _is_int_list(selector["current"])):
        raise _bad(p, "'selector' must be an object whose 'current' is null or a list of W+ indices")
    if not isinstance(info.get("generator_config", {}), dict):
        raise _bad(p, "'generator_config' is not an object")
    if info.get("source_sha256") is not None and not isinstance(info["source_sha256"], str):
        raise _bad(p, "'source_sha256' is not text")
    extra = info.get("extra")
    extra = {} if extra is None else extra
    if not isinstance(extra, dict):
        raise _bad(p, "'extra' is not an object")
    for key in ("generator", "source", "target", "target_images"):
        if extra.get(key) is not None and not isinstance(extra[key], str):
            raise _bad(p, f"'extra.{key}' is not text")
    targets = extra.get("targets")
    if targets is not None and not (isinstance(targets, list) and all(isinstance(t, str) for t in targets)):
        raise _bad(p, "'extra.targets' must be a list of texts")
    if "templates" in extra and not isinstance(extra["templates"], bool):
        raise _bad(p, "'extra.templates' is not true/false")
    if extra.get("template_set") is not None and extra["template_set"] not in ("imagenet", "short"):
        raise _bad(p, "'extra.template_set' is not 'imagenet' or 'short'")
    clip = extra.get("clip", [])
    if not (isinstance(clip, list) and all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], (int, float))
            and not isinstance(c[1], bool) and math.isfinite(c[1]) for c in clip)):
        raise _bad(p, "'extra.clip' must be a list of [spec, weight] pairs")


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a training-state file (or ``DIR/train_state.safetensors``) -> ``(tensors, info)``.

    ``info["config"]`` is checked as settings too (:meth:`TrainConfig.from_dict`), so the caller
    can rebuild the run's settings from it.
    """
    from safetensors import safe_open

    from ..json_text import parse_json
    from .config import TrainConfig

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / STATE_FILE
    if not p.is_file():
        raise InputError(f"no training state at {p}; resume from the --out folder of an earlier `nada train`")
    from ..formats.safetensors_header import read_header

    read_header(p, what=f"training state {p}", fix=_FIX)  # size-checked before safetensors parses it
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
            keys = list(fh.keys())
            if len(keys) > MAX_STATE_TENSORS:
                raise _bad(p, f"it lists {len(keys)} tensors, more than any run saves ({MAX_STATE_TENSORS})")
            tensors = {k: fh.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises several types for damaged files
        raise _bad(p, f"cannot be read ({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") \
            from None
    if meta.get("format") != STATE_FORMAT or "nada_train_state" not in meta:
        raise CheckpointError(f"{p} is not a nada training-state file; pass the --out folder of a `nada train` run")
    info = parse_json(meta["nada_train_state"], f"training state {p}", _FIX, expect=dict, error=CheckpointError)
    _check_info(p, info)
    try:
        TrainConfig.from_dict(info["config"], saved=True)
    except NadaError as err:
        raise _bad(p, f"its stored settings are invalid ({err})") from None
    return tensors, info


def read_config(path: str | Path):
    """The settings stored in a training-state file (for resuming with the same settings)."""
    from .config import TrainConfig

    return TrainConfig.from_dict(read_state(path)[1]["config"], saved=True)


def load_state(trainer: "NadaTrainer", path: str | Path, check_source: bool = True) -> None:
    """Continue ``trainer`` from a file written by :func:`save_state` (or a folder holding one).

    The trainer must have been built from the same source generator; settings may differ only in
    :data:`RESUMABLE_CHANGES` (anything else would not continue the same run). Nothing of the
    trainer changes unless the whole state fits.
    """
    from .config import TrainConfig

    with torch.inference_mode(False):  # ordinary tensors: Adam updates its state in place
        tensors, info = read_state(path)
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / STATE_FILE
    cfg_saved = TrainConfig.from_dict(info["config"], saved=True)
    now = trainer.config.to_dict()
    diffs = [k for k, v in cfg_saved.to_dict().items() if k not in RESUMABLE_CHANGES and now[k] != v]
    if diffs:
        raise InputError(f"cannot resume: settings {diffs} differ from the saved run; "
                         "use the saved settings (only steps, previews, snapshots, select_chunk and checkpointing may change)")
    if info.get("generator_config") != trainer.G_frozen.config.to_dict():
        raise InputError("cannot resume: the saved run used a different generator architecture")
    if check_source and info.get("source_sha256") and trainer.source_sha256 \
            and info["source_sha256"] != trainer.source_sha256:
        raise InputError("cannot resume: the source generator file differs from the one the run started "
                         "from (sha256 mismatch); pass the original --generator")
    if info["step"] > trainer.config.steps:
        raise InputError(f"the saved run is at step {info['step']}, beyond steps={trainer.config.steps}; "
                         "raise steps to continue")
    current = (info.get("selector") or {}).get("current")
    if current is not None and not set(current) <= set(trainer.candidates):
        raise _bad(p, f"its layer selection {current} names W+ indices this generator cannot train")

    # Check every tensor before touching the trainer, so a bad file leaves it as it was.
    adapter = getattr(trainer, "adapter", None)
    synth = {k[len("synthesis."):]: v for k, v in tensors.items() if k.startswith("synthesis.")}
    expected = trainer.G_train.synthesis.state_dict() if adapter is None else {}
    missing = sorted(set(expected) - set(synth))
    unexpected = sorted(set(synth) - set(expected))
    if missing or unexpected:
        names = (missing or unexpected)[:3]
        raise _bad(p, f"it does not fit this generator ({'missing' if missing else 'unexpected'} tensors "
                      f"{', '.join('synthesis.' + n for n in names)})")
    for name, ref in expected.items():
        if tuple(synth[name].shape) != tuple(ref.shape) or not synth[name].is_floating_point() == ref.is_floating_point():
            raise _bad(p, f"tensor synthesis.{name} has shape {list(synth[name].shape)} ({synth[name].dtype}), "
                          f"this generator needs {list(ref.shape)}")
    params = trainer.trainable_parameters()
    state: dict[int, dict] = {}
    for i, name in enumerate(trainer._opt_names):
        entry = {key: tensors[f"adam.{name}.{key}"] for key in _ADAM_KEYS if f"adam.{name}.{key}" in tensors}
        if not entry:
            continue
        if len(entry) != len(_ADAM_KEYS):
            raise _bad(p, f"the optimiser state for {name} is incomplete")
        shape = tuple(params[name].shape)
        for key in ("exp_avg", "exp_avg_sq"):
            if tuple(entry[key].shape) != shape or not entry[key].is_floating_point():
                raise _bad(p, f"tensor adam.{name}.{key} has shape {list(entry[key].shape)}, expected {list(shape)}")
        if entry["step"].numel() != 1:
            raise _bad(p, f"tensor adam.{name}.step is not a single number")
        state[i] = entry
    rng = tensors.get("rng.train")
    if rng is None:
        raise _bad(p, "it has no RNG state (rng.train); it is incomplete")
    expected_rng = trainer.rng.get_state()
    if rng.dtype != expected_rng.dtype or rng.shape != expected_rng.shape:
        raise _bad(p, f"tensor rng.train has shape {list(rng.shape)} ({rng.dtype}), expected "
                      f"{list(expected_rng.shape)} ({expected_rng.dtype})")

    if adapter is not None:
        adapter.load_state_tensors(tensors, str(p))  # checks every vector before copying any
    with torch.inference_mode(False), torch.no_grad():
        if adapter is None:
            trainer.G_train.synthesis.load_state_dict(synth, strict=True)
        opt_sd = trainer.optimizer.state_dict()
        opt_sd["state"] = state
        trainer.optimizer.load_state_dict(opt_sd)
    trainer.rng.set_state(rng)
    trainer.step_index = int(info["step"])
    trainer.history = [dict(h) for h in info.get("history", [])]
    trainer.layer_history = [list(x) for x in info.get("layer_history", [])]
    trainer.selector.load_state_dict(info.get("selector") or {})
    trainer._apply_selection(trainer.selector.current or [])


def describe_direction(direction) -> dict:
    """JSON-able provenance of a direction (prompts or image files), whatever its type offers."""
    to_dict = getattr(direction, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    out: dict = {"type": type(direction).__name__}
    for key in ("source", "target", "source_text", "target_text", "templates", "image_paths", "kind"):
        val = getattr(direction, key, None)
        if isinstance(val, (str, int, float, bool)) or (isinstance(val, (list, tuple))
                                                         and all(isinstance(x, (str, int, float)) for x in val)):
            out[key] = list(val) if isinstance(val, tuple) else val
    return out
