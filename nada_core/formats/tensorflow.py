"""TensorFlow-era StyleGAN2 ``.pkl`` files -> our :class:`~nada_core.models.stylegan2.Generator` weights.

NVIDIA's TF releases (``stylegan2-ffhq-config-f.pkl`` and friends from the StyleGAN2 and
StyleGAN2-ADA TensorFlow repositories) pickle a tuple ``(G, D, Gs)`` of
``dnnlib.tflib.network.Network`` objects. Our restricted unpickler turns each into an inert
:class:`~nada_core.formats.safe_unpickle.TFNetworkStub` holding the pickled state: ``version``,
``name``, ``static_kwargs`` (the constructor settings), ``components`` (sub-networks ``mapping``
and ``synthesis``), ``build_module_src`` / ``build_func_name`` (TF source code: kept as text,
never run) and ``variables``, a list of ``(name, numpy array)``. No TensorFlow is needed.

Variable names (prefixed by the component path) and how they map, ``R`` a resolution,
``j = log2(R) - 2``, ``k`` the conv index (``convs.k``)::

    dlatent_avg                            -> mapping.w_avg
    mapping/Dense{i}/weight [in, out]      -> mapping.layers.{i}.weight (transposed); bias as is
    mapping/LabelEmbed/weight, bias        -> mapping.embed (SG2-ADA TF; transposed)
    mapping/LabelConcat/weight [c, z]      -> mapping.embed (TF StyleGAN2; see below)
    synthesis/4x4/Const/const [1, C, 4, 4] -> synthesis.const
    synthesis/4x4/Conv/*                   -> synthesis.convs.0
    synthesis/RxR/Conv0_up/*, Conv1/*      -> synthesis.convs.{2j-1}, synthesis.convs.{2j}
    synthesis/RxR/ToRGB/*                  -> synthesis.to_rgbs.{j}   (4x4/ToRGB -> to_rgbs.0)
    synthesis/noise{k} [1, 1, R, R]        -> synthesis.convs.{k}.noise_const

and per layer: ``weight [kh, kw, in, out]`` -> ``conv.weight [out, in, kh, kw]`` (``Conv0_up``
also flips the kernel in space: TF runs it as a transposed convolution), ``mod_weight
[w_dim, in]`` -> ``conv.affine.weight`` (transposed), ``mod_bias + 1`` -> ``conv.affine.bias``
(TF adds the 1 at run time), ``bias`` and ``noise_strength`` as they are. The channel widths follow
TF's rule ``clip(int(fmap_base / 2 ** (stage * fmap_decay)), fmap_min, fmap_max)`` with
``stage = log2(R) - 1``.

Conditional models: SG2-ADA's ``LabelEmbed`` is NVIDIA's normalised embedding (``c_embed =
"normalized"``); TF StyleGAN2's ``LabelConcat`` multiplies the one-hot label by a plain weight
matrix (no bias, no weight scaling) and normalises ``[z, c @ W]`` together (``c_embed = "joint"``).
Our equalised linear layer scales its weight by ``1 / sqrt(c_dim)``, so the stored weight is
``W.T * sqrt(c_dim)`` with a zero bias.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..models.stylegan2 import GeneratorConfig
from .common import Converted, float_weights
from .limits import MAX_CHANNELS, MAX_CLASSES, MAX_LATENT_DIM, check_generator_config
from .safe_unpickle import TFNetworkStub

#: static_kwargs this converter understands, with TF's defaults (StyleGAN2 and StyleGAN2-ADA TF).
_KNOWN = dict(latent_size=512, label_size=0, dlatent_size=512, resolution=1024, num_channels=3,
              mapping_layers=8, mapping_fmaps=None, label_fmaps=None, mapping_lrmul=0.01,
              mapping_nonlinearity="lrelu", normalize_latents=True, fmap_base=16384, fmap_decay=1.0,
              fmap_min=1, fmap_max=512, fmap_const=None, architecture="skip", nonlinearity="lrelu",
              resample_kernel=[1, 3, 3, 1], use_noise=True, conv_clamp=None, num_fp16_res=0,
              mapping_func="G_mapping", synthesis_func=None, dtype="float32")
#: Settings that only concern training, sampling defaults or speed: read and ignored.
_IGNORED = {"truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
            "dlatent_avg_beta", "w_avg_beta", "style_mixing_prob", "structure", "is_training", "is_validation",
            "return_dlatents", "is_template_graph", "randomize_noise", "fused_modconv", "dlatent_broadcast"}
_SYNTHESIS_FUNCS = (None, "G_synthesis_stylegan2", "G_synthesis")
_MAX_COMPONENT_DEPTH = 4
_MAX_VARIABLES = 10_000


def is_tf_pickle(obj: Any) -> bool:
    """True for what a TF-era pickle unpickles to: a Network stub or a tuple of them."""
    if isinstance(obj, TFNetworkStub):
        return True
    return isinstance(obj, tuple) and bool(obj) and all(isinstance(o, TFNetworkStub) for o in obj)


def convert_tf_pickle(obj: Any, *, ema: bool, source: str) -> Converted:
    """Pick ``Gs`` (``ema=True``) or ``G`` from an unpickled ``(G, D, Gs)`` tuple and convert it."""
    if isinstance(obj, TFNetworkStub):
        net, key = obj, str(obj.get("name", "G"))
    elif len(obj) == 3:
        net, key = (obj[2], "Gs") if ema else (obj[0], "G")
    else:
        raise CheckpointError(f"{source}: a TensorFlow-era pickle with {len(obj)} networks; expected the "
                              f"(G, D, Gs) tuple NVIDIA's StyleGAN2 TensorFlow code saves")
    return convert_tf_generator(net, source=source, key=key)


def convert_tf_generator(net: TFNetworkStub, *, source: str, key: str = "Gs") -> Converted:
    """Convert one pickled TF ``G_main`` network (see the module docstring for the mapping)."""
    version = net.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 4:
        raise CheckpointError(f"{source}: TensorFlow network format version {version!r} is too old (4 or newer "
                              f"is supported); it is not a StyleGAN2 pickle")
    comps = _components(net)
    if "mapping" not in comps or "synthesis" not in comps:
        raise CheckpointError(f"{source}: TensorFlow network '{key}' has no mapping/synthesis sub-networks "
                              f"(found {sorted(comps) or 'none'}); it is not a StyleGAN2 generator (a discriminator?)")
    kw = _settings(net, source)
    params = _collect_variables(net, source)
    if any(name.startswith("synthesis/ToRGB_lod") for name in params):
        raise CheckpointError(f"{source}: the generator uses the 'orig' (progressive ToRGB_lod) architecture; only "
                              f"'skip' (the StyleGAN2 default) is supported")
    if "synthesis/4x4/Const/const" not in params or "synthesis/4x4/Conv/mod_weight" not in params:
        raise CheckpointError(f"{source}: the TensorFlow generator has no modulated 4x4 layers (StyleGAN 1 or "
                              f"another network?); only StyleGAN2 pickles are supported")
    config = _config(kw, params, source)
    check_generator_config(config, source)  # before any module is built
    sd, w_avg = _map_variables(params, config, bool(kw["use_noise"]), source)
    notes = {"network": key, "use_noise": bool(kw["use_noise"]), "fmap_base": kw["fmap_base"],
             "fmap_max": kw["fmap_max"], "tf_build_func": str(net.get("build_func_name", ""))[:80]}
    return Converted(config, sd, w_avg, notes)


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


def _components(net: TFNetworkStub) -> dict[str, TFNetworkStub]:
    comps = net.get("components") or {}
    if not isinstance(comps, dict):
        return {}
    return {k: v for k, v in comps.items() if isinstance(k, str) and isinstance(v, TFNetworkStub)}


def _settings(net: TFNetworkStub, source: str) -> dict:
    given = net.get("static_kwargs") or {}
    if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
        raise CheckpointError(f"{source}: the TensorFlow network's static_kwargs is not a table of settings; "
                              f"the file is corrupt")
    unknown = sorted(set(given) - set(_KNOWN) - _IGNORED)
    if unknown:
        raise CheckpointError(f"{source}: the TensorFlow generator has settings this loader does not know "
                              f"({', '.join(unknown[:5])}); it is not a standard StyleGAN2 generator")
    kw = dict(_KNOWN)
    kw.update({k: v for k, v in given.items() if k in _KNOWN and v is not None})
    for name in ("latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers",
                 "fmap_base", "fmap_min", "fmap_max", "num_fp16_res"):
        kw[name] = _int(kw[name], name, source)
    for name in ("mapping_fmaps", "label_fmaps", "fmap_const"):
        if kw[name] is not None:
            kw[name] = _int(kw[name], name, source)
    for name in ("mapping_lrmul", "fmap_decay"):
        kw[name] = _number(kw[name], name, source)
    checks = [("architecture", "skip", "'skip' (the StyleGAN2 default)"), ("nonlinearity", "lrelu", "'lrelu'"),
              ("mapping_nonlinearity", "lrelu", "'lrelu'"), ("normalize_latents", True, "True"),
              ("mapping_func", "G_mapping", "'G_mapping'"), ("dtype", "float32", "'float32'")]
    for name, want, said in checks:
        if kw[name] != want and not (name == "dtype" and kw[name] == "float16"):
            raise CheckpointError(f"{source}: the TensorFlow generator's {name} is {kw[name]!r:.40}; only {said} "
                                  f"is supported")
    if kw["synthesis_func"] not in _SYNTHESIS_FUNCS:
        raise CheckpointError(f"{source}: the TensorFlow generator's synthesis network is "
                              f"{kw['synthesis_func']!r:.60}; only StyleGAN2's G_synthesis_stylegan2 is supported")
    res = kw["resolution"]
    if not (8 <= res <= 1024 and res & (res - 1) == 0):
        raise CheckpointError(f"{source}: image resolution {res} is not supported (powers of two from 8 to 1024)")
    for name in ("latent_size", "dlatent_size", "fmap_base", "fmap_max"):
        if not 1 <= kw[name] <= (MAX_LATENT_DIM if "latent" in name else MAX_CHANNELS * 1024):
            raise CheckpointError(f"{source}: the TensorFlow generator's {name} is {kw[name]}, outside what any "
                                  f"StyleGAN2 uses; the file was not loaded")
    if not 0 <= kw["label_size"] <= MAX_CLASSES:
        raise CheckpointError(f"{source}: the TensorFlow generator's label_size is {kw['label_size']}, more classes "
                              f"than any model has; the file was not loaded")
    if not 0.0 <= kw["fmap_decay"] <= 4.0:
        raise CheckpointError(f"{source}: the TensorFlow generator's fmap_decay {kw['fmap_decay']} is not supported")
    clamp = kw["conv_clamp"]
    if clamp is not None:
        kw["conv_clamp"] = _number(clamp, "conv_clamp", source)
    taps = kw["resample_kernel"]
    if not isinstance(taps, (list, tuple)) or not 1 <= len(taps) <= 16 \
            or not all(isinstance(t, (int, float, np.number)) and not isinstance(t, bool) and float(t) == int(t)
                       for t in taps):
        raise CheckpointError(f"{source}: resample kernel {str(taps)[:40]} is not supported (1-16 integer taps)")
    kw["resample_kernel"] = tuple(int(t) for t in taps)
    return kw


def _int(value: Any, name: str, source: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise CheckpointError(f"{source}: the TensorFlow generator's {name} is {value!r:.40}, not an integer; "
                              f"the file is corrupt")
    return int(value)


def _number(value: Any, name: str, source: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(float(value)) or float(value) < 0:
        raise CheckpointError(f"{source}: the TensorFlow generator's {name} is {value!r:.40}, not a number >= 0; "
                              f"the file is corrupt")
    return float(value)


def _channels(kw: dict) -> tuple[tuple[int, int], ...]:
    """TF's ``nf(stage)`` for each resolution ``4 .. resolution`` (``stage = log2(R) - 1``)."""
    out = []
    for r in (2**i for i in range(2, int(math.log2(kw["resolution"])) + 1)):
        stage = int(math.log2(r)) - 1
        n = int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"])))
        out.append((r, int(np.clip(n, kw["fmap_min"], kw["fmap_max"]))))
    return tuple(out)


