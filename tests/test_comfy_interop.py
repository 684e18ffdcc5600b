"""The pack next to spacepxl/dfl ComfyUI-StyleGan inside the real ComfyUI (v0.8).

A stand-in of that pack is installed as a second custom node pack: its nodes have the same socket
types (``STYLEGAN`` = an NVIDIA generator module, ``STYLEGAN_LATENT`` = a raw ``[B, num_ws, w_dim]``
tensor) and hand on objects shaped like theirs (:func:`foreign_pack_factories.live_nvidia_module`;
their sampler here only checks what it receives). ComfyUI's own validation must refuse a direct
link between the packs' different payloads, and the interop nodes must carry codes and weights
across.
"""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from tests.comfy_harness import REPO, ComfyWorker, prepare_base, unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.comfyui, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

STANDIN_PACK = textwrap.dedent('''
    """Stand-in for spacepxl/dfl ComfyUI-StyleGan: same socket types, same kinds of objects."""
    import sys
    sys.path.insert(0, {tests!r})
    import torch
    import checkpoint_factories as cf
    import foreign_pack_factories as ff

    SETTINGS = dict(img_resolution=16, z_dim=16, w_dim=16, num_layers=2, channel_base=128, channel_max=16)

    class LoadStyleGAN:
        RETURN_TYPES = ("STYLEGAN",)
        FUNCTION = "load"
        CATEGORY = "StyleGAN"
        @classmethod
        def INPUT_TYPES(cls):
            return {{"required": {{"seed": ("INT", {{"default": 0}})}}}}
        def load(self, seed):
            fake = cf.build_nvidia_generator(cf.nvidia_generator_tensors(seed=seed, **SETTINGS),
                                             cf.nvidia_generator_kwargs(**SETTINGS))
            # ComfyUI itself looks at outputs (attribute lookups): only the methods are traps here.
            methods = tuple(n for n in ff._TRAPPED if not n.startswith("__"))
            return (ff.live_nvidia_module(fake, trapped=methods),)

    class GenerateStyleGANLatent:
        RETURN_TYPES = ("STYLEGAN_LATENT",)
        FUNCTION = "make"
        CATEGORY = "StyleGAN"
        @classmethod
        def INPUT_TYPES(cls):
            return {{"required": {{"batch_size": ("INT", {{"default": 2}})}}}}
        def make(self, batch_size):
            return (torch.randn(batch_size, 6, 16, generator=torch.Generator().manual_seed(1)),)

    class StyleGANSampler:
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "draw"
        CATEGORY = "StyleGAN"
        @classmethod
        def INPUT_TYPES(cls):
            return {{"required": {{"stylegan_model": ("STYLEGAN",), "stylegan_latent": ("STYLEGAN_LATENT",)}}}}
        def draw(self, stylegan_model, stylegan_latent):
            # Theirs calls stylegan_model.synthesis(stylegan_latent[i:i+1]); it needs a plain tensor.
            if type(stylegan_latent) is not torch.Tensor or list(stylegan_latent.shape[1:]) != [6, 16]:
                raise RuntimeError(f"sampler got {{type(stylegan_latent).__name__}}")
            if ff.FOREIGN_CALLS:
                raise RuntimeError(f"the model's methods were called: {{ff.FOREIGN_CALLS}}")
            return (torch.zeros(stylegan_latent.shape[0], 16, 16, 3),)

    NODE_CLASS_MAPPINGS = {{"LoadStyleGAN": LoadStyleGAN, "GenerateStyleGANLatent": GenerateStyleGANLatent,
                           "StyleGANSampler": StyleGANSampler}}
''')


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_interop")
    prepare_base(base)
    pack = base / "custom_nodes" / "ComfyUI-StyleGan"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(STANDIN_PACK.format(tests=str(REPO / "tests")), encoding="utf-8")
    worker = ComfyWorker(base)
    yield worker
    worker.close()


