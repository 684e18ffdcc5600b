"""Fake StyleGAN2 checkpoints in each foreign layout, written from scratch for the tests.

No code from rosinality's or NVIDIA's repositories is used (nor could be: licences, and CUDA
ops). Instead these builders reproduce the *file layouts* those projects write:

- rosinality stylegan2-pytorch ``.pt``: ``torch.save`` of ``{"g", "d", "g_ema", "g_optim",
  "d_optim", "args": argparse.Namespace, "ada_aug_p", ["latent_avg"]}`` with the exact state-dict
  key names, shapes and order of ``model.Generator`` (zip or legacy serialisation).
- NVIDIA stylegan2-ada-pytorch ``.pkl``: a plain pickle of ``{"G", "D", "G_ema",
  "augment_pipe", "training_set_kwargs"}`` whose networks are emitted exactly as
  ``torch_utils.persistence`` pickles them: ``GLOBAL torch_utils.persistence
  _reconstruct_persistent_obj`` applied to ``{"type": "class", "version": 6, "module_src",
  "class_name", "state"}``, where ``state`` is the torch module ``__dict__`` (``training``,
  ``_parameters``, ``_buffers``, hooks, ``_modules``, attributes incl. numpy-float gains,
  ``_init_args``, ``_init_kwargs``) and tensors are pickled by torch itself
  (``_rebuild_parameter`` / ``_rebuild_tensor_v2`` / ``torch.storage._load_from_bytes``).
  A small pure-Python pickler writes NVIDIA's globals (``dnnlib.util.EasyDict``, persistence)
  and numpy-1 names (``numpy.core.multiarray.scalar``) as ``GLOBAL``/``STACK_GLOBAL`` opcodes,
  so neither dnnlib nor numpy 1 needs to exist. The opcode structure was checked against real
  snapshots written by NVIDIA's code (same globals, same state keys per module).

Random weights include non-zero biases, noise strengths and ``w_avg`` so every term of the
architecture shows in the output.
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# rosinality stylegan2-pytorch
# ----------------------------------------------------------------------------------------------

ROSINALITY_TABLE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _blur_kernel(gain: float = 4.0) -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = f[None, :] * f[:, None]
    return k / k.sum() * gain


def tiny_channels(size: int, widest: int = 16) -> dict[int, int]:
    """Small per-resolution widths (halving above 16 px, at least 4) for fast tests."""
    res = [2**i for i in range(2, int(math.log2(size)) + 1)]
    return {r: max(4, widest // max(1, r // 16)) for r in res}


def rosinality_state_dict(size: int = 32, style_dim: int = 16, n_mlp: int = 2, channels: dict | None = None,
                          channel_multiplier: int | None = None, seed: int = 0, scale: float = 0.3) -> dict:
    """A generator state dict with rosinality's exact key names, shapes and order.

    ``channels`` (resolution -> width) defaults to :func:`tiny_channels`; pass
    ``channel_multiplier`` for the real table (512 up to 32 px, then ``256*m, 128*m, ...``).
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return torch.randn(list(shape), generator=g) * s

    if channel_multiplier is not None:
        channels = {r: ROSINALITY_TABLE[r] * (channel_multiplier if r >= 64 else 1)
                    for r in (2**i for i in range(2, int(math.log2(size)) + 1))}
    ch = channels or tiny_channels(size)
    sd: dict[str, torch.Tensor] = collections.OrderedDict()
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rnd(style_dim, style_dim, s=1 / 0.01)  # stored as N(0,1)/lr_mul
        sd[f"style.{i}.bias"] = rnd(style_dim, s=scale)

    def styled(prefix: str, cin: int, cout: int, up: bool) -> None:
        sd[f"{prefix}.conv.weight"] = rnd(1, cout, cin, 3, 3)
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = _blur_kernel()
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + rnd(cin, s=scale)
        sd[f"{prefix}.noise.weight"] = rnd(1, s=scale)
        sd[f"{prefix}.activate.bias"] = rnd(cout, s=scale)

    def to_rgb(prefix: str, cin: int, up: bool) -> None:
        sd[f"{prefix}.bias"] = rnd(1, 3, 1, 1, s=scale)
        if up:
            sd[f"{prefix}.upsample.kernel"] = _blur_kernel()
        sd[f"{prefix}.conv.weight"] = rnd(1, 3, cin, 1, 1)
        sd[f"{prefix}.conv.modulation.weight"] = rnd(cin, style_dim)
        sd[f"{prefix}.conv.modulation.bias"] = 1 + rnd(cin, s=scale)

    sd["input.input"] = rnd(1, ch[4], 4, 4)
    styled("conv1", ch[4], ch[4], False)
    to_rgb("to_rgb1", ch[4], False)
    res = sorted(ch)
    for j, r in enumerate(res[1:]):
        styled(f"convs.{2 * j}", ch[r // 2], ch[r], True)
        styled(f"convs.{2 * j + 1}", ch[r], ch[r], False)
    for j, r in enumerate(res[1:]):
        to_rgb(f"to_rgbs.{j}", ch[r], True)
    for k in range(2 * len(res) - 1):
        r = 4 * 2 ** ((k + 1) // 2)
        sd[f"noises.noise_{k}"] = rnd(1, 1, r, r)
    return sd


def rosinality_discriminator_state_dict(seed: int = 1) -> dict:
    """A small stand-in for ``d`` (rosinality Discriminator key style)."""
    g = torch.Generator().manual_seed(seed)
    return collections.OrderedDict([
        ("convs.0.0.weight", torch.randn(8, 3, 1, 1, generator=g)),
        ("convs.0.1.bias", torch.zeros(8)),
        ("convs.1.conv1.0.weight", torch.randn(8, 8, 3, 3, generator=g)),
        ("convs.1.conv2.0.kernel", _blur_kernel(1.0)),
        ("final_linear.1.weight", torch.randn(1, 8, generator=g)),
        ("final_linear.1.bias", torch.zeros(1)),
    ])


def _optimizer_state(tensors: dict, steps: int = 2) -> dict:
    """An ``torch.optim.Adam(...).state_dict()`` as train.py saves it (built directly: fast)."""
    state = {}
    for i, t in enumerate(list(tensors.values())[:4]):
        state[i] = {"step": torch.tensor(float(steps)), "exp_avg": torch.randn_like(t.float()) * 1e-3,
                    "exp_avg_sq": torch.rand_like(t.float()) * 1e-6}
    group = {"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-08, "weight_decay": 0, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "params": list(range(len(tensors)))}
    return {"state": state, "param_groups": [group]}


def write_rosinality_checkpoint(path: str | Path, g_ema: dict, *, g: dict | None = None, latent_avg=None,
                                args: argparse.Namespace | dict | None | bool = True, include_training: bool = True,
                                legacy: bool = False, extra: dict | None = None) -> Path:
    """Write a rosinality-style checkpoint; returns the path.

    ``args=True`` stores a realistic ``argparse.Namespace`` derived from ``g_ema``'s shapes.
    ``include_training`` adds ``g``, ``d``, optimiser states and ``ada_aug_p`` like train.py.
    """
    path = Path(path)
    if args is True:
        n_mlp = len([k for k in g_ema if k.startswith("style.") and k.endswith(".weight")])
        size = 4 * 2 ** len([k for k in g_ema if k.startswith("to_rgbs.") and k.endswith(".conv.weight")])
        args = argparse.Namespace(path="lmdb/ffhq", arch="stylegan2", iter=800000, batch=16, n_sample=64,
                                  size=size, r1=10.0, path_regularize=2.0, path_batch_shrink=2, d_reg_every=16,
                                  g_reg_every=4, mixing=0.9, ckpt=None, lr=0.002, channel_multiplier=2,
                                  wandb=False, local_rank=0, augment=False, augment_p=0.0, ada_target=0.6,
                                  ada_length=500000, ada_every=256, distributed=False,
                                  latent=int(g_ema["style.1.weight"].shape[1]), n_mlp=n_mlp, start_iter=0)
    ckpt: dict[str, Any] = {}
    if include_training:
        g_train = g if g is not None else {k: v + 0.01 * torch.randn_like(v) for k, v in g_ema.items()}
        d = rosinality_discriminator_state_dict()
        ckpt.update(g=g_train, d=d, g_ema=g_ema, g_optim=_optimizer_state(g_train), d_optim=_optimizer_state(d))
    else:
        ckpt["g_ema"] = g_ema
        if g is not None:
            ckpt["g"] = g
    if args is not None and args is not False:
        ckpt["args"] = args
    if include_training:
        ckpt["ada_aug_p"] = 0.0
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    if extra:
        ckpt.update(extra)
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return path


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch
# ----------------------------------------------------------------------------------------------

# Stand-in for the networks module source NVIDIA embeds (the loader must never execute it; the
# marker makes any execution visible to the tests).
FAKE_MODULE_SRC = (
    "# Stand-in for training/networks.py embedded by torch_utils.persistence.\n"
    "# A safe loader keeps this as text; executing it would create the marker file below.\n"
    "import pathlib\n"
    "pathlib.Path({marker!r}).write_text('module_src was executed')\n"
    "class Generator: pass\n"
)


class _Global:
    """A ``module.name`` reference the writer emits as a GLOBAL/STACK_GLOBAL opcode."""

    _interned: dict[tuple[str, str], "_Global"] = {}

    def __new__(cls, module: str, name: str):
        key = (module, name)
        if key not in cls._interned:
            obj = super().__new__(cls)
            obj.module, obj.name = module, name
            cls._interned[key] = obj
        return cls._interned[key]

    def __call__(self, *args, **kwargs):  # pragma: no cover - pickle only needs it callable
        raise RuntimeError("placeholder")


RECONSTRUCT = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")
EASYDICT = _Global("dnnlib.util", "EasyDict")


class FakeEasyDict(dict):
    """Pickled as NVIDIA's ``dnnlib.util.EasyDict`` (NEWOBJ + SETITEMS)."""


class FakePersistent:
    """Pickled exactly like a ``@persistence.persistent_class`` module instance."""

    def __init__(self, class_name: str, state: dict, module_src: str) -> None:
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce_ex__(self, protocol):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name,
                    state=self.state)
        return (RECONSTRUCT, (meta,))


class Numpy1Scalar:
    """A numpy float64 pickled under numpy-1 names (``numpy.core.multiarray.scalar``)."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __reduce_ex__(self, protocol):
        return (_Global("numpy.core.multiarray", "scalar"), (np.dtype("f8"), struct.pack("<d", self.value)))


class Numpy1Array:
    """A numpy array pickled under numpy-1 names (``numpy.core.multiarray._reconstruct``)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)

    def __reduce_ex__(self, protocol):
        a = self.array
        return (_Global("numpy.core.multiarray", "_reconstruct"), (_Global("numpy", "ndarray"), (0,), b"b"),
                (1, a.shape, a.dtype, False, a.tobytes()))


class _Writer(pickle._Pickler):
    """Pure-Python pickler that knows how to emit the placeholders above."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_placeholder_global(self, obj: _Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    def save_easydict(self, obj: FakeEasyDict) -> None:
        self.save(EASYDICT)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[_Global] = save_placeholder_global
    dispatch[FakeEasyDict] = save_easydict


def _module_state(params: dict, buffers: dict, modules: dict, attrs: dict, init_kwargs: dict,
                  torch_era: str, init_args: tuple = ()) -> dict:
    """The ``__dict__`` of a torch module as pickled by ``persistence`` (insertion order kept)."""
    od = collections.OrderedDict
    container = od if torch_era == "1.7" else dict
    state: dict[str, Any] = {"training": False,
                             "_parameters": container((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                                                      for k, v in params.items()),
                             "_buffers": container((k, v.detach().clone()) for k, v in buffers.items())}
    state["_non_persistent_buffers_set"] = set()
    if torch_era == "1.7":
        state.update(_backward_hooks=od(), _forward_hooks=od(), _forward_pre_hooks=od(), _state_dict_hooks=od(),
                     _load_state_dict_pre_hooks=od())
    else:
        state.update(_backward_pre_hooks=od(), _backward_hooks=od(), _is_full_backward_hook=None,
                     _forward_hooks=od(), _forward_hooks_with_kwargs=od(), _forward_hooks_always_called=od(),
                     _forward_pre_hooks=od(), _forward_pre_hooks_with_kwargs=od(), _state_dict_hooks=od(),
                     _state_dict_pre_hooks=od(), _load_state_dict_pre_hooks=od(), _load_state_dict_post_hooks=od())
    state["_modules"] = container(modules.items())
    state.update(attrs)
    state["_init_args"] = tuple(init_args)
    state["_init_kwargs"] = init_kwargs
    return state


def nvidia_generator_tensors(img_resolution: int = 32, z_dim: int = 16, w_dim: int = 16, num_layers: int = 2,
                             channel_base: int = 256, channel_max: int = 16, layer_features: int | None = None,
                             img_channels: int = 3, use_noise: bool = True, c_dim: int = 0, seed: int = 0,
                             scale: float = 0.3, lr_multiplier: float = 0.01) -> dict[str, torch.Tensor]:
    """Flat ``G.state_dict()``-style tensors with NVIDIA's names for the given settings."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=1.0):
        return torch.randn(list(shape), generator=g) * s

    res = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    ch = {r: min(channel_base // r, channel_max) for r in res}
    hidden = layer_features or w_dim
    embed = w_dim if c_dim > 0 else 0
    dims = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
    filt = _blur_kernel(1.0)
    t: dict[str, torch.Tensor] = {}
    for r in res:
        b = f"synthesis.b{r}"
        if r == 4:
            t[f"{b}.const"] = rnd(ch[4], 4, 4)
        t[f"{b}.resample_filter"] = filt.clone()
        for conv, cin in ((("conv0", ch[r // 2]),) if r > 4 else ()) + (("conv1", ch[r]),):
            p = f"{b}.{conv}"
            t[f"{p}.weight"] = rnd(ch[r], cin, 3, 3)
            if use_noise:
                t[f"{p}.noise_strength"] = rnd(s=scale)
            t[f"{p}.bias"] = rnd(ch[r], s=scale)
            t[f"{p}.resample_filter"] = filt.clone()
            if use_noise:
                t[f"{p}.noise_const"] = rnd(r, r)
            t[f"{p}.affine.weight"] = rnd(cin, w_dim)
            t[f"{p}.affine.bias"] = 1 + rnd(cin, s=scale)
        t[f"{b}.torgb.weight"] = rnd(img_channels, ch[r], 1, 1)
        t[f"{b}.torgb.bias"] = rnd(img_channels, s=scale)
        t[f"{b}.torgb.affine.weight"] = rnd(ch[r], w_dim)
        t[f"{b}.torgb.affine.bias"] = 1 + rnd(ch[r], s=scale)
    if c_dim > 0:
        t["mapping.embed.weight"] = rnd(embed, c_dim)
        t["mapping.embed.bias"] = rnd(embed, s=scale)
    for i in range(num_layers):
        t[f"mapping.fc{i}.weight"] = rnd(dims[i + 1], dims[i], s=1 / lr_multiplier)
        t[f"mapping.fc{i}.bias"] = rnd(dims[i + 1], s=scale)
    t["mapping.w_avg"] = rnd(w_dim, s=0.5)
    return t


def nvidia_generator_kwargs(img_resolution: int = 32, z_dim: int = 16, w_dim: int = 16, num_layers: int = 2,
                            channel_base: int = 256, channel_max: int = 16, layer_features: int | None = None,
                            img_channels: int = 3, use_noise: bool = True, conv_clamp: float | None = None,
                            num_fp16_res: int = 0, c_dim: int = 0, architecture: str | None = None,
                            lr_multiplier: float | None = None, **_ignored) -> dict:
    """``G_kwargs`` as NVIDIA's train.py builds them (``mapping_kwargs``/``synthesis_kwargs`` EasyDicts)."""
    mk = FakeEasyDict(num_layers=num_layers)
    if layer_features is not None:
        mk["layer_features"] = layer_features
    if lr_multiplier is not None:
        mk["lr_multiplier"] = lr_multiplier
    sk = FakeEasyDict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=num_fp16_res,
                      conv_clamp=conv_clamp)
    if architecture is not None:
        sk["architecture"] = architecture
    if not use_noise:
        sk["use_noise"] = False
    return dict(z_dim=z_dim, w_dim=w_dim, mapping_kwargs=mk, synthesis_kwargs=sk, c_dim=c_dim,
                img_resolution=img_resolution, img_channels=img_channels)


def _sub(t: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix) and "." not in k[len(prefix):]}


def build_nvidia_generator(tensors: dict, kwargs: dict, *, numpy_style: str = "numpy2", torch_era: str = "2.x",
                           module_src: str = FAKE_MODULE_SRC.format(marker="/nonexistent/never"),
                           class_names: dict | None = None) -> FakePersistent:
    """Assemble the persistent-object tree NVIDIA's ``Generator`` pickles as."""
    names = {"Generator": "Generator", "SynthesisLayer": "SynthesisLayer", **(class_names or {})}
    npf = (lambda v: np.float64(v)) if numpy_style == "numpy2" else Numpy1Scalar
    sk = dict(kwargs.get("synthesis_kwargs", {}))
    mk = dict(kwargs.get("mapping_kwargs", {}))
    res = kwargs["img_resolution"]
    w_dim, c_dim, img_channels = kwargs["w_dim"], kwargs.get("c_dim", 0), kwargs["img_channels"]
    clamp = sk.get("conv_clamp")
    lr_mul = mk.get("lr_multiplier", 0.01)
    arch = sk.get("architecture", "skip")
    use_noise = sk.get("use_noise", True)
    base, cmax = sk.get("channel_base", 32768), sk.get("channel_max", 512)
    res_list = [2**i for i in range(2, int(math.log2(res)) + 1)]
    ch = {r: min(base // r, cmax) for r in res_list}
    num_fp16 = sk.get("num_fp16_res", 0)
    fp16_res = max(2 ** (int(math.log2(res)) + 1 - num_fp16), 8)

    def make(cls, params, buffers, modules, attrs, init_kwargs, init_args=()):
        state = _module_state(params, buffers, modules, attrs, init_kwargs, torch_era, init_args)
        return FakePersistent(cls, state, module_src)

    def fc(prefix, in_f, out_f, activation, lr, bias_init=0):
        p = _sub(tensors, prefix + ".")
        init = dict(activation=activation, lr_multiplier=lr) if activation != "linear" else dict(bias_init=bias_init)
        return make("FullyConnectedLayer", {"weight": p["weight"], "bias": p["bias"]}, {}, {},
                    dict(activation=activation, weight_gain=npf(lr / np.sqrt(in_f)), bias_gain=lr),
                    init, (in_f, out_f))

    def layer(prefix, cin, cout, r, up):
        p = _sub(tensors, prefix + ".")
        params = {"weight": p["weight"]}
        buffers = {"resample_filter": p["resample_filter"]}
        if use_noise:
            buffers["noise_const"] = p["noise_const"]
            params["noise_strength"] = p["noise_strength"]
        params["bias"] = p["bias"]
        affine = fc(prefix + ".affine", w_dim, cin, "linear", 1, bias_init=1)
        attrs = dict(resolution=r, up=up, use_noise=use_noise, activation="lrelu", conv_clamp=clamp, padding=1,
                     act_gain=act_gain)  # one shared object, as NVIDIA's activation table holds it
        init = dict(w_dim=w_dim, resolution=r)
        if up > 1:
            init.update(up=up, resample_filter=[1, 3, 3, 1])
        init.update(conv_clamp=clamp, channels_last=False)
        return make(names["SynthesisLayer"], params, buffers, {"affine": affine}, attrs, init, (cin, cout))

    act_gain = npf(np.sqrt(2))
    block_kwargs = {k: v for k, v in sk.items() if k not in ("channel_base", "channel_max", "num_fp16_res")}
    blocks = {}
    for r in res_list:
        b = f"synthesis.b{r}"
        p = _sub(tensors, b + ".")
        cin = ch[r // 2] if r > 4 else 0
        mods = {}
        if r > 4:
            mods["conv0"] = layer(f"{b}.conv0", cin, ch[r], r, 2)
        mods["conv1"] = layer(f"{b}.conv1", ch[r], ch[r], r, 1)
        if arch == "skip" or r == res:
            tp = _sub(tensors, f"{b}.torgb.")
            mods["torgb"] = make("ToRGBLayer", {"weight": tp["weight"], "bias": tp["bias"]}, {},
                                 {"affine": fc(f"{b}.torgb.affine", w_dim, ch[r], "linear", 1, bias_init=1)},
                                 dict(conv_clamp=clamp, weight_gain=npf(1 / np.sqrt(ch[r]))),
                                 dict(w_dim=w_dim, conv_clamp=clamp, channels_last=False), (ch[r], img_channels))
        params = {"const": p["const"]} if r == 4 else {}
        use_fp16 = r >= fp16_res
        attrs = dict(in_channels=cin, w_dim=w_dim, resolution=r, img_channels=img_channels, is_last=r == res,
                     architecture=arch, use_fp16=use_fp16, channels_last=False,
                     num_conv=1 if r == 4 else 2, num_torgb=1)
        blocks[f"b{r}"] = make("SynthesisBlock", params, {"resample_filter": p["resample_filter"]}, mods, attrs,
                               dict(w_dim=w_dim, resolution=r, img_channels=img_channels, is_last=r == res,
                                    use_fp16=use_fp16, **block_kwargs), (cin, ch[r]))
    num_ws = 2 * len(res_list)
    synthesis = make("SynthesisNetwork", {}, {}, blocks,
                     dict(w_dim=w_dim, img_resolution=res, img_resolution_log2=int(math.log2(res)),
                          img_channels=img_channels, block_resolutions=res_list, num_ws=num_ws),
                     dict(w_dim=w_dim, img_resolution=res, img_channels=img_channels, **sk))
    z_dim = kwargs["z_dim"]
    hidden = mk.get("layer_features") or w_dim
    embed = w_dim if c_dim > 0 else 0
    dims = [z_dim + embed] + [hidden] * (mk.get("num_layers", 8) - 1) + [w_dim]
    fcs = {}
    if c_dim > 0:
        fcs["embed"] = fc("mapping.embed", c_dim, embed, "linear", 1)
    for i in range(mk.get("num_layers", 8)):
        fcs[f"fc{i}"] = fc(f"mapping.fc{i}", dims[i], dims[i + 1], "lrelu", lr_mul)
    mapping = make("MappingNetwork", {}, {"w_avg": tensors["mapping.w_avg"]}, fcs,
                   dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=mk.get("num_layers", 8),
                        w_avg_beta=0.995),
                   dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, **mk))
    return make(names["Generator"], {}, {}, {"synthesis": synthesis, "mapping": mapping},
                dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=res, img_channels=img_channels,
                     num_ws=num_ws), dict(kwargs))


def fake_discriminator(module_src: str, torch_era: str = "2.x", seed: int = 3) -> FakePersistent:
    g = torch.Generator().manual_seed(seed)
    state = _module_state({}, {}, {"b4": FakePersistent("DiscriminatorEpilogue", _module_state(
        {"weight": torch.randn(8, 8, generator=g)}, {}, {}, {}, {}, torch_era), module_src)},
        dict(img_resolution=32, img_channels=3), dict(c_dim=0, img_resolution=32, img_channels=3), torch_era)
    return FakePersistent("Discriminator", state, module_src)


def fake_augment_pipe(module_src: str, torch_era: str = "2.x") -> FakePersistent:
    state = _module_state({}, {"p": torch.zeros([]), "Hz_geom": torch.randn(12)}, {},
                          dict(xflip=1.0, rotate90=1.0, xint=1.0, xint_max=0.125, brightness_std=0.2),
                          dict(xflip=1, rotate90=1, xint=1), torch_era)
    return FakePersistent("AugmentPipe", state, module_src)


def write_pickle(path: str | Path, obj: Any, protocol: int = 4) -> Path:
    path = Path(path)
    buf = io.BytesIO()
    _Writer(buf, protocol=protocol).dump(obj)
    path.write_bytes(buf.getvalue())
    return path


def write_nvidia_pkl(path: str | Path, tensors: dict, kwargs: dict, *, g_tensors: dict | None = None,
                     numpy_style: str = "numpy2", torch_era: str = "2.x", protocol: int = 4,
                     include: tuple[str, ...] = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs"),
                     module_src: str | None = None, class_names: dict | None = None) -> Path:
    """Write a stylegan2-ada-pytorch snapshot pickle (``G_ema`` from ``tensors``).

    ``numpy_style="numpy1"`` + ``protocol=3`` + ``torch_era="1.7"`` matches files written by the
    original release (Python 3.7, numpy 1.x, torch 1.7); the defaults match a current setup.
    """
    src = module_src if module_src is not None else FAKE_MODULE_SRC.format(marker="/nonexistent/never")
    build = dict(numpy_style=numpy_style, torch_era=torch_era, module_src=src, class_names=class_names)
    snapshot: dict[str, Any] = {}
    if "training_set_kwargs" in include:
        tsk = FakeEasyDict(class_name="training.dataset.ImageFolderDataset", path="~/datasets/ffhq.zip",
                           use_labels=False, max_size=70000, xflip=False, resolution=kwargs["img_resolution"])
        if numpy_style == "numpy1":
            tsk["label_shape"] = Numpy1Array(np.zeros([0], dtype=np.float32))
        snapshot["training_set_kwargs"] = tsk
    for name in ("G", "D", "G_ema", "augment_pipe"):
        if name not in include:
            continue
        if name == "G_ema":
            snapshot[name] = build_nvidia_generator(tensors, kwargs, **build)
        elif name == "G":
            gt = g_tensors if g_tensors is not None else {k: v + 0.01 * torch.randn_like(v) for k, v in tensors.items()}
            snapshot[name] = build_nvidia_generator(gt, kwargs, **build)
        elif name == "D":
            snapshot[name] = fake_discriminator(src, torch_era)
        else:
            snapshot[name] = fake_augment_pipe(src, torch_era)
    return write_pickle(path, snapshot, protocol=protocol)


# ----------------------------------------------------------------------------------------------
# Hostile files
# ----------------------------------------------------------------------------------------------


def write_malicious_pickle(path: str | Path, module: str, name: str, args: tuple, protocol: int = 4,
                           wrap_in_snapshot: bool = True) -> Path:
    """A pickle that calls ``module.name(*args)`` when unpickled (e.g. ``os.system``).

    With ``wrap_in_snapshot`` the call hides inside an otherwise normal-looking snapshot dict.
    """

    class _Call:
        def __reduce_ex__(self, protocol):
            return (_Global(module, name), args)

    payload: Any = {"G_ema": _Call(), "training_set_kwargs": FakeEasyDict(path="x")} if wrap_in_snapshot else _Call()
    return write_pickle(path, payload, protocol=protocol)


class _TorchEvil:
    """Reduces to ``os.system(cmd)``; used to poison a torch.save file."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        import os

        return (os.system, (self.cmd,))


def write_malicious_pt(path: str | Path, marker: str | Path, legacy: bool = False) -> Path:
    """A rosinality-looking ``.pt`` whose ``args`` entry runs ``touch marker`` under plain torch.load."""
    sd = rosinality_state_dict(8, 8, 1, seed=5)
    torch.save({"g_ema": sd, "args": _TorchEvil(f"touch {marker}")}, path, _use_new_zipfile_serialization=not legacy)
    return Path(path)


# ----------------------------------------------------------------------------------------------
# Hand-assembled hostile pickles and archives
# ----------------------------------------------------------------------------------------------


class Op:
    """Tiny protocol-2 opcode assembler for pickles no real pickler would write."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")

    def glob(self, module: str, name: str) -> "Op":
        self.out += b"c" + f"{module}\n{name}\n".encode()
        return self

    def str(self, s: str) -> "Op":
        b = s.encode()
        self.out += b"X" + struct.pack("<I", len(b)) + b
        return self

    def bytes(self, b: bytes) -> "Op":
        self.out += b"B" + struct.pack("<I", len(b)) + b  # BINBYTES (protocol 3 opcode; readers accept it)
        return self

    def int(self, v: int) -> "Op":
        self.out += b"J" + struct.pack("<i", v)
        return self

    def raw(self, code: bytes) -> "Op":
        self.out += code
        return self

    def mark(self) -> "Op":
        return self.raw(b"(")

    def tuple(self) -> "Op":
        return self.raw(b"t")

    def reduce(self) -> "Op":
        return self.raw(b"R")

    def build(self) -> "Op":
        return self.raw(b"b")

    def put(self, i: int) -> "Op":
        return self.raw(b"q" + bytes([i]))

    def get(self, i: int) -> "Op":
        return self.raw(b"h" + bytes([i]))

    def dtype(self, code: str, memo: int | None = None) -> "Op":
        """``numpy.dtype(code, False, True)`` (no BUILD)."""
        self.glob("numpy", "dtype").mark().str(code).raw(b"\x89\x88").tuple().reduce()
        return self.put(memo) if memo is not None else self

    def done(self) -> bytes:
        return bytes(self.out + b".")


def write_pt_zip(path: str | Path, data_pkl: bytes, storages: dict[str, bytes] | None = None,
                 compress: bool = False) -> Path:
    """A zip-format ``torch.save`` archive with the given ``data.pkl`` and storage members."""
    path = Path(path)
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return path