def _config(kw: dict, params: dict[str, np.ndarray], source: str) -> GeneratorConfig:
    channels = _channels(kw)
    if kw["fmap_const"] is not None and kw["fmap_const"] != channels[0][1]:
        raise CheckpointError(f"{source}: the 4x4 constant has {kw['fmap_const']} channels but the 4x4 layer "
                              f"{channels[0][1]}; this layout is not supported")
    c_dim = kw["label_size"]
    embed_features, c_embed = None, "normalized"
    if c_dim > 0:
        if "mapping/LabelEmbed/weight" in params:
            embed_features = _dim(params["mapping/LabelEmbed/weight"], 1, "mapping/LabelEmbed/weight", source)
        elif "mapping/LabelConcat/weight" in params:
            embed_features, c_embed = kw["latent_size"], "joint"
        else:
            raise CheckpointError(f"{source}: the generator is conditional (label_size={c_dim}) but has no "
                                  f"LabelEmbed or LabelConcat weights; the file is corrupt")
    # Hidden width: what the Dense layers really have (TF StyleGAN2 defaults to 512, SG2-ADA to dlatent_size).
    hidden = kw["mapping_fmaps"]
    if kw["mapping_layers"] > 1 and "mapping/Dense0/weight" in params:
        hidden = _dim(params["mapping/Dense0/weight"], 1, "mapping/Dense0/weight", source)
    try:
        return GeneratorConfig(
            img_resolution=kw["resolution"], channels=channels, z_dim=kw["latent_size"], w_dim=kw["dlatent_size"],
            img_channels=kw["num_channels"], mapping_layers=kw["mapping_layers"],
            mapping_hidden=None if hidden in (None, kw["dlatent_size"]) else hidden,
            mapping_lr_mul=kw["mapping_lrmul"], conv_clamp=kw["conv_clamp"], num_fp16_res=kw["num_fp16_res"],
            resample_filter=kw["resample_kernel"], c_dim=c_dim, embed_features=embed_features, c_embed=c_embed)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: unsupported generator settings ({err})") from None


