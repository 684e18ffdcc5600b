"""Sanity limits for untrusted checkpoint files, checked before anything big is allocated.

Three kinds of checks, each raising a one-line error naming the file and the fix:

- :func:`check_archive`: a zip archive (torch ``.pt``, OpenAI TorchScript CLIP) is refused from
  its central directory (declared sizes and compression ratios) before any member is inflated.
- :func:`check_tensor_extent`: a tensor rebuilt from a pickle must fit inside its storage
  (``offset + sum((size - 1) * stride) + 1 <= storage elements``), with positive strides.
- :func:`check_generator_config`: architecture numbers (from metadata or constructor kwargs) are
  integers within bounds no real StyleGAN2 reaches, so building the module stays small;
  :func:`check_stylegan3_fields` does the same for StyleGAN3 constructor arguments.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from typing import Any, Sequence

from ..errors import CheckpointError

# Real torch archives store members uncompressed (ratio 1); a few tools deflate the small
# pickle, which compresses ~3-8x. 20x on several MiB is only reached by crafted bombs.
MAX_ARCHIVE_BYTES = 4 * 1024**3
MAX_DEFLATE_RATIO = 20
_RATIO_FREE_BYTES = 1024 * 1024  # tiny members may compress better (e.g. runs of zeros)
MAX_ARCHIVE_MEMBERS = 100_000

# Generator bounds: config-f FFHQ 1024 uses 512 channels, 8 mapping layers, 512-d latents.
MAX_CHANNELS = 2048
MAX_LATENT_DIM = 2048
MAX_MAPPING_LAYERS = 32
MAX_IMG_CHANNELS = 4
MAX_FILTER_TAPS = 16
MAX_TENSOR_DIMS = 8
MAX_CLASSES = 100_000  # ImageNet-conditional models have 1000


def check_archive(zf: zipfile.ZipFile, source: str, max_total: int = MAX_ARCHIVE_BYTES,
                  max_ratio: float = MAX_DEFLATE_RATIO) -> None:
    """Refuse a zip whose declared contents would inflate to more than ``max_total`` bytes, or
    whose compressed members expand more than ``max_ratio`` times (decompression bombs)."""
    infos = zf.infolist()
    if len(infos) > MAX_ARCHIVE_MEMBERS:
        raise CheckpointError(f"{source}: the archive lists {len(infos)} members, far more than a checkpoint "
                              f"has; the file is corrupt or hostile and was not loaded")
    total = 0
    for info in infos:
        total += max(int(info.file_size), 0)
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > _RATIO_FREE_BYTES:
            ratio = info.file_size / max(int(info.compress_size), 1)
            if ratio > max_ratio:
                raise CheckpointError(
                    f"{source}: archive member '{info.filename}' would inflate {ratio:.0f}x "
                    f"({info.compress_size} -> {info.file_size} bytes); checkpoints are not compressed like "
                    f"that, so the file was not loaded (decompression bomb?)")
    if total > max_total:
        raise CheckpointError(f"{source}: the archive declares {total} bytes of contents, more than the "
                              f"{max_total} a generator checkpoint can need; it was not loaded")


def check_tensor_extent(storage_elements: int, offset: Any, size: Any, stride: Any) -> tuple[int, tuple, tuple]:
    """Validate a pickled tensor view against its storage; returns ``(offset, size, stride)`` as ints.

    Raises :class:`pickle.UnpicklingError` (the loaders turn it into one line) for non-integer
    or negative values, zero/negative strides on dims longer than 1, or an extent past the end
    of the storage, which ``Tensor.set_`` would otherwise silently grow with uninitialised memory.
    """
    def ints(values: Any, what: str) -> tuple[int, ...]:
        if not isinstance(values, (tuple, list)) or len(values) > MAX_TENSOR_DIMS:
            raise pickle.UnpicklingError(f"tensor {what} is not a short tuple of integers")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise pickle.UnpicklingError(f"tensor {what} holds non-integers")
        return tuple(values)

    size_t, stride_t = ints(size, "size"), ints(stride, "stride")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise pickle.UnpicklingError("tensor storage offset is negative or not an integer")
    if len(size_t) != len(stride_t):
        raise pickle.UnpicklingError("tensor size and stride have different lengths")
    if any(s < 0 for s in size_t):
        raise pickle.UnpicklingError("tensor has a negative size")
    if any(st <= 0 for s, st in zip(size_t, stride_t) if s > 1):
        raise pickle.UnpicklingError("tensor has a zero or negative stride")
    if 0 in size_t:
        return offset, size_t, stride_t
    extent = offset + sum((s - 1) * st for s, st in zip(size_t, stride_t)) + 1
    if extent > storage_elements:
        raise pickle.UnpicklingError(f"tensor needs {extent} elements but its storage holds {storage_elements}")
    return offset, size_t, stride_t


def _int_in(value: Any, lo: int, hi: int, what: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckpointError(f"{source}: the generator's {what} is {value!r}, not an integer; the file is corrupt")
    if not lo <= value <= hi:
        raise CheckpointError(f"{source}: the generator's {what} is {value}, outside {lo}..{hi}; no real StyleGAN "
                              f"has that, so the file was not loaded")
    return value


def check_generator_config(config: Any, source: str) -> None:
    """Bounds and types of a :class:`~nada_core.models.stylegan2.GeneratorConfig` (or a StyleGAN3
    config, see :func:`check_stylegan3_fields`), before building it."""
    if getattr(config, "architecture", "stylegan2") == "stylegan3":
        import dataclasses

        check_stylegan3_fields(dataclasses.asdict(config), source)
        return
    r = config.img_resolution
    _int_in(r, 4, 4096, "img_resolution", source)
    if r & (r - 1):
        raise CheckpointError(f"{source}: the generator's img_resolution {r} is not a power of two")
    for res, ch in config.channels:
        _int_in(ch, 1, MAX_CHANNELS, f"channel count at {res} px", source)
    _int_in(config.z_dim, 1, MAX_LATENT_DIM, "z_dim", source)
    _int_in(config.w_dim, 1, MAX_LATENT_DIM, "w_dim", source)
    _int_in(config.img_channels, 1, MAX_IMG_CHANNELS, "img_channels", source)
    _int_in(config.mapping_layers, 1, MAX_MAPPING_LAYERS, "mapping_layers", source)
    if config.mapping_hidden is not None:
        _int_in(config.mapping_hidden, 1, MAX_LATENT_DIM, "mapping_hidden", source)
    _int_in(config.num_fp16_res, 0, 16, "num_fp16_res", source)
    _int_in(getattr(config, "c_dim", 0), 0, MAX_CLASSES, "c_dim (number of classes)", source)
    if getattr(config, "embed_features", None) is not None:
        _int_in(config.embed_features, 1, MAX_LATENT_DIM, "embed_features", source)
    for what, value in (("mapping_lr_mul", config.mapping_lr_mul), ("conv_clamp", config.conv_clamp)):
        if value is None and what == "conv_clamp":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise CheckpointError(f"{source}: the generator's {what} is {value!r}, not a positive number")
    taps: Sequence = config.resample_filter
    if not 1 <= len(taps) <= MAX_FILTER_TAPS:
        raise CheckpointError(f"{source}: the generator's resample filter has {len(taps)} taps (1..16 supported)")
    for t in taps:
        _int_in(t, -1024, 1024, "resample filter tap", source)


# Encoder bounds (e4e / pSp / ReStyle): IR-SE152 has 50 units; FFHQ 1024 needs 18 style heads of 512
# channels with at most 6 convs (a 64 px map down to 1 px). Far beyond that is a crafted file.
MAX_ENCODER_UNITS = 256
MAX_ENCODER_HEADS = 64
MAX_ENCODER_HEAD_CONVS = 12
MAX_ENCODER_INPUT_CHANNELS = 16


def check_encoder_layout(source: str, *, input_nc: Any, widths: Sequence[Any], units: int, heads: int,
                         head_convs: int) -> None:
    """Bounds of an encoder read from a checkpoint's tensor shapes, before its modules are built."""
    def bounded(value: Any, lo: int, hi: int, what: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise CheckpointError(f"{source}: the encoder's {what} is {value!r}, outside {lo}..{hi}; no real "
                                  f"e4e/pSp/ReStyle encoder has that, so the file was not loaded")

    bounded(input_nc, 1, MAX_ENCODER_INPUT_CHANNELS, "number of input channels")
    for w in widths:
        bounded(w, 1, MAX_CHANNELS, "channel width")
    bounded(units, 1, MAX_ENCODER_UNITS, "number of backbone units")
    bounded(heads, 0, MAX_ENCODER_HEADS, "number of style heads")
    bounded(head_convs, 0, MAX_ENCODER_HEAD_CONVS, "number of convs in a style head")


# StyleGAN3 bounds: NVIDIA's configs use 14 layers, margin 10, 1x1 or 3x3 kernels, filter size 6.
MAX_SG3_LAYERS = 64
MAX_SG3_MARGIN = 256
MAX_SG3_KERNEL = 7
MAX_SG3_FILTER_SIZE = 16
MAX_SG3_LRELU_UPSAMPLING = 8
MAX_SG3_CHANNEL_BASE = 1 << 22


def _positive_number(value: Any, what: str, source: str, hi: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not 0 < value <= hi:
        raise CheckpointError(f"{source}: the generator's {what} is {value!r}, not a number in (0, {hi:g}]; "
                              f"the file is corrupt")


def check_stylegan3_fields(fields: dict, source: str) -> None:
    """Bounds and types of StyleGAN3 constructor arguments (a plain dict), before any config or
    module is built: a hostile file cannot make us design huge filters or allocate huge layers."""
    _int_in(fields["img_resolution"], 8, 4096, "img_resolution", source)
    _int_in(fields["z_dim"], 1, MAX_LATENT_DIM, "z_dim", source)
    _int_in(fields["w_dim"], 1, MAX_LATENT_DIM, "w_dim", source)
    _int_in(fields["img_channels"], 1, MAX_IMG_CHANNELS, "img_channels", source)
    _int_in(fields["mapping_layers"], 1, MAX_MAPPING_LAYERS, "mapping_layers", source)
    _int_in(fields.get("c_dim", 0), 0, MAX_CLASSES, "c_dim (number of classes)", source)
    _int_in(fields["channel_base"], 1, MAX_SG3_CHANNEL_BASE, "channel_base", source)
    _int_in(fields["channel_max"], 1, MAX_CHANNELS, "channel_max", source)
    _int_in(fields["num_layers"], 1, MAX_SG3_LAYERS, "num_layers", source)
    _int_in(fields["num_critical"], 0, fields["num_layers"] - 1, "num_critical", source)
    _int_in(fields["margin_size"], 0, MAX_SG3_MARGIN, "margin_size", source)
    _int_in(fields["num_fp16_res"], 0, 16, "num_fp16_res", source)
    _int_in(fields["conv_kernel"], 1, MAX_SG3_KERNEL, "conv_kernel", source)
    _int_in(fields["filter_size"], 1, MAX_SG3_FILTER_SIZE, "filter_size", source)
    _int_in(fields["lrelu_upsampling"], 1, MAX_SG3_LRELU_UPSAMPLING, "lrelu_upsampling", source)
    for name in ("first_cutoff", "first_stopband"):
        _positive_number(fields[name], name, source, 4096.0)
    _positive_number(fields["last_stopband_rel"], "last_stopband_rel", source, 16.0)
    _positive_number(fields["output_scale"], "output_scale", source, 1e6)
    _positive_number(fields["mapping_lr_mul"], "mapping_lr_mul", source, 1e6)
    if fields["conv_clamp"] is not None:
        _positive_number(fields["conv_clamp"], "conv_clamp", source, 1e12)
    if not isinstance(fields["use_radial_filters"], bool):
        raise CheckpointError(f"{source}: the generator's use_radial_filters is {fields['use_radial_filters']!r}, "
                              f"not true/false; the file is corrupt")