def node(cls, **inputs):
    return {"class_type": cls, "inputs": inputs}


def validate(comfy, prompt) -> dict:
    return comfy.call("validate", prompt=prompt, prompt_id=str(uuid.uuid4()))


def run(comfy, prompt) -> dict:
    return comfy.call("execute", prompt=prompt, prompt_id=str(uuid.uuid4()), timeout=300)


def assert_success(result):
    assert result["valid"], json.dumps(result.get("node_errors") or result.get("error"), indent=1)[:3000]
    err = next((d for e, d in result["messages"] if e == "execution_error"), None)
    assert err is None, f"{err['node_type']}: {err['exception_message']}"
    assert result["success"]


def test_both_packs_load(comfy):
    assert "NadaLatentFromStyleGAN" in comfy.boot["nada_nodes"]
    # ComfyUI's own extras may fail on optional packages (torchaudio): only what is loaded from custom_nodes
    # (the two packs) counts. (The checkout itself may be named ComfyUI-NADA, so its name alone says nothing.)
    assert not [p for p in comfy.boot["import_problems"] if "custom_nodes" in p]


@pytest.mark.parametrize("link", ["their latent -> NADA Render", "their model -> NADA Latent From Seeds",
                                  "NADA latent -> their sampler"])
def test_comfyui_refuses_a_direct_link_between_the_packs(comfy, link):
    """Different payloads under different type names: ComfyUI's validation stops the link."""
    prompt = {"1": node("LoadStyleGAN", seed=0), "2": node("GenerateStyleGANLatent", batch_size=2),
              "3": node("NadaGeneratorFromStyleGAN", stylegan_model=["1", 0])}
    if link == "their latent -> NADA Render":
        prompt["9"] = node("NadaRender", generator=["3", 0], latent=["2", 0], noise_mode="const")
    elif link == "their model -> NADA Latent From Seeds":
        prompt["4"] = node("NadaLatentFromSeeds", generator=["1", 0], seeds="0-1", truncation=0.7)
        prompt["9"] = node("NadaRender", generator=["3", 0], latent=["4", 0], noise_mode="const")
    else:
        prompt["4"] = node("NadaLatentFromSeeds", generator=["3", 0], seeds="0-1", truncation=0.7)
        prompt["9"] = node("StyleGANSampler", stylegan_model=["1", 0], stylegan_latent=["4", 0])
    prompt["10"] = node("PreviewImage", images=["9", 0])
    result = validate(comfy, prompt)
    assert not result["valid"]
    errors = [e for errs in result["node_errors"].values() for e in errs["errors"]]
    assert any(e["type"] == "return_type_mismatch" for e in errors), errors


def test_codes_and_weights_cross_between_the_packs(comfy):
    prompt = {
        "1": node("LoadStyleGAN", seed=3),
        "2": node("GenerateStyleGANLatent", batch_size=2),
        "3": node("NadaGeneratorFromStyleGAN", stylegan_model=["1", 0]),
        "4": node("NadaLatentFromStyleGAN", stylegan_latent=["2", 0], generator=["3", 0]),
        "5": node("NadaRender", generator=["3", 0], latent=["4", 0], noise_mode="const"),
        "6": node("PreviewImage", images=["5", 0]),
        "7": node("NadaLatentFromSeeds", generator=["3", 0], seeds="0-2", truncation=0.7),
        "8": node("NadaLatentToStyleGAN", latent=["7", 0], stylegan_model=["1", 0]),
        "9": node("StyleGANSampler", stylegan_model=["1", 0], stylegan_latent=["8", 0]),
        "10": node("PreviewImage", images=["9", 0]),
    }
    result = run(comfy, prompt)
    assert_success(result)
    assert {"5", "9"} <= set(result["executed"]) | set(result["executing"])
    assert len(result["history"]["outputs"]["6"]["images"]) == 2
    assert len(result["history"]["outputs"]["10"]["images"]) == 3
