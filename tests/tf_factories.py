"""Fake TensorFlow-era StyleGAN2 pickles and dfl/ComfyUI-StyleGan caches, written from scratch for the tests.

- TF ``.pkl``: the ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network`` objects as NVIDIA's
  TF code pickles them (each an object whose ``__getstate__`` dict holds ``version, name,
  static_kwargs, components, build_module_src, build_func_name, variables``), written by the
  pure-Python pickler of :mod:`checkpoint_factories` so no TensorFlow or dnnlib is needed.
- dfl's ``.safetensors`` cache: NVIDIA's ``G.state_dict()`` with ``arch``/``init_kwargs`` metadata.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from checkpoint_factories import Numpy1Array, _Global, _Writer, write_pickle


# ----------------------------------------------------------------------------------------------
# NVIDIA StyleGAN2 TensorFlow pickles (dnnlib.tflib)
# ----------------------------------------------------------------------------------------------

TF_NETWORK = _Global("dnnlib.tflib.network", "Network")

# Stand-in for the TF source NVIDIA embeds as build_module_src; running it would create the marker.
FAKE_TF_MODULE_SRC = (
    "# Stand-in for training/networks_stylegan2.py embedded by dnnlib.tflib.network.\n"
    "import pathlib\n"
    "pathlib.Path({marker!r}).write_text('build_module_src was executed')\n"
    "def G_main(*args, **kwargs): pass\n"
)


class FakeTFNetwork:
    """Pickled like ``dnnlib.tflib.network.Network``: its ``__getstate__`` dict ``state``."""

    def __init__(self, state: dict) -> None:
        self.state = state


def _save_tf_network(writer: _Writer, obj: FakeTFNetwork) -> None:
    # What ``object.__reduce_ex__`` makes of a plain class instance: NEWOBJ, then BUILD with
    # the dict ``Network.__getstate__`` returns.
    writer.save(TF_NETWORK)
    writer.save(())
    writer.write(pickle.NEWOBJ)
    writer.memoize(obj)
    writer.save(obj.state)
    writer.write(pickle.BUILD)


_Writer.dispatch[FakeTFNetwork] = _save_tf_network

def tf_generator_settings(resolution: int = 16, latent_size: int = 8, dlatent_size: int = 8,
                          mapping_layers: int = 2, fmap_base: int = 32, fmap_max: int = 8, label_size: int = 0,
                          **extra) -> dict:
    """``static_kwargs`` of a small TF ``G_main`` (``fmap_base=32`` gives 8/8/4 channels at 4/8/16 px)."""
    kw = dict(num_channels=3, resolution=resolution, label_size=label_size, latent_size=latent_size,
              dlatent_size=dlatent_size, mapping_layers=mapping_layers, fmap_base=fmap_base, fmap_max=fmap_max)
    kw.update(extra)
    return kw


def tf_generator_variables(kw: dict, seed: int = 0, scale: float = 0.3, label: str = "LabelEmbed",
                           ) -> dict[str, dict[str, np.ndarray]]:
    """Random TF-layout variables ``{"G": ..., "mapping": ..., "synthesis": ...}`` for settings ``kw``.

    Shapes are TF's (``Dense`` weights ``[in, out]``, conv weights ``[kh, kw, in, out]``, ``mod_bias``
    without the +1, const ``[1, C, 4, 4]``, noise ``[1, 1, R, R]``); ``label`` picks the conditional
    layout: ``"LabelEmbed"`` (StyleGAN2-ADA TF) or ``"LabelConcat"`` (StyleGAN2 TF).
    """
    rng = np.random.RandomState(seed)

    def rnd(*shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    res_log2 = int(math.log2(kw["resolution"]))
    base, decay = kw.get("fmap_base", 16384), kw.get("fmap_decay", 1.0)

    def nf(stage):
        return int(np.clip(int(base / (2.0 ** (stage * decay))), kw.get("fmap_min", 1), kw.get("fmap_max", 512)))

    z, w, c = kw.get("latent_size", 512), kw.get("dlatent_size", 512), kw.get("label_size", 0)
    lrmul = kw.get("mapping_lrmul", 0.01)
    hidden = kw.get("mapping_fmaps") or w
    mapping: dict[str, np.ndarray] = {}
    x_dim = z
    if c and label == "LabelConcat":
        mapping["LabelConcat/weight"] = rnd(c, z)
        x_dim = 2 * z
    elif c:
        e = kw.get("label_fmaps") or z
        mapping["LabelEmbed/weight"] = rnd(c, e)
        mapping["LabelEmbed/bias"] = rnd(e, s=scale)
        x_dim = z + e
    n = kw.get("mapping_layers", 8)
    for i in range(n):
        out = w if i == n - 1 else hidden
        mapping[f"Dense{i}/weight"] = rnd(x_dim, out, s=1 / lrmul)
        mapping[f"Dense{i}/bias"] = rnd(out, s=scale)
        x_dim = out
    syn: dict[str, np.ndarray] = {}
    img = kw.get("num_channels", 3)

    def layer(scope, cin, cout):
        syn[f"{scope}/weight"] = rnd(3, 3, cin, cout)
        syn[f"{scope}/mod_weight"] = rnd(w, cin)
        syn[f"{scope}/mod_bias"] = rnd(cin, s=scale)
        syn[f"{scope}/noise_strength"] = np.float32(rng.standard_normal() * scale)
        syn[f"{scope}/bias"] = rnd(cout, s=scale)

    def torgb(scope, cin):
        syn[f"{scope}/weight"] = rnd(1, 1, cin, img)
        syn[f"{scope}/mod_weight"] = rnd(w, cin)
        syn[f"{scope}/mod_bias"] = rnd(cin, s=scale)
        syn[f"{scope}/bias"] = rnd(img, s=scale)

    for k in range(2 * res_log2 - 3):
        r = 2 ** ((k + 5) // 2)
        syn[f"noise{k}"] = rnd(1, 1, r, r)
    syn["4x4/Const/const"] = rnd(1, nf(1), 4, 4)
    layer("4x4/Conv", nf(1), nf(1))
    torgb("4x4/ToRGB", nf(1))
    for res in range(3, res_log2 + 1):
        scope = f"{2**res}x{2**res}"
        layer(f"{scope}/Conv0_up", nf(res - 2), nf(res - 1))
        layer(f"{scope}/Conv1", nf(res - 1), nf(res - 1))
        torgb(f"{scope}/ToRGB", nf(res - 1))
    top = {"lod": np.float32(0.0), "dlatent_avg": rnd(w, s=0.5)}
    return {"G": top, "mapping": mapping, "synthesis": syn}


def _tf_value(v: np.ndarray, numpy_style: str):
    if isinstance(v, np.ndarray) and numpy_style == "numpy1":
        return Numpy1Array(v)
    return v


def build_tf_generator(variables: dict, kw: dict, name: str = "Gs", *, numpy_style: str = "numpy1",
                       module_src: str = FAKE_TF_MODULE_SRC.format(marker="/nonexistent/never"),
                       version: int = 4) -> FakeTFNetwork:
    """The ``G_main`` network tree as ``Network.__getstate__`` pickles it (mapping, synthesis)."""
    num_layers = 2 * int(math.log2(kw["resolution"])) - 2

    def net(net_name, func, static, vars_):
        state = {"version": version, "name": net_name, "static_kwargs": dict(static), "components": {},
                 "build_module_src": module_src, "build_func_name": func,
                 "variables": [(k, _tf_value(v, numpy_style)) for k, v in vars_.items()]}
        if version >= 5:
            state.update(input_shapes=[[None, kw["latent_size"]], [None, kw.get("label_size", 0)]],
                         output_shapes=[[None, kw.get("num_channels", 3), kw["resolution"], kw["resolution"]]],
                         input_names=["latents_in", "labels_in"], output_names=["images_out"])
        return FakeTFNetwork(state)

    synthesis = net("G_synthesis", "training.networks_stylegan2.G_synthesis_stylegan2", kw, variables["synthesis"])
    mapping = net("G_mapping", "training.networks_stylegan2.G_mapping", dict(kw, dlatent_broadcast=num_layers),
                  variables["mapping"])
    top = net(name, "training.networks_stylegan2.G_main", kw, variables["G"])
    top.state["components"] = {"synthesis": synthesis, "mapping": mapping}
    return top


def write_tf_pkl(path: str | Path, variables: dict, kw: dict, *, g_variables: dict | None = None,
                 protocol: int = 3, **build) -> Path:
    """Write a TF-era ``(G, D, Gs)`` pickle (``Gs`` from ``variables``) as NVIDIA's TF code saves it.

    Defaults (protocol 3, numpy-1 array names) match files written by Python 3.6/numpy 1.x.
    """
    gv = g_variables or {k: {n: (v + np.float32(0.01)).astype(np.float32) for n, v in d.items()}
                         for k, d in variables.items()}
    src = build.get("module_src", FAKE_TF_MODULE_SRC.format(marker="/nonexistent/never"))
    d = FakeTFNetwork({"version": build.get("version", 4), "name": "D", "static_kwargs": {"resolution": kw["resolution"]},
                       "components": {}, "build_module_src": src, "build_func_name": "training.networks_stylegan2.D_stylegan2",
                       "variables": [("4x4/Conv/weight", _tf_value(np.zeros((3, 3, 4, 4), np.float32),
                                                                 build.get("numpy_style", "numpy1")))]})
    G = build_tf_generator(gv, kw, "G", **build)
    Gs = build_tf_generator(variables, kw, "Gs", **build)
    return write_pickle(path, (G, d, Gs), protocol=protocol)


def tf_to_nvidia_tensors(variables: dict, label_size: int = 0) -> dict[str, torch.Tensor]:
    """Test-side translation of TF variables to stylegan2-ada-pytorch names (for reference_stylegan2),
    written from NVIDIA's documented layouts; the LabelConcat layout has no NVIDIA equivalent."""
    m, s = variables["mapping"], variables["synthesis"]
    t: dict[str, torch.Tensor] = {}

    def T(a):
        return torch.from_numpy(np.array(a, dtype=np.float32))

    for key, v in m.items():
        mt = re.fullmatch(r"Dense(\d+)/(weight|bias)", key)
        if mt:
            t[f"mapping.fc{mt.group(1)}.{mt.group(2)}"] = T(v.T if mt.group(2) == "weight" else v)
    if "LabelEmbed/weight" in m:
        t["mapping.embed.weight"] = T(m["LabelEmbed/weight"].T)
        t["mapping.embed.bias"] = T(m["LabelEmbed/bias"])
    t["mapping.w_avg"] = T(variables["G"]["dlatent_avg"])
    res = sorted({int(k.split("x")[0]) for k in s if re.match(r"\d+x\d+/", k)})
    for r in res:
        pairs = (("Conv", "conv1"), ("ToRGB", "torgb")) if r == 4 else \
            (("Conv0_up", "conv0"), ("Conv1", "conv1"), ("ToRGB", "torgb"))
        for tf_name, nv in pairs:
            scope = f"{r}x{r}/{tf_name}"
            w = s[f"{scope}/weight"]
            if tf_name == "Conv0_up":
                w = w[::-1, ::-1]
            p = f"synthesis.b{r}.{nv}"
            t[f"{p}.weight"] = T(w.transpose(3, 2, 0, 1))
            t[f"{p}.bias"] = T(s[f"{scope}/bias"])
            t[f"{p}.affine.weight"] = T(s[f"{scope}/mod_weight"].T)
            t[f"{p}.affine.bias"] = T(s[f"{scope}/mod_bias"] + 1)
            if tf_name != "ToRGB":
                k = 0 if r == 4 else 2 * int(math.log2(r)) - (5 if tf_name == "Conv0_up" else 4)
                t[f"{p}.noise_strength"] = T(s[f"{scope}/noise_strength"])
                t[f"{p}.noise_const"] = T(s[f"noise{k}"][0, 0])
    t["synthesis.b4.const"] = T(s["4x4/Const/const"][0])
    return t


# ----------------------------------------------------------------------------------------------
# dfl/ComfyUI-StyleGan's .safetensors cache of NVIDIA pickles
# ----------------------------------------------------------------------------------------------


def write_dfl_safetensors(path: str | Path, tensors: dict, kwargs: dict, arch: str = "stylegan2",
                          init_kwargs_text: str | None = None) -> Path:
    """The file dfl's converter writes: ``save_model(G_ema, path, metadata={"arch", "init_kwargs"})``,
    i.e. NVIDIA's ``G.state_dict()`` (``tensors``) with the constructor arguments as JSON."""
    import json

    from safetensors.torch import save_file

    text = init_kwargs_text if init_kwargs_text is not None else json.dumps(json.loads(json.dumps(kwargs)))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"arch": arch, "init_kwargs": text})
    return Path(path)
