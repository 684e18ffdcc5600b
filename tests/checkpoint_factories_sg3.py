"""NVIDIA stylegan3 ``.pkl`` snapshots assembled in the real layout (persistence objects, numpy
layer sizes, EasyDict kwargs), from tensors with NVIDIA's names.

Two sources of tensors: ``tests/fixtures/sg3_reference.npz`` (made by NVIDIA's own code, see
``tests/fixtures/make_sg3_fixture.py``; its layer facts are NVIDIA's) and :func:`random_sg3` (our
random generator renamed to NVIDIA's names, layer facts from our derivation) for files in any
configuration. The embedded ``module_src`` is our own stand-in text naming the real classes; a
``marker`` makes it write a file if anything ever executed it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from checkpoint_factories import FakeEasyDict, FakePersistent, Numpy1Array, _module_state, write_pickle

FIXTURE = Path(__file__).parent / "fixtures" / "sg3_reference.npz"

SG3_MODULE_SRC = (
    "# Stand-in for training/networks_stylegan3.py as torch_utils.persistence embeds it.\n"
    "# Classes: Generator, MappingNetwork, SynthesisNetwork, SynthesisInput, SynthesisLayer,\n"
    "# FullyConnectedLayer; the layers call filtered_lrelu.filtered_lrelu.\n"
    "import pathlib\n"
    "pathlib.Path({marker!r}).write_text('module_src was executed')\n"
    "from torch_utils.ops import filtered_lrelu\n"
    "class Generator: pass\n"
)


def fixture() -> dict[str, Any]:
    """The stored NVIDIA reference data, as ``{key: numpy array}``."""
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


def fixture_generator(kind: str) -> tuple[dict, dict, list[dict]]:
    """``(tensors with NVIDIA names, constructor kwargs, pickled layer facts)`` of fixture ``kind`` (t/r)."""
    data = fixture()
    prefix = f"{kind}/tensor/"
    tensors = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in data.items() if k.startswith(prefix)}
    return tensors, json.loads(str(data[f"{kind}/kwargs"])), json.loads(str(data[f"{kind}/layers"]))


def random_sg3(seed: int = 0, **kwargs) -> tuple[dict, dict, list[dict]]:
    """A random StyleGAN3 in NVIDIA's naming: ``(tensors, kwargs, layer facts)``.

    ``kwargs`` are NVIDIA constructor arguments (defaults: a 16 px -T generator, 8-d latents).
    """
    from nada_core.formats.nvidia3 import _GENERATOR_ARG_ORDER  # noqa: F401 - the loader's view of kwargs
    from nada_core.models.stylegan3 import StyleGAN3Config, StyleGAN3Generator, layer_specs

    kw = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs={"num_layers": 2},
              channel_base=128, channel_max=16, num_layers=4, num_critical=2, margin_size=2)
    kw.update(kwargs)
    mk = kw["mapping_kwargs"]
    fields = {k: v for k, v in kw.items() if k not in ("mapping_kwargs", "c_dim")}
    fields["mapping_layers"] = mk.get("num_layers", 2)
    cfg = StyleGAN3Config(**fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN3Generator(cfg)
        with torch.no_grad():
            for name, p in G.named_parameters():
                if name.endswith("bias") and not name.startswith("mapping"):
                    p.copy_(torch.randn_like(p) * 0.3)
            G.synthesis.input.affine.weight.copy_(torch.randn_like(G.synthesis.input.affine.weight) * 0.5)
            G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg) * 0.3)
    tensors = {}
    for name, t in G.state_dict().items():
        if name.startswith("mapping.layers."):
            name = "mapping.fc" + name[len("mapping.layers."):]
        tensors[name] = t.clone()
    layers = []
    for s in layer_specs(cfg):
        rec = {f.name: getattr(s, f.name) for f in dataclasses.fields(s) if f.name not in ("idx",)}
        rec["padding"] = list(s.padding)
        rec["use_fp16"] = True
        layers.append(rec)
    return tensors, kw, layers


def _sub(t: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix) and "." not in k[len(prefix):]}


def build_nvidia3_generator(tensors: dict, kwargs: dict, layers: list[dict], *, module_src: str | None = None,
                            numpy_style: str = "numpy2", torch_era: str = "2.x") -> FakePersistent:
    """The persistent-object tree of NVIDIA's stylegan3 ``Generator`` (``G_ema``)."""
    src = module_src if module_src is not None else SG3_MODULE_SRC.format(marker="/nonexistent/never")
    npf = (lambda v: np.float64(v))
    npa = (lambda a: np.asarray(a)) if numpy_style == "numpy2" else (lambda a: Numpy1Array(np.asarray(a)))
    w_dim, z_dim = kwargs["w_dim"], kwargs["z_dim"]

    def make(cls, params, buffers, modules, attrs, init_kwargs, init_args=()):
        return FakePersistent(cls, _module_state(params, buffers, modules, attrs, init_kwargs, torch_era, init_args),
                              src)

    def fc(prefix, in_f, out_f, activation="linear", lr=1.0, **init):
        p = _sub(tensors, prefix + ".")
        return make("FullyConnectedLayer", {"weight": p["weight"], "bias": p["bias"]}, {}, {},
                    dict(in_features=in_f, out_features=out_f, activation=activation,
                         weight_gain=npf(lr / np.sqrt(in_f)), bias_gain=lr),
                    dict(activation=activation, lr_multiplier=lr, **init) if activation != "linear" else init,
                    (in_f, out_f))

    mods = {}
    first = layers[0]
    ip = _sub(tensors, "synthesis.input.")
    c0 = ip["weight"].shape[0]
    mods["input"] = make(
        "SynthesisInput", {"weight": ip["weight"]},
        {"transform": ip["transform"], "freqs": ip["freqs"], "phases": ip["phases"]},
        {"affine": fc("synthesis.input.affine", w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])},
        dict(w_dim=w_dim, channels=c0, size=npa([first["in_size"]] * 2),
             sampling_rate=npf(first["in_sampling_rate"]), bandwidth=npf(first["in_cutoff"])),
        dict(w_dim=w_dim, channels=c0, size=first["in_size"], sampling_rate=npf(first["in_sampling_rate"]),
             bandwidth=npf(first["in_cutoff"])))
    clamp = kwargs.get("conv_clamp", 256)
    for rec in layers:
        name = rec["name"]
        p = _sub(tensors, f"synthesis.{name}.")
        buffers = {"magnitude_ema": p["magnitude_ema"]}
        buffers.update({f: p[f] for f in ("up_filter", "down_filter") if f in p})
        attrs = {k: v for k, v in rec.items() if k not in ("name", "in_size", "out_size", "padding")}
        attrs.update(in_size=npa([rec["in_size"]] * 2), out_size=npa([rec["out_size"]] * 2),
                     padding=list(rec["padding"]), conv_clamp=clamp, w_dim=w_dim,
                     in_cutoff=npf(rec["in_cutoff"]), out_cutoff=npf(rec["out_cutoff"]),
                     use_fp16=np.bool_(rec.get("use_fp16", False)))
        mods[name] = make("SynthesisLayer", {"weight": p["weight"], "bias": p["bias"]}, buffers,
                          {"affine": fc(f"synthesis.{name}.affine", w_dim, rec["in_channels"], bias_init=1)},
                          attrs, dict(w_dim=w_dim, is_torgb=rec["is_torgb"], in_channels=rec["in_channels"],
                                      out_channels=rec["out_channels"]))
        for f in ("up_filter", "down_filter"):  # an identity filter is a None buffer, as torch pickles it
            mods[name].state["_buffers"].setdefault(f, None)
    syn_kwargs = {k: v for k, v in kwargs.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
    num_ws = len(layers) + 1
    synthesis = make("SynthesisNetwork", {}, {}, mods,
                     dict(w_dim=w_dim, num_ws=num_ws, img_resolution=kwargs["img_resolution"],
                          img_channels=kwargs["img_channels"], num_layers=len(layers) - 1,
                          layer_names=[r["name"] for r in layers]), syn_kwargs)
    mk = dict(kwargs.get("mapping_kwargs") or {})
    n_map = mk.get("num_layers", 2)
    c_dim = kwargs.get("c_dim", 0)
    first = z_dim + (w_dim if c_dim else 0)  # NVIDIA: the class embedding (w_dim wide) joins z at fc0
    fcs = {f"fc{i}": fc(f"mapping.fc{i}", first if i == 0 else w_dim, w_dim, "lrelu", mk.get("lr_multiplier", 0.01))
           for i in range(n_map)}
    if c_dim:
        fcs = {"embed": fc("mapping.embed", c_dim, w_dim), **fcs}
    mapping = make("MappingNetwork", {}, {"w_avg": tensors["mapping.w_avg"]}, fcs,
                   dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, num_layers=n_map, w_avg_beta=0.998),
                   dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=num_ws, **mk))
    init = dict(kwargs)
    init["mapping_kwargs"] = FakeEasyDict(mk)
    return make("Generator", {}, {}, {"synthesis": synthesis, "mapping": mapping},
                dict(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=kwargs["img_resolution"],
                     img_channels=kwargs["img_channels"], num_ws=num_ws), init)


