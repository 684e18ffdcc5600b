"""NVIDIA stylegan3 ``.pkl`` snapshots -> our :class:`~nada_core.models.stylegan3.StyleGAN3Generator` weights.

The pickle is read by :func:`nada_core.formats.safe_unpickle.load_restricted_pickle` (nothing in
it runs: ``module_src`` stays text); this module turns the inert ``G_ema`` stub of class
``training.networks_stylegan3.Generator`` into a config and a state dict. The architecture comes
from the pickled constructor arguments (``z_dim, c_dim, w_dim, img_resolution, img_channels,
mapping_kwargs`` and the synthesis/layer keyword arguments) with NVIDIA's defaults for omitted
keys; it is checked against limits before anything is derived, and every derived layer (names,
sizes, factors, paddings, stored on the pickled layers) and every tensor shape is cross-checked.

Name mapping: ``mapping.fc{i}.*`` -> ``mapping.layers.{i}.*``; every other name is identical
(``synthesis.input.*``, ``synthesis.L{i}_{size}_{ch}.*``, ``mapping.w_avg``). The pickled
``up_filter`` / ``down_filter`` / ``magnitude_ema`` / ``transform`` / ``freqs`` / ``phases``
buffers are used as stored.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .common import Converted, float_weights, kwarg_int, kwargs_with_defaults, reject_unused_tensors
from .detect import FORMAT_STYLEGAN3  # noqa: F401 - the format id lives with detection
from .limits import check_stylegan3_fields
from .safe_unpickle import PersistentStub


_GENERATOR_ARG_ORDER = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")
_MAPPING_DEFAULTS = dict(num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998)
# SynthesisNetwork's and SynthesisLayer's keyword arguments with NVIDIA's defaults -> our field names.
_SYNTHESIS_DEFAULTS = dict(
    channel_base=32768, channel_max=512, num_layers=14, num_critical=2, first_cutoff=2, first_stopband=2 ** 2.1,
    last_stopband_rel=2 ** 0.3, margin_size=10, output_scale=0.25, num_fp16_res=4,
    conv_kernel=3, filter_size=6, lrelu_upsampling=2, use_radial_filters=False, conv_clamp=256,
    magnitude_ema_beta=0.999)
_INT_FIELDS = ("channel_base", "channel_max", "num_layers", "num_critical", "margin_size", "num_fp16_res",
               "conv_kernel", "filter_size", "lrelu_upsampling")
_FLOAT_FIELDS = ("first_cutoff", "first_stopband", "last_stopband_rel", "output_scale", "magnitude_ema_beta")


def is_stylegan3(net: PersistentStub) -> bool:
    """A pickled generator is StyleGAN3 when its tree has a ``SynthesisInput`` (or its source uses
    ``filtered_lrelu``, only as a hint: the source is never run)."""
    if any(stub.class_name == "SynthesisInput" for _, stub in net.walk()):
        return True
    return "filtered_lrelu" in (net.module_src or "")


def convert_stylegan3_generator(net: PersistentStub, *, source: str, key: str = "G_ema") -> Converted:
    """Convert one pickled NVIDIA stylegan3 ``Generator`` stub (see the module docstring)."""
    from ..models.stylegan3 import StyleGAN3Config, StyleGAN3Generator, layer_specs

    if net.class_name != "Generator":
        raise CheckpointError(f"{source}: '{key}' is a pickled {net.class_name!r}, not a StyleGAN3 'Generator'")
    synthesis, mapping = net.child("synthesis"), net.child("mapping")
    if synthesis is None or mapping is None or synthesis.class_name != "SynthesisNetwork" \
            or mapping.class_name != "MappingNetwork":
        raise CheckpointError(f"{source}: '{key}' does not have the StyleGAN3 mapping/synthesis networks "
                              f"(found {sorted(net.children())})")
    kw = dict(zip(_GENERATOR_ARG_ORDER, net.init_args))
    kw.update(net.init_kwargs)
    missing = [k for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k not in kw]
    if missing:
        raise CheckpointError(f"{source}: the pickled generator lacks its constructor arguments {missing}; "
                              f"it was not saved by NVIDIA's stylegan3 code")
    c_dim = _as_int(kw, "c_dim", source)
    if c_dim < 0:
        raise CheckpointError(f"{source}: '{key}' has c_dim={c_dim}; the file is corrupt")
    mk = _with_defaults(kw.get("mapping_kwargs"), _MAPPING_DEFAULTS, "mapping_kwargs", source)
    sk = _with_defaults({k: v for k, v in kw.items() if k not in _GENERATOR_ARG_ORDER}, _SYNTHESIS_DEFAULTS,
                        "synthesis settings", source)
    fields: dict[str, Any] = {name: _as_int(kw, name, source)
                              for name in ("z_dim", "w_dim", "img_resolution", "img_channels")}
    fields.update(c_dim=c_dim, mapping_layers=_as_int(mk, "num_layers", source),
                  mapping_lr_mul=_as_float(mk, "lr_multiplier", source), mapping_hidden=None,
                  w_avg_beta=_as_float(mk, "w_avg_beta", source))
    fields.update({name: _as_int(sk, name, source) for name in _INT_FIELDS})
    fields.update({name: _as_float(sk, name, source) for name in _FLOAT_FIELDS})
    fields["use_radial_filters"] = _as_bool(sk["use_radial_filters"], "use_radial_filters", source)
    fields["conv_clamp"] = None if sk["conv_clamp"] is None else _as_float(sk, "conv_clamp", source)
    check_stylegan3_fields(fields, source)  # bounds before anything is derived or allocated
    try:
        config = StyleGAN3Config(**fields)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: unsupported StyleGAN3 settings ({err})") from None

    specs = layer_specs(config)
    _check_layers(synthesis, specs, config, source)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in StyleGAN3Generator(config).state_dict().items()}
    tensors = net.tensors()
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, shape in expected.items():
        src = name.replace("mapping.layers.", "mapping.fc", 1) if name.startswith("mapping.layers.") else name
        if src not in tensors:
            if name == "mapping.w_avg":
                continue
            raise CheckpointError(f"{source}: tensor '{src}' is missing; the file does not match the generator "
                                  f"its constructor arguments describe")
        t = tensors[src]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{source}: tensor '{src}' has shape {list(t.shape)} but the constructor "
                                  f"arguments imply {list(shape)}")
        used.add(src)
        sd[name] = float_weights(t, src, source)
    reject_unused_tensors(source, tensors, used, "a StyleGAN3 generator")
    w_avg = sd.pop("mapping.w_avg", None)
    notes = {"network": key, "format": FORMAT_STYLEGAN3, "architecture": "stylegan3",
             "config_kind": "stylegan3-r" if config.use_radial_filters else "stylegan3-t"}
    return Converted(config, sd, w_avg, notes)


def _check_layers(synthesis: PersistentStub, specs: list, config: Any, source: str) -> None:
    """Facts stored on the pickled layers must equal what the constructor arguments derive."""
    names = synthesis.state.get("layer_names")
    want = [s.name for s in specs]
    if names is not None and list(names) != want:
        shown = ", ".join(str(n) for n in list(names)[:4]) if isinstance(names, (list, tuple)) else repr(names)[:60]
        raise CheckpointError(f"{source}: the pickled synthesis layers ({shown} ...) are not the ones its "
                              f"constructor arguments describe ({', '.join(want[:4])} ...); the file is corrupt")
    kids = synthesis.children()
    for spec in specs:
        stub = kids.get(spec.name)
        if stub is None or stub.class_name != "SynthesisLayer":
            raise CheckpointError(f"{source}: synthesis layer '{spec.name}' is missing from the file")
        st = stub.state
        checks = {"in_channels": spec.in_channels, "out_channels": spec.out_channels,
                  "conv_kernel": spec.conv_kernel, "up_factor": spec.up_factor, "down_factor": spec.down_factor,
                  "is_torgb": spec.is_torgb, "padding": list(spec.padding),
                  "in_size": [spec.in_size] * 2, "out_size": [spec.out_size] * 2}
        for attr, value in checks.items():
            if attr not in st:
                continue
            got = st[attr]
            got = [int(v) for v in np.asarray(got).reshape(-1)] if isinstance(value, list) else got
            if got != value:
                raise CheckpointError(f"{source}: layer {spec.name} has {attr}={got} but the generator's settings "
                                      f"give {value}; the file is corrupt or from another version")
        if "conv_clamp" in st:
            got, clamp = st["conv_clamp"], config.conv_clamp
            if (got is None) != (clamp is None) or (got is not None and float(got) != float(clamp)):
                raise CheckpointError(f"{source}: layer {spec.name} clamps at {got} but the generator says {clamp}")



def _as_float(kw: dict, name: str, source: str) -> float:
    value = kw[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)):
        raise CheckpointError(f"{source}: the generator's {name} is {value!r:.40}, not a number; the file is corrupt")
    return float(value)


def _as_bool(value: Any, name: str, source: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise CheckpointError(f"{source}: the generator's {name} is {value!r:.40}, not true/false; the file is corrupt")



def config_fields_for_limits(d: dict) -> dict:
    """A stored StyleGAN3 config dict with defaults filled in, for :func:`check_stylegan3_fields`."""
    from ..models.stylegan3 import StyleGAN3Config

    base = {f.name: f.default for f in dataclasses.fields(StyleGAN3Config)}
    base.update({k: v for k, v in d.items() if k != "architecture"})
    return base


def _as_int(kw: dict, name: str, source: str) -> int:
    return kwarg_int(kw, name, source, "stylegan3")


def _with_defaults(given: Any, defaults: dict, what: str, source: str) -> dict:
    return kwargs_with_defaults(given, defaults, what, source, "StyleGAN3")
