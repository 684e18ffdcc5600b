"""NVIDIA stylegan2-ada-pytorch ``.pkl`` snapshots -> our :class:`~nada_core.models.stylegan2.Generator` weights.

Input is what :func:`nada_core.formats.safe_unpickle.load_restricted_pickle` returns: a dict
``{"G": ..., "D": ..., "G_ema": ..., "augment_pipe": ..., "training_set_kwargs": ...}`` whose
networks are inert :class:`~nada_core.formats.safe_unpickle.PersistentStub` objects. The architecture
comes from the pickled constructor arguments (``_init_kwargs``: ``z_dim, c_dim, w_dim,
img_resolution, img_channels, mapping_kwargs, synthesis_kwargs``) with NVIDIA's documented
defaults for omitted keys, and is cross-checked against every tensor shape.

Name mapping (``R`` = block resolution, ``j = log2(R) - 2``)::

    mapping.fc{i}.weight/bias          -> mapping.layers.{i}.weight/bias
    mapping.embed.weight/bias          -> mapping.embed.weight/bias (class-conditional, c_dim > 0)
    mapping.w_avg                      -> mapping.w_avg
    synthesis.b4.const                 -> synthesis.const
    synthesis.b4.conv1.*               -> synthesis.convs.0.*
    synthesis.b{R}.conv0.* / conv1.*   -> synthesis.convs.{2j-1}.* / synthesis.convs.{2j}.*
    synthesis.b{R}.torgb.*             -> synthesis.to_rgbs.{j}.*
    (layer) weight, affine.weight/bias -> conv.weight, conv.affine.weight/bias
    (layer) bias, noise_strength, noise_const -> same names
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch

from .common import Converted, float_weights, kwarg_int, kwargs_with_defaults, reject_unused_tensors
from ..errors import CheckpointError
from .limits import check_generator_config
from .safe_unpickle import PersistentStub, TFNetworkStub
from ..models.stylegan2 import GeneratorConfig, make_fir_kernel

# Constructor signature order of NVIDIA's Generator (for pickles made with positional args).
_GENERATOR_ARG_ORDER = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                        "mapping_kwargs", "synthesis_kwargs")
# NVIDIA's defaults for keys a constructor call may omit.
_SYNTHESIS_DEFAULTS = dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                           architecture="skip", resample_filter=[1, 3, 3, 1], use_noise=True,
                           activation="lrelu", kernel_size=3, fp16_channels_last=False,
                           fused_modconv_default=True)  # the last two only change speed, not results
_MAPPING_DEFAULTS = dict(num_layers=8, embed_features=None, layer_features=None, activation="lrelu",
                         lr_multiplier=0.01, w_avg_beta=0.995)


def convert_nvidia_pickle(obj: Any, *, ema: bool, source: str) -> Converted:
    """Pick ``G_ema`` (or ``G`` when ``ema=False``) from an unpickled snapshot and convert it."""
    net, key = _select_network(obj, ema=ema, source=source)
    from .nvidia3 import convert_stylegan3_generator, is_stylegan3

    if is_stylegan3(net):  # the same snapshot layout; NVIDIA's stylegan3 repository wrote it
        return convert_stylegan3_generator(net, source=source, key=key)
    return convert_nvidia_generator(net, source=source, key=key)


def _select_network(obj: Any, *, ema: bool, source: str) -> tuple[PersistentStub, str]:
    tf_tuple = isinstance(obj, tuple) and obj and all(isinstance(o, TFNetworkStub) for o in obj)
    if isinstance(obj, TFNetworkStub) or tf_tuple:
        raise CheckpointError(
            f"{source}: this is a TensorFlow-era StyleGAN2 pickle (dnnlib.tflib), which is not supported; convert "
            f"it first with stylegan2-ada-pytorch's legacy.py or rosinality's convert_weight.py")
    if isinstance(obj, PersistentStub):
        return obj, "(pickled object)"
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: a pickle, but not a stylegan2-ada-pytorch snapshot "
                              f"(top level is {type(obj).__name__}, expected a dict with 'G_ema')")
    key = "G_ema" if ema else "G"
    if isinstance(obj.get(key), PersistentStub):
        return obj[key], key
    nets = [k for k, v in obj.items() if isinstance(v, PersistentStub)]
    if ema and isinstance(obj.get("G"), PersistentStub):
        raise CheckpointError(f"{source}: the snapshot has no 'G_ema' (EMA weights); load its training weights "
                              f"'G' with ema=False")
    if not ema and isinstance(obj.get("G_ema"), PersistentStub):
        raise CheckpointError(f"{source}: the snapshot has no 'G' (non-EMA weights); load 'G_ema' with ema=True")
    if nets and all(obj[k].class_name == "Discriminator" for k in nets):
        raise CheckpointError(f"{source}: the snapshot contains only a discriminator ({', '.join(nets)}); "
                              f"a generator ('G_ema') is needed")
    keys = ", ".join(repr(k) for k in list(obj)[:8])
    raise CheckpointError(f"{source}: a pickle, but not a stylegan2-ada-pytorch snapshot: no '{key}' generator "
                          f"(keys: {keys or 'none'})")


def _generator_kwargs(net: PersistentStub, source: str) -> dict:
    kwargs = dict(zip(_GENERATOR_ARG_ORDER, net.init_args))
    kwargs.update(net.init_kwargs)
    missing = [k for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k not in kwargs]
    if missing:
        raise CheckpointError(f"{source}: the pickled generator lacks its constructor arguments {missing}; "
                              f"it was not saved by stylegan2-ada-pytorch")
    return kwargs


def convert_nvidia_generator(net: PersistentStub, *, source: str, key: str = "G_ema") -> Converted:
    """Convert one pickled NVIDIA ``Generator`` stub (see module docstring for the name mapping)."""
    from .nvidia3 import is_stylegan3

    if is_stylegan3(net):
        raise CheckpointError(f"{source}: '{key}' is a StyleGAN3 generator; read it with convert_nvidia_pickle")
    if net.class_name != "Generator":
        raise CheckpointError(f"{source}: '{key}' is a pickled {net.class_name!r}, not a StyleGAN2 'Generator'")
    synthesis, mapping = net.child("synthesis"), net.child("mapping")
    if synthesis is None or mapping is None or synthesis.class_name != "SynthesisNetwork" \
            or mapping.class_name != "MappingNetwork":
        raise CheckpointError(f"{source}: '{key}' does not have the StyleGAN2 mapping/synthesis networks "
                              f"(found {sorted(net.children())})")
    config, sk, taps = config_from_init_kwargs(_generator_kwargs(net, source), source, key)
    _check_layer_attributes(net, config, source)
    tensors = {k: v for k, v in net.tensors().items()}
    sd, w_avg = map_nvidia_tensors(tensors, config, bool(sk["use_noise"]), taps, source)
    notes = {"network": key, "use_noise": bool(sk["use_noise"]),
             "channel_base": int(sk["channel_base"]), "channel_max": int(sk["channel_max"])}
    return Converted(config, sd, w_avg, notes)


def config_from_init_kwargs(kw: dict, source: str, key: str = "G_ema") -> tuple[GeneratorConfig, dict, tuple[int, ...]]:
    """Our config from NVIDIA ``Generator`` constructor arguments (``z_dim, c_dim, w_dim, img_resolution,
    img_channels, mapping_kwargs, synthesis_kwargs``), NVIDIA's defaults for omitted keys.

    Returns ``(config, synthesis settings with defaults, resample filter taps)``; every value is
    type- and range-checked (one-line :class:`CheckpointError`). Shared by the ``.pkl`` loader and
    the dfl/ComfyUI-StyleGan ``.safetensors`` cache (:mod:`nada_core.formats.dfl`).
    """
    missing = [k for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k not in kw]
    if missing:
        raise CheckpointError(f"{source}: the generator's constructor arguments lack {missing}; it was not saved "
                              f"by stylegan2-ada-pytorch")
    z_dim, c_dim, w_dim = (_as_int(kw, k, source) for k in ("z_dim", "c_dim", "w_dim"))
    res, img_channels = _as_int(kw, "img_resolution", source), _as_int(kw, "img_channels", source)
    if c_dim < 0:
        raise CheckpointError(f"{source}: '{key}' has c_dim={c_dim}; the file is corrupt")
    mk = _with_defaults(kw.get("mapping_kwargs"), _MAPPING_DEFAULTS, "mapping_kwargs", source)
    # stylegan2-ada-pytorch passes synthesis settings as ``synthesis_kwargs``; the StyleGAN2 class
    # of NVIDIA's stylegan3 repository takes them as extra keyword arguments instead.
    synthesis_given = kw.get("synthesis_kwargs") or {}
    if not isinstance(synthesis_given, dict):
        raise CheckpointError(f"{source}: the generator's synthesis_kwargs is not a dict")
    synthesis_given = dict(synthesis_given)
    synthesis_given.update({k: v for k, v in kw.items() if k not in _GENERATOR_ARG_ORDER})
    sk = _with_defaults(synthesis_given, _SYNTHESIS_DEFAULTS, "synthesis settings", source)
    if sk["architecture"] != "skip":
        raise CheckpointError(f"{source}: the generator uses the {sk['architecture']!r} synthesis architecture; "
                              f"only 'skip' (the StyleGAN2 default) is supported")
    for what, value in (("synthesis activation", sk["activation"]), ("mapping activation", mk["activation"])):
        if value != "lrelu":
            raise CheckpointError(f"{source}: the generator's {what} is {value!r}; only 'lrelu' is supported")
    if int(sk["kernel_size"]) != 3:
        raise CheckpointError(f"{source}: conv kernel size {sk['kernel_size']} is not supported (only 3)")
    taps = tuple(sk["resample_filter"])
    if not taps or any(float(t) != int(t) for t in taps):
        raise CheckpointError(f"{source}: resample filter {list(taps)} is not supported (integer taps only)")
    taps = tuple(int(t) for t in taps)
    if not (isinstance(res, int) and 8 <= res <= 1024 and res & (res - 1) == 0):
        raise CheckpointError(f"{source}: image resolution {res} is not supported (powers of two from 8 to 1024)")

    for name in ("channel_base", "channel_max", "num_fp16_res", "kernel_size"):
        _as_int(sk, name, source)
    if not isinstance(mk["num_layers"], int) or isinstance(mk["num_layers"], bool) \
            or not all(mk[k] is None or (isinstance(mk[k], int) and not isinstance(mk[k], bool))
                       for k in ("layer_features", "embed_features")):
        raise CheckpointError(f"{source}: the generator's mapping_kwargs hold non-integer sizes; the file is corrupt")
    channels = tuple((r, min(int(sk["channel_base"]) // r, int(sk["channel_max"])))
                     for r in (2**i for i in range(2, int(math.log2(res)) + 1)))
    clamp = sk["conv_clamp"]
    try:
        config = GeneratorConfig(
            img_resolution=res, channels=channels, z_dim=z_dim, w_dim=w_dim, img_channels=img_channels,
            mapping_layers=int(mk["num_layers"]),
            mapping_hidden=None if mk["layer_features"] is None else int(mk["layer_features"]),
            mapping_lr_mul=float(mk["lr_multiplier"]),
            conv_clamp=None if clamp is None else float(clamp), num_fp16_res=int(sk["num_fp16_res"]),
            resample_filter=taps, c_dim=c_dim,
            embed_features=mk["embed_features"] if c_dim and mk["embed_features"] != w_dim else None)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: unsupported generator settings ({err})") from None

    check_generator_config(config, source)  # before any tensor is touched
    return config, sk, taps




def _check_layer_attributes(net: PersistentStub, config: GeneratorConfig, source: str) -> None:
    """Cross-check attributes stored on the pickled layers against the constructor arguments."""
    clamp = config.conv_clamp
    for name, stub in net.walk():
        st = stub.state
        if stub.class_name in ("SynthesisLayer", "ToRGBLayer") and "conv_clamp" in st:
            got = st["conv_clamp"]
            if (got is None) != (clamp is None) or (got is not None and float(got) != float(clamp)):
                raise CheckpointError(f"{source}: layer {name} clamps at {got} but the generator says {clamp}")
        if stub.class_name == "SynthesisBlock" and st.get("architecture", "skip") != "skip":
            raise CheckpointError(f"{source}: block {name} uses the {st['architecture']!r} architecture; "
                                  f"only 'skip' is supported")
        if stub.class_name == "FullyConnectedLayer" and name.startswith("mapping.fc") and "bias_gain" in st:
            if not math.isclose(float(st["bias_gain"]), config.mapping_lr_mul, rel_tol=1e-6):
                raise CheckpointError(f"{source}: mapping layer {name} has learning-rate multiplier "
                                      f"{st['bias_gain']} but the generator says {config.mapping_lr_mul}")


def map_nvidia_tensors(t: dict[str, torch.Tensor], cfg: GeneratorConfig, use_noise: bool, taps: tuple[int, ...],
                       source: str) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """NVIDIA ``G.state_dict()`` names -> ours (module docstring), every shape checked; ``(state dict, w_avg)``."""
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    ch = cfg.channel_dict

    def take(name: str, shape: list[int]) -> torch.Tensor:
        if name not in t:
            raise CheckpointError(f"{source}: tensor '{name}' is missing; the file does not match the generator "
                                  f"its constructor arguments describe")
        x = t[name]
        if list(x.shape) != list(shape):
            raise CheckpointError(f"{source}: tensor '{name}' has shape {list(x.shape)} but the constructor "
                                  f"arguments imply {list(shape)}")
        used.add(name)
        return float_weights(x, name, source)

    hidden = cfg.mapping_hidden or cfg.w_dim
    embed = (cfg.embed_features or cfg.w_dim) if cfg.c_dim else 0
    dims = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    if cfg.c_dim:  # conditional: c -> embed (linear), normalised and appended to the normalised z
        sd["mapping.embed.weight"] = take("mapping.embed.weight", [embed, cfg.c_dim])
        sd["mapping.embed.bias"] = take("mapping.embed.bias", [embed])
    for i in range(cfg.mapping_layers):
        sd[f"mapping.layers.{i}.weight"] = take(f"mapping.fc{i}.weight", [dims[i + 1], dims[i]])
        sd[f"mapping.layers.{i}.bias"] = take(f"mapping.fc{i}.bias", [dims[i + 1]])
    w_avg = take("mapping.w_avg", [cfg.w_dim]) if "mapping.w_avg" in t else None

    expected_filter = make_fir_kernel(taps, gain=1.0)

    def layer(src: str, dst: str, cin: int, cout: int, r: int) -> None:
        sd[f"{dst}.conv.weight"] = take(f"{src}.weight", [cout, cin, 3, 3])
        sd[f"{dst}.conv.affine.weight"] = take(f"{src}.affine.weight", [cin, cfg.w_dim])
        sd[f"{dst}.conv.affine.bias"] = take(f"{src}.affine.bias", [cin])
        sd[f"{dst}.bias"] = take(f"{src}.bias", [cout])
        if use_noise:
            sd[f"{dst}.noise_strength"] = take(f"{src}.noise_strength", [])
            sd[f"{dst}.noise_const"] = take(f"{src}.noise_const", [r, r])
        else:  # use_noise=False: the layer adds nothing, which strength 0 reproduces exactly
            sd[f"{dst}.noise_strength"] = torch.zeros([])
            sd[f"{dst}.noise_const"] = torch.zeros([r, r])
        check_filter(f"{src}.resample_filter")

    def check_filter(name: str) -> None:
        if name in t:
            used.add(name)
            f = t[name].to(torch.float32)
            if f.shape != expected_filter.shape or not torch.allclose(f, expected_filter, atol=1e-6):
                raise CheckpointError(f"{source}: '{name}' does not match the resample filter {list(taps)}")

    resolutions = cfg.resolutions
    sd["synthesis.const"] = take("synthesis.b4.const", [ch[4], 4, 4])
    check_filter("synthesis.b4.resample_filter")
    layer("synthesis.b4.conv1", "synthesis.convs.0", ch[4], ch[4], 4)
    for j, r in enumerate(resolutions):
        b = f"synthesis.b{r}"
        if r > 4:
            check_filter(f"{b}.resample_filter")
            layer(f"{b}.conv0", f"synthesis.convs.{2 * j - 1}", ch[r // 2], ch[r], r)
            layer(f"{b}.conv1", f"synthesis.convs.{2 * j}", ch[r], ch[r], r)
        sd[f"synthesis.to_rgbs.{j}.conv.weight"] = take(f"{b}.torgb.weight", [cfg.img_channels, ch[r], 1, 1])
        sd[f"synthesis.to_rgbs.{j}.conv.affine.weight"] = take(f"{b}.torgb.affine.weight", [ch[r], cfg.w_dim])
        sd[f"synthesis.to_rgbs.{j}.conv.affine.bias"] = take(f"{b}.torgb.affine.bias", [ch[r]])
        sd[f"synthesis.to_rgbs.{j}.bias"] = take(f"{b}.torgb.bias", [cfg.img_channels])
    reject_unused_tensors(source, t, used, "a StyleGAN2 'skip' generator")
    return sd, w_avg


def _as_int(kw: dict, name: str, source: str) -> int:
    return kwarg_int(kw, name, source, "stylegan2-ada-pytorch")


def _with_defaults(given: Any, defaults: dict, what: str, source: str) -> dict:
    return kwargs_with_defaults(given, defaults, what, source, "stylegan2-ada-pytorch")