def write_nvidia3_pkl(path: str | Path, tensors: dict, kwargs: dict, layers: list[dict], *,
                      module_src: str | None = None, numpy_style: str = "numpy2", protocol: int = 4,
                      include: tuple[str, ...] = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")) -> Path:
    """A snapshot like ``training_loop.py`` writes: ``dict(G, D, G_ema, augment_pipe, training_set_kwargs)``."""
    from checkpoint_factories import fake_discriminator

    build = dict(module_src=module_src, numpy_style=numpy_style)
    snap: dict[str, Any] = {}
    for key in include:
        if key == "G_ema":
            snap[key] = build_nvidia3_generator(tensors, kwargs, layers, **build)
        elif key == "G":
            g = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() and "filter" not in k else v
                 for k, v in tensors.items()}
            snap[key] = build_nvidia3_generator(g, kwargs, layers, **build)
        elif key == "D":
            snap[key] = fake_discriminator(module_src or SG3_MODULE_SRC.format(marker="/nonexistent/never"))
        elif key == "augment_pipe":
            snap[key] = None
        else:
            snap[key] = FakeEasyDict(class_name="training.dataset.ImageFolderDataset", path="~/datasets/afhq.zip",
                                     use_labels=False, resolution=kwargs["img_resolution"])
    return write_pickle(path, snap, protocol=protocol)


def write_pickle_obj(path: str | Path, obj: Any, protocol: int = 4) -> Path:
    """Any object tree (stubs, hostile placeholders) pickled with the test writer."""
    return write_pickle(path, obj, protocol=protocol)
