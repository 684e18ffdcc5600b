"""Load StyleGAN2 generators from the files people have, safely; save ours.

Supported formats, recognised from the file's content (never its extension):

- ``rosinality-pt``: rosinality stylegan2-pytorch / StyleGAN-NADA ``.pt`` (``torch.save`` zip or
  legacy format) with ``g_ema`` (and usually ``g``, ``d``, optimiser states, ``args``,
  sometimes ``latent_avg``); also the ``decoder.*`` generator inside an e4e / pSp / ReStyle
  encoder checkpoint. Read with our restricted weights-only unpickler (never ``torch.load``).
- ``stylegan2-ada-pkl``: NVIDIA stylegan2-ada-pytorch snapshots (``G_ema``, ``G``, ``D``, ...),
  read by a restricted unpickler that executes nothing from the file
  (:mod:`nada_core.formats.safe_unpickle`); class-conditional ones (``c_dim > 0``) included.
- ``stylegan2-tf-pkl``: NVIDIA's TensorFlow-era StyleGAN2 pickles (``stylegan2-ffhq-config-f.pkl``),
  the same unpickler with inert ``dnnlib.tflib`` stand-ins (:mod:`nada_core.formats.tensorflow`).
- ``stylegan3-pkl``: NVIDIA stylegan3 snapshots (StyleGAN3-T and -R ``G_ema``; same pickle layout,
  same restricted unpickler; :mod:`nada_core.formats.nvidia3`). ``detect_format`` reports
  ``stylegan2-ada-pkl`` for every NVIDIA pickle; ``G.metadata["format"]`` says which it was.
- ``nada-safetensors``: our own ``.safetensors`` (state dict + JSON metadata header; the
  ``architecture`` metadata says StyleGAN2 or StyleGAN3, so the right class is rebuilt).
- ``dfl-safetensors``: dfl/ComfyUI-StyleGan's ``.safetensors`` cache of an NVIDIA pickle
  (:mod:`nada_core.formats.dfl`), told apart from ours by its header metadata.

:func:`load_generator` returns a :class:`~nada_core.models.stylegan2.Generator` or
:class:`~nada_core.models.stylegan3.StyleGAN3Generator` in eval mode with two
extra attributes: ``G.source_sha256`` (sha256 of the file just loaded) and ``G.metadata``
(``format``, ``ema``, ``network``, ``w_avg_origin``, ``source_sha256`` of the original foreign
file, ``source_format``, ``provenance``); :func:`lineage_sha256` reads the lineage back.
Truncation centre: the file's (``latent_avg`` / ``mapping.w_avg``) when it has one, otherwise
``G.estimate_w_avg()`` with :data:`W_AVG_ESTIMATE_SAMPLES` codes from seed
:data:`W_AVG_ESTIMATE_SEED` (recorded in ``w_avg_origin``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, InputError, NadaError, short_reason
from ..json_text import parse_json
from ..models.stylegan2 import Generator, GeneratorConfig  # noqa: F401 - re-exported for callers
from ..models.registry import GENERATOR_CLASSES, AnyConfig, AnyGenerator, architecture_of, build_generator, \
    config_from_dict, is_stylegan3
from .common import check_weight_values
from .limits import check_generator_config, check_stylegan3_fields
from .detect import (FORMAT_DESCRIPTIONS, FORMAT_DFL, FORMAT_NADA, FORMAT_NVIDIA,  # noqa: F401 - re-exported
                     FORMAT_ROSINALITY, FORMAT_STYLEGAN3, FORMAT_TF, SUPPORTED_FORMATS, detect_format,
                     existing_file as _existing_file, read_safetensors_header as _read_safetensors_header)
from .nvidia3 import config_fields_for_limits

NADA_FORMAT_TAG = "generator"
NADA_FORMAT_VERSION = "1"
W_AVG_ESTIMATE_SAMPLES = 10_000
W_AVG_ESTIMATE_SEED = 0



# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk_size`` pieces (constant memory)."""
    h = hashlib.sha256()
    with open(_existing_file(path), "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", ema: bool = True) -> AnyGenerator:
    """Load a StyleGAN2 or StyleGAN3 generator from any supported file, in eval mode with frozen weights, on ``device``.

    ``ema=True`` reads the EMA weights (``g_ema`` / ``G_ema``), ``ema=False`` the training
    weights (``g`` / ``G``); our ``.safetensors`` files hold one set of weights and ignore it.
    Raises :class:`CheckpointError` (or :class:`UnsafeCheckpointError` for pickles that ask
    for code) with a one-line message naming the file.
    """
    p = _existing_file(path)
    fmt = detect_format(p)
    # Outside inference mode (ComfyUI runs nodes inside it): inference tensors could never be
    # trained or inverted through later.
    with torch.inference_mode(False):
        try:
            # FORMAT_DFL goes the foreign way: its weights are NVIDIA's, converted like a .pkl.
            G = _load_nada(p) if fmt == FORMAT_NADA else _load_foreign(p, fmt, ema)
        except NadaError:
            raise
        except Exception as err:  # noqa: BLE001 - a hostile file's odd values must not escape as tracebacks
            raise CheckpointError(f"{p}: the generator file holds values of unexpected types or sizes "
                                  f"({type(err).__name__}: {short_reason(err, 160)}); the file is corrupt") from None
        # Loaded for use, not training: frozen weights also pick the fastest inference path.
        # Call ``G.requires_grad_(True)`` to fine-tune it yourself (NadaTrainer does its own copy).
        return G.to(_device(device)).eval().requires_grad_(False)