def _dim(a: np.ndarray, axis: int, name: str, source: str) -> int:
    if a.ndim != 2:
        raise CheckpointError(f"{source}: TensorFlow variable '{name}' has shape {list(a.shape)}, expected 2 dims")
    return int(a.shape[axis])


# ----------------------------------------------------------------------------------------------
# Variables
# ----------------------------------------------------------------------------------------------


def _collect_variables(net: TFNetworkStub, source: str) -> dict[str, np.ndarray]:
    """``{component path/variable name: array}`` over the network and its sub-networks."""
    out: dict[str, np.ndarray] = {}
    seen: set[int] = set()
    stack = [("", net, 0)]
    while stack:
        prefix, node, depth = stack.pop()
        if id(node) in seen:
            continue
        if depth > _MAX_COMPONENT_DEPTH:
            raise CheckpointError(f"{source}: the TensorFlow networks nest deeper than any generator's; the file is "
                                  f"corrupt or crafted")
        seen.add(id(node))
        variables = node.get("variables") or []
        if not isinstance(variables, (list, tuple)):
            raise CheckpointError(f"{source}: the TensorFlow network's variables are not a list; the file is corrupt")
        for item in variables:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise CheckpointError(f"{source}: a TensorFlow variable is not a (name, array) pair; the file is corrupt")
            name, value = item
            if not isinstance(value, (np.ndarray, np.generic)) or value.dtype.kind not in "fiu":
                raise CheckpointError(f"{source}: TensorFlow variable '{prefix}{name}' is not a numeric array")
            out[prefix + name] = np.asarray(value)
            if len(out) > _MAX_VARIABLES:
                raise CheckpointError(f"{source}: the TensorFlow network holds more variables than any generator")
        for cname, comp in _components(node).items():
            stack.append((f"{prefix}{cname}/", comp, depth + 1))
    return out


