"""Hostile and broken StyleGAN3 files: nothing runs, nothing big is allocated, one clear line each."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
import torch

import checkpoint_factories_sg3 as f3
from checkpoint_factories import FakePersistent
from nada_core.errors import CheckpointError, UnsafeCheckpointError
from nada_core.formats.checkpoints import load_generator, save_generator


def one_line(err: BaseException, path) -> None:
    text = str(err)
    assert "\n" not in text and str(path) in text, text


def test_module_src_that_writes_a_file_is_never_run(tmp_path):
    """The embedded source is real Python that would write a file (and import os) when executed."""
    marker = tmp_path / "pwned.txt"
    src = (f"import os\nos.system('touch {marker}')\n" + f3.SG3_MODULE_SRC.format(marker=str(marker))
           + "class SynthesisInput: pass\nclass SynthesisLayer: pass\n")
    tensors, kwargs, layers = f3.fixture_generator("t")
    path = f3.write_nvidia3_pkl(tmp_path / "stylegan3-t-ffhq-1024x1024.pkl", tensors, kwargs, layers, module_src=src)
    G = load_generator(path)
    with torch.no_grad():
        G(torch.zeros(1, G.z_dim))
    assert not marker.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_global_smuggled_into_a_layer_state_is_refused(tmp_path):
    """A layer attribute that is really ``os.system(...)``: refused before anything is called."""
    marker = tmp_path / "pwned.txt"

    class _Evil:
        def __reduce_ex__(self, protocol):
            from checkpoint_factories import _Global
            return (_Global("os", "system"), (f"touch {marker}",))

    tensors, kwargs, layers = f3.fixture_generator("r")
    G = f3.build_nvidia3_generator(tensors, kwargs, layers)
    G.state["_modules"]["synthesis"].state["_modules"][layers[2]["name"]].state["padding"] = _Evil()
    path = f3.write_pickle_obj(tmp_path / "evil.pkl", {"G_ema": G})
    with pytest.raises(UnsafeCheckpointError, match="os.system") as info:
        load_generator(path)
    one_line(info.value, path)
    assert not marker.exists()


ABSURD = {
    "num_layers": dict(num_layers=10**9),
    "channel_max": dict(channel_max=10**7, channel_base=10**9),
    "margin": dict(margin_size=10**6),
    "resolution": dict(img_resolution=2**20),
    "filter_size": dict(filter_size=10**5),
    "kernel": dict(conv_kernel=999),
    "cutoff_nan": dict(first_cutoff=float("nan")),
    "radial_text": dict(use_radial_filters="yes"),
    "mapping_depth": dict(mapping_kwargs={"num_layers": 10**6}),
    "z_dim_text": dict(z_dim="512"),
    "critical": dict(num_critical=20),
    "unknown": dict(architecture="resnet"),
}


@pytest.mark.parametrize("case", sorted(ABSURD))
def test_absurd_constructor_arguments_are_refused_quickly(tmp_path, case):
    tensors, kwargs, layers = f3.fixture_generator("t")
    G = f3.build_nvidia3_generator(tensors, kwargs, layers)
    G.state["_init_kwargs"] = {**kwargs, **ABSURD[case]}  # the constructor arguments lie
    path = f3.write_pickle_obj(tmp_path / f"{case}.pkl", {"G_ema": G})
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert time.perf_counter() - start < 10
    one_line(info.value, path)


@pytest.mark.parametrize("case,match", [
    ("padding", "padding"),
    ("layer_names", "synthesis layers"),
    ("shape", "has shape"),
    ("missing", "is missing"),
    ("extra", "different architecture"),
    ("clamp", "clamps at"),
    ("class", "not a StyleGAN3 'Generator'"),
])
def test_inconsistent_files_name_the_problem(tmp_path, case, match):
    tensors, kwargs, layers = f3.fixture_generator("t")
    tensors, kwargs, layers = dict(tensors), dict(kwargs), [dict(r) for r in layers]
    name = layers[1]["name"]
    if case == "padding":
        layers[1]["padding"] = [0, 0, 0, 0]
    elif case == "shape":
        tensors[f"synthesis.{name}.weight"] = torch.zeros(3, 3, 3, 3)
    elif case == "extra":
        tensors["synthesis.input.extra"] = torch.zeros(2)
    if case == "layer_names":
        G = f3.build_nvidia3_generator(tensors, kwargs, layers)
        G.state["_modules"]["synthesis"].state["layer_names"] = ["L0_99_1"] + [r["name"] for r in layers[1:]]
    elif case == "extra":
        G = f3.build_nvidia3_generator(tensors, kwargs, layers)
        G.state["_modules"]["synthesis"].state["_modules"]["input"].state["_buffers"]["extra"] = torch.zeros(2)
    elif case == "clamp":
        G = f3.build_nvidia3_generator(tensors, {**kwargs, "conv_clamp": 256}, layers)
        G.state["_modules"]["synthesis"].state["_modules"][name].state["conv_clamp"] = 12
    elif case == "class":
        G = f3.build_nvidia3_generator(tensors, kwargs, layers)
        G = FakePersistent("SynthesisNetwork", G.state, G.module_src)
    else:
        G = f3.build_nvidia3_generator(tensors, kwargs, layers)
    if case == "missing":
        del G.state["_modules"]["synthesis"].state["_modules"][name].state["_parameters"]["bias"]
    path = f3.write_pickle_obj(tmp_path / f"{case}.pkl", {"G_ema": G})
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(path)
    one_line(info.value, path)


def _rewrite_architecture(path, change) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    arch = json.loads(header["__metadata__"]["architecture"])
    change(arch)
    header["__metadata__"]["architecture"] = json.dumps(arch)
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + raw[8 + n:])


@pytest.mark.parametrize("field,value", [("num_layers", 10**8), ("channel_max", 10**6), ("margin_size", -5),
                                         ("conv_kernel", 1.5), ("img_resolution", 3)])
def test_safetensors_with_absurd_stylegan3_architecture_is_refused(tmp_path, field, value):
    tensors, kwargs, layers = f3.fixture_generator("t")
    G = load_generator(f3.write_nvidia3_pkl(tmp_path / "t.pkl", tensors, kwargs, layers))
    path = save_generator(G, tmp_path / "t.safetensors")
    _rewrite_architecture(path, lambda a: a.__setitem__(field, value))
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert time.perf_counter() - start < 10
    one_line(info.value, path)


def test_safetensors_claiming_stylegan2_for_stylegan3_weights_is_refused(tmp_path):
    tensors, kwargs, layers = f3.fixture_generator("t")
    G = load_generator(f3.write_nvidia3_pkl(tmp_path / "t.pkl", tensors, kwargs, layers))
    path = save_generator(G, tmp_path / "t.safetensors")
    _rewrite_architecture(path, lambda a: (a.clear(), a.update(img_resolution=16, z_dim=8, w_dim=8)))
    with pytest.raises(CheckpointError, match="do not fit") as info:
        load_generator(path)
    one_line(info.value, path)


def test_numpy1_era_snapshot_loads(tmp_path):
    """Layer sizes pickled as numpy-1 arrays under protocol 3 (older Python/numpy setups)."""
    tensors, kwargs, layers = f3.fixture_generator("r")
    path = f3.write_nvidia3_pkl(tmp_path / "old.pkl", tensors, kwargs, layers, numpy_style="numpy1", protocol=3)
    G = load_generator(path)
    assert G.config.use_radial_filters and np.isfinite(G(torch.zeros(1, G.z_dim)).detach().numpy()).all()