def save_generator(G: AnyGenerator, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``G`` atomically as a ComfyUI-NADA ``.safetensors`` file; returns the path.

    ``metadata`` (JSON-serialisable dict) is stored as the file's ``provenance``; when None, the
    provenance ``G`` was loaded with (if any) is kept. The original source's sha256, format and
    the truncation-centre origin travel along, so :func:`load_generator` gives back the same
    config, weights, ``w_avg`` and metadata bit for bit.
    """
    from safetensors.torch import save_file

    from ..atomic import atomic_write

    target = Path(path)
    if target.suffix.lower() != ".safetensors":
        raise InputError(f"{target}: generators are saved as .safetensors files; use a name ending in .safetensors")
    if not isinstance(G, GENERATOR_CLASSES):
        raise InputError(f"save_generator needs a nada_core Generator, got {type(G).__name__}")
    from ..domains.apply import materialize

    G = materialize(G)  # domains applied on the fly are saved baked in (the weights by name are the base's)
    old = dict(getattr(G, "metadata", None) or {})
    provenance = metadata if metadata is not None else old.get("provenance", {})
    try:
        provenance_json = json.dumps(provenance, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise InputError(f"generator metadata must be JSON-serialisable ({err})") from None
    header = {
        "nada_format": NADA_FORMAT_TAG,
        "format_version": NADA_FORMAT_VERSION,
        "architecture": json.dumps(G.config.to_dict(), sort_keys=True),
        "source_sha256": str(old.get("source_sha256") or getattr(G, "source_sha256", "") or ""),
        "source_format": str(old.get("source_format") or old.get("format") or ""),
        "w_avg_origin": str(old.get("w_avg_origin") or "stored"),
        "provenance": provenance_json,
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    atomic_write(target, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return target


def read_metadata(path: str | os.PathLike) -> dict:
    """Metadata of a ComfyUI-NADA ``.safetensors`` generator, from its header only.

    Returns ``{"nada_format", "format_version", "architecture": dict, "source_sha256",
    "source_format", "w_avg_origin", "provenance": dict}``.
    """
    p = _existing_file(path)
    raw = _read_safetensors_header(p).get("__metadata__")
    if isinstance(raw, dict) and raw.get("nada_format") == "domain":
        raise CheckpointError(f"{p} is a compact domain file, not a generator; load the generator it was trained on "
                              "and apply the domain (--domain FILE@STRENGTH, NADA Apply Domain)")
    if not isinstance(raw, dict) or raw.get("nada_format") != NADA_FORMAT_TAG:
        raise CheckpointError(f"{p}: a .safetensors file, but not a ComfyUI-NADA generator (no nada_format "
                              f"metadata); expected {SUPPORTED_FORMATS}")
    out: dict[str, Any] = dict(raw)
    for key in ("architecture", "provenance"):
        text = raw.get(key) or "{}"
        out[key] = parse_json(text, f"{p}: the '{key}' metadata", "the file is corrupt; re-save it",
                              expect=dict, error=CheckpointError)
    return out


def lineage_sha256(G: Any) -> str | None:
    """sha256 of the pretrained checkpoint ``G`` descends from (None for in-memory generators).

    For a foreign file that is the file's own hash; for our ``.safetensors`` the original source's
    hash stored in it (or the file's own when it was saved from a generator of unknown origin).
    Latent codes and training runs are tied to this value.
    """
    meta = getattr(G, "metadata", None)
    value = meta.get("source_sha256") if isinstance(meta, dict) else None
    value = value or getattr(G, "source_sha256", None)
    return value if isinstance(value, str) and value else None


def summarize_generator(G: AnyGenerator) -> dict:
    """Plain-data description of a (loaded) generator, for ``nada info`` and UIs.

    ``channels``: width per resolution for StyleGAN2, per synthesis layer name for StyleGAN3
    (which also gets ``stylegan3`` with its alias-free settings).
    """
    cfg = G.config
    meta = dict(getattr(G, "metadata", None) or {})
    if is_stylegan3(G):
        channels = {layer.spec.name: layer.out_channels for layer in G.synthesis.layers}
    else:
        channels = {str(r): c for r, c in cfg.channels}
    out = {
        "format": meta.get("format", ""),
        "format_description": FORMAT_DESCRIPTIONS.get(meta.get("format", ""), ""),
        "architecture": architecture_of(G),
        "resolution": cfg.img_resolution,
        "num_ws": cfg.num_ws,
        "z_dim": cfg.z_dim,
        "w_dim": cfg.w_dim,
        "mapping_layers": cfg.mapping_layers,
        "classes": getattr(cfg, "c_dim", 0),  # 0 = unconditional
        "class_embedding": (getattr(cfg, "c_embed", None) if getattr(cfg, "c_dim", 0) else None),
        "channels": channels,
        "conv_clamp": cfg.conv_clamp,
        "num_fp16_res": cfg.num_fp16_res,
        "parameters": G.num_parameters(),
        "w_avg_origin": meta.get("w_avg_origin", ""),
        "source_sha256": getattr(G, "source_sha256", ""),
        "metadata": meta,
    }
    if is_stylegan3(G):
        out["stylegan3"] = {
            "config": "R (rotation equivariant)" if cfg.use_radial_filters else "T (translation equivariant)",
            **{k: getattr(cfg, k) for k in ("num_layers", "num_critical", "channel_base", "channel_max",
                                            "margin_size", "conv_kernel", "first_cutoff", "output_scale")}}
    return out


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _device(device: str | torch.device | None) -> torch.device:
    from ..devices import resolve_device

    return resolve_device(device)


def _load_foreign(p: Path, fmt: str, ema: bool) -> AnyGenerator:
    src = str(p)
    if fmt == FORMAT_DFL:
        from .dfl import convert_dfl_safetensors

        meta = _read_safetensors_header(p).get("__metadata__") or {}
        return _finish(convert_dfl_safetensors(p, meta, src), p, fmt, ema, "mapping.w_avg")
    if fmt == FORMAT_ROSINALITY:
        from .safe_unpickle import torch_load_weights_only

        return generator_from_torch_object(torch_load_weights_only(p, src), p, ema)
    from .nvidia import convert_nvidia_pickle
    from .safe_unpickle import load_restricted_pickle
    from .tensorflow import convert_tf_pickle, is_tf_pickle

    obj = load_restricted_pickle(p, src)
    if is_tf_pickle(obj):
        return _finish(convert_tf_pickle(obj, ema=ema, source=src), p, FORMAT_TF, ema, "dlatent_avg")
    return _finish(convert_nvidia_pickle(obj, ema=ema, source=src), p, fmt, ema, "mapping.w_avg")


def generator_from_torch_object(obj: Any, p: Path, ema: bool = True) -> Generator:
    """The generator in an already-unpickled rosinality-style ``torch.save`` object read from ``p``
    (a rosinality checkpoint, a bare state dict, or an encoder checkpoint's ``decoder.*``), on the CPU.

    Lets a caller that needs other parts of the same file (an encoder) read it only once.
    """
    from .rosinality import convert_rosinality_checkpoint

    conv = convert_rosinality_checkpoint(obj, ema=ema, source=str(p))
    return _finish(conv, p, FORMAT_ROSINALITY, ema, "latent_avg")


def _finish(conv: Any, p: Path, fmt: str, ema: bool, stored_w_avg: str) -> Generator:
    src = str(p)
    G = _build(conv.config, conv.state_dict, conv.w_avg, src)
    if conv.w_avg is not None:
        origin = stored_w_avg
    else:
        with torch.no_grad():
            G.mapping.w_avg.copy_(G.estimate_w_avg(W_AVG_ESTIMATE_SAMPLES, seed=W_AVG_ESTIMATE_SEED))
        origin = f"estimated (mean of {W_AVG_ESTIMATE_SAMPLES} mapped z, seed {W_AVG_ESTIMATE_SEED})"
    sha = sha256_file(p)
    G.source_sha256 = sha
    fmt = conv.notes.get("format", fmt)  # an NVIDIA pickle may hold StyleGAN2 or StyleGAN3
    G.metadata = {
        "format": fmt,
        "ema": ema,
        "w_avg_origin": origin,
        "source_sha256": sha,
        "source_format": fmt,
        "source_file": p.name,
        "provenance": {},
        **conv.notes,
    }
    return G


def _build(config: AnyConfig, state_dict: dict, w_avg: torch.Tensor | None, src: str) -> AnyGenerator:
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    shapes["mapping.w_avg"] = (config.w_dim,)
    _check_shapes(src, config, shapes)
    with torch.random.fork_rng(devices=[]):  # building must not disturb the caller's random stream
        G = build_generator(config)
    sd = dict(state_dict)
    sd["mapping.w_avg"] = w_avg if w_avg is not None else torch.zeros(config.w_dim)
    check_weight_values(src, sd, G.state_dict())
    try:
        G.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{src}: the weights do not fit the architecture they describe ({first})") from None
    return G


def _header_shapes(p: Path, header: dict) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` from a safetensors header, validated (no tensor data is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and len(shape) <= 8
                and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise CheckpointError(f"{p}: the .safetensors header entry for '{name}' is malformed; the file is corrupt")
        shapes[name] = tuple(shape)
    return shapes


def _expected_shapes(config: AnyConfig) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the generator ``config`` describes, computed on the meta device (nothing allocated)."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        G = build_generator(config)
    return {k: tuple(v.shape) for k, v in G.state_dict().items()}


def _check_shapes(src: str, config: AnyConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """The stored tensors must be exactly those ``config`` describes, before anything is built."""
    check_generator_config(config, src)
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [k for k in expected if k in shapes and shapes[k] != expected[k]]
    if missing or extra or wrong:
        if wrong:
            detail = f"'{wrong[0]}' has shape {list(shapes[wrong[0]])}, expected {list(expected[wrong[0]])}"
        elif missing:
            detail = f"missing {', '.join(missing[:3])}"
        else:
            detail = f"unexpected {', '.join(extra[:3])}"
        raise CheckpointError(f"{src}: the weights do not fit the architecture they describe ({detail}); "
                              f"the file is corrupt or from another program")


def _load_nada(p: Path) -> AnyGenerator:
    from safetensors import safe_open

    meta = read_metadata(p)
    if meta.get("format_version") != NADA_FORMAT_VERSION:
        raise CheckpointError(f"{p}: generator format version {meta.get('format_version')!r} is not supported "
                              f"by this version of ComfyUI-NADA (expected {NADA_FORMAT_VERSION}); please update")
    try:
        arch = meta["architecture"]
        if isinstance(arch, dict) and arch.get("architecture") == "stylegan3":
            # Bounds first: the config's own checks derive every layer, which must stay small.
            check_stylegan3_fields(config_fields_for_limits(arch), str(p))
        config = config_from_dict(arch)
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError) as err:
        raise CheckpointError(f"{p}: the stored architecture is invalid ({short_reason(err, 160)}); the file is corrupt") from None
    # Sizes are checked against the header before any tensor is read or any module is built.
    _check_shapes(str(p), config, _header_shapes(p, _read_safetensors_header(p)))
    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{p}: the .safetensors file is truncated or corrupt "
                              f"({' '.join(str(err).split())[:160]})") from None
    w_avg = tensors.pop("mapping.w_avg", None)
    if w_avg is None:
        raise CheckpointError(f"{p}: the file has no 'mapping.w_avg' tensor; it is incomplete")
    G = _build(config, tensors, w_avg, str(p))
    G.source_sha256 = sha256_file(p)
    G.metadata = {
        "format": FORMAT_NADA,
        "w_avg_origin": meta.get("w_avg_origin", ""),
        # A file saved from a generator of unknown origin starts its own lineage.
        "source_sha256": meta.get("source_sha256") or G.source_sha256,
        "source_format": meta.get("source_format", ""),
        "source_file": p.name,
        "provenance": meta.get("provenance", {}),
    }
    return G