def _map_variables(p: dict[str, np.ndarray], cfg: GeneratorConfig, use_noise: bool, source: str,
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    sd: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    ch = cfg.channel_dict

    def take(name: str, shape: list[int]) -> np.ndarray:
        if name not in p:
            raise CheckpointError(f"{source}: TensorFlow variable '{name}' is missing; the file does not match the "
                                  f"generator its settings describe")
        a = p[name]
        if list(a.shape) != list(shape):
            raise CheckpointError(f"{source}: TensorFlow variable '{name}' has shape {list(a.shape)} but the "
                                  f"settings imply {list(shape)}")
        used.add(name)
        return float_weights(a, name, source)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a copy; keeps 0-d shapes

    # Mapping.
    c_dim, embed = cfg.c_dim, (cfg.embed_features or cfg.w_dim) if cfg.c_dim else 0
    hidden = cfg.mapping_hidden or cfg.w_dim
    dims = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    for i in range(cfg.mapping_layers):
        sd[f"mapping.layers.{i}.weight"] = tensor(take(f"mapping/Dense{i}/weight", [dims[i], dims[i + 1]]).T)
        sd[f"mapping.layers.{i}.bias"] = tensor(take(f"mapping/Dense{i}/bias", [dims[i + 1]]))
    if c_dim and cfg.c_embed == "joint":
        w = take("mapping/LabelConcat/weight", [c_dim, cfg.z_dim])
        sd["mapping.embed.weight"] = tensor(w.T * math.sqrt(c_dim))  # undo our 1/sqrt(c_dim) weight gain
        sd["mapping.embed.bias"] = torch.zeros(cfg.z_dim)
    elif c_dim:
        sd["mapping.embed.weight"] = tensor(take("mapping/LabelEmbed/weight", [c_dim, embed]).T)
        sd["mapping.embed.bias"] = tensor(take("mapping/LabelEmbed/bias", [embed]))
    w_avg = tensor(take("dlatent_avg", [cfg.w_dim])) if "dlatent_avg" in p else None
    if "lod" in p:  # progressive-growing level of detail: always 0 in a finished StyleGAN2
        used.add("lod")

    # Synthesis.
    def layer(scope: str, k: int, cin: int, cout: int, r: int, up: bool) -> None:
        dst = f"synthesis.convs.{k}"
        w = take(f"{scope}/weight", [3, 3, cin, cout])
        if up:  # TF's transposed convolution uses the kernel flipped in space
            w = w[::-1, ::-1]
        sd[f"{dst}.conv.weight"] = tensor(w.transpose(3, 2, 0, 1))
        sd[f"{dst}.conv.affine.weight"] = tensor(take(f"{scope}/mod_weight", [cfg.w_dim, cin]).T)
        sd[f"{dst}.conv.affine.bias"] = tensor(take(f"{scope}/mod_bias", [cin]) + 1)
        sd[f"{dst}.bias"] = tensor(take(f"{scope}/bias", [cout]))
        if use_noise:
            sd[f"{dst}.noise_strength"] = tensor(take(f"{scope}/noise_strength", []))
            sd[f"{dst}.noise_const"] = tensor(take(f"synthesis/noise{k}", [1, 1, r, r])[0, 0])
        else:  # use_noise=False: the layer adds nothing, which strength 0 reproduces exactly
            sd[f"{dst}.noise_strength"] = torch.zeros([])
            sd[f"{dst}.noise_const"] = torch.zeros([r, r])

    def torgb(scope: str, j: int, cin: int) -> None:
        dst = f"synthesis.to_rgbs.{j}"
        sd[f"{dst}.conv.weight"] = tensor(take(f"{scope}/weight", [1, 1, cin, cfg.img_channels]).transpose(3, 2, 0, 1))
        sd[f"{dst}.conv.affine.weight"] = tensor(take(f"{scope}/mod_weight", [cfg.w_dim, cin]).T)
        sd[f"{dst}.conv.affine.bias"] = tensor(take(f"{scope}/mod_bias", [cin]) + 1)
        sd[f"{dst}.bias"] = tensor(take(f"{scope}/bias", [cfg.img_channels]))

    sd["synthesis.const"] = tensor(take("synthesis/4x4/Const/const", [1, ch[4], 4, 4])[0])
    layer("synthesis/4x4/Conv", 0, ch[4], ch[4], 4, False)
    torgb("synthesis/4x4/ToRGB", 0, ch[4])
    for j, r in enumerate(cfg.resolutions[1:], start=1):
        scope = f"synthesis/{r}x{r}"
        layer(f"{scope}/Conv0_up", 2 * j - 1, ch[r // 2], ch[r], r, True)
        layer(f"{scope}/Conv1", 2 * j, ch[r], ch[r], r, False)
        torgb(f"{scope}/ToRGB", j, ch[r])
    extra = sorted(set(p) - used)
    if extra:
        shown = ", ".join(extra[:4]) + (" ..." if len(extra) > 4 else "")
        arch = " (the 'resnet' architecture)" if any("/Skip/" in e for e in extra) else ""
        raise CheckpointError(f"{source}: the TensorFlow generator has variables a StyleGAN2 'skip' generator does "
                              f"not ({shown}){arch}; it is a different architecture")
    return sd, w_avg

