"""TF-era, conditional and dfl-cache generators through the real ComfyUI (v0.8) executor.

Files are written by the tests in their real layouts into the ComfyUI base's ``models/stylegan``;
graphs run NADA Load Generator -> NADA Sample (with and without ``class_index``) -> PreviewImage.
"""

from __future__ import annotations

import uuid

import pytest

import checkpoint_factories as cf
import tf_factories as tff
from tests.comfy_harness import ComfyWorker, prepare_base, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.comfyui, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

NV = dict(img_resolution=16, z_dim=8, w_dim=8, num_layers=2, channel_base=128, channel_max=8)


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_formats")
    prepare_base(base)
    sg = base / "models" / "stylegan"
    sg.mkdir(parents=True, exist_ok=True)
    kw = tff.tf_generator_settings()
    tff.write_tf_pkl(sg / "stylegan2-tiny-config-f.pkl", tff.tf_generator_variables(kw, seed=1), kw)
    t = cf.nvidia_generator_tensors(seed=3, c_dim=3, **NV)
    cf.write_nvidia_pkl(sg / "conditional.pkl", t, cf.nvidia_generator_kwargs(c_dim=3, **NV))
    tff.write_dfl_safetensors(sg / "dfl_cache.safetensors", t, cf.nvidia_generator_kwargs(c_dim=3, **NV))
    worker = ComfyWorker(base)
    yield worker
    worker.close()


def graph(name: str, class_index: int) -> dict:
    return {
        "1": {"class_type": "NadaLoadGenerator", "inputs": {"generator_name": name, "weights": "EMA"}},
        "2": {"class_type": "NadaSample", "inputs": {"generator": ["1", 0], "seed": 0, "batch_size": 2,
                                                      "truncation": 0.7, "class_index": class_index}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def run(comfy, prompt) -> dict:
    return comfy.call("execute", prompt=prompt, prompt_id=str(uuid.uuid4()), timeout=300)


def error_of(result):
    return next((data for e, data in result["messages"] if e == "execution_error"), None)


@pytest.mark.parametrize("name,class_index", [("stylegan2-tiny-config-f.pkl", -1), ("conditional.pkl", 2),
                                              ("dfl_cache.safetensors", 0)])
def test_new_formats_sample_in_comfyui(comfy, name, class_index):
    result = run(comfy, graph(name, class_index))
    assert result["valid"], result
    assert error_of(result) is None, error_of(result)
    assert result["success"]


def test_conditional_generator_without_a_class_is_one_clear_message(comfy):
    result = run(comfy, graph("conditional.pkl", -1))
    err = error_of(result)
    assert err is not None and err["node_type"] == "NadaSample"
    first = err["exception_message"].strip().splitlines()[0]
    assert first.startswith("NADA Sample: this generator is class-conditional (3 classes)") and "class_index" in first
