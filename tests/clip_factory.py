"""Tiny random CLIP models for tests, saved in every layout :func:`nada_core.guidance.clip.load_clip` reads.

Quick use in a test::

    from tests.clip_factory import save_tiny_clip, load_tiny_clip
    spec = save_tiny_clip(tmp_path)            # "nada-tiny-clip:/tmp/.../tiny_clip.safetensors"
    clip = load_clip(spec)                     # or: clip = load_tiny_clip(tmp_path)

The tiny architecture (``nada-tiny-clip``; ``nada-tiny-clip-quickgelu`` with QuickGELU): ViT with
32 px input, patch 8, width 64, 2 layers; text transformer width 64, 2 layers, context 77 and the
real 49408-token vocabulary, so open_clip's tokenizer works; embeddings of size 32. Width 64 keeps
OpenAI's convention (one attention head per 64 channels), so the OpenAI layouts load too.

Layouts (``save_tiny_clip(dir, layout=...)`` returns the spec string):

- ``"safetensors"`` / ``"bin"``: ``<name>:<file>``; the name is registered with open_clip *in this
  process* only, so a subprocess (CLI test) cannot resolve it: use ``"hf"`` there;
- ``"hf"`` / ``"hf_bin"``: a folder with ``open_clip_config.json`` and ``open_clip_model.safetensors``
  (``open_clip_pytorch_model.bin``); self-describing, works in subprocesses;
- ``"openai_jit"``: a TorchScript archive like OpenAI's ``ViT-B-32.pt`` (traced, conv/linear
  weights in fp16, ``input_resolution``/``context_length``/``vocab_size`` entries); bare path spec;
- ``"openai_state_dict"``: ``torch.save`` of the same weights as a plain state dict; bare path spec.

The OpenAI layouts always use QuickGELU (as OpenAI's models do).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch

TINY_NAME = "nada-tiny-clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
LAYOUTS = ("safetensors", "bin", "hf", "hf_bin", "openai_jit", "openai_state_dict")

_REGISTERED: set[str] = set()
_CONFIG_DIR: Path | None = None


def tiny_clip_config(width: int = 64, image_size: int = 32, patch_size: int = 8, layers: int = 2,
                     embed_dim: int = 32, quick_gelu: bool = False) -> dict:
    """An open_clip model config (``model_cfg``) for a tiny ViT CLIP. ``width`` must be a multiple of 32."""
    head = 64 if width % 64 == 0 else 32
    cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch_size,
                       "head_width": head},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": width // head,
                     "layers": layers},
    }
    if quick_gelu:
        cfg["quick_gelu"] = True
    return cfg


def tiny_arch_name(quick_gelu: bool = False, width: int = 64, image_size: int = 32) -> str:
    name = TINY_NAME if (width, image_size) == (64, 32) else f"{TINY_NAME}-w{width}-{image_size}px"
    return name + ("-quickgelu" if quick_gelu else "")


def register_tiny_config(quick_gelu: bool = False, width: int = 64, image_size: int = 32) -> str:
    """Register the tiny config with open_clip (this process) under :func:`tiny_arch_name`; returns the name."""
    import open_clip

    global _CONFIG_DIR
    name = tiny_arch_name(quick_gelu, width, image_size)
    if name in _REGISTERED and name in open_clip.list_models():
        return name
    if _CONFIG_DIR is None:
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="nada-tiny-clip-configs-"))
    for qg in (False, True):  # register both variants so the -quickgelu switch resolves
        n = tiny_arch_name(qg, width, image_size)
        path = _CONFIG_DIR / f"{n}.json"
        path.write_text(json.dumps(tiny_clip_config(width, image_size, quick_gelu=qg)))
        open_clip.add_model_config(path)
        _REGISTERED.add(n)
    return name


def tiny_clip_model(seed: int = 0, quick_gelu: bool = False, width: int = 64, image_size: int = 32):
    """A random open_clip ``CLIP`` (eval mode) with the tiny config; same seed -> same weights.

    The global torch RNG is left untouched. Text projection and logit scale get random values, so
    different prompts give clearly different embeddings.
    """
    from open_clip.model import CLIP

    cfg = tiny_clip_config(width, image_size, quick_gelu=quick_gelu)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**copy.deepcopy(cfg))
        with torch.no_grad():  # fresh open_clip models start with some zero/identity tensors
            for name, p in model.named_parameters():
                if name.endswith("bias") and p.ndim == 1:
                    p.normal_(0.0, 0.02)
    return model.eval()


def _openai_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights the way OpenAI ships them: most tensors fp16, plus hyper-parameter entries."""
    sd = {}
    for k, v in model.state_dict().items():
        keep_fp32 = ("ln_" in k or k.endswith("embedding") or k == "logit_scale" or ".ln" in k)
        sd[k] = v.clone() if keep_fp32 else v.half()
    sd["input_resolution"] = torch.tensor(model.visual.image_size[0])
    sd["context_length"] = torch.tensor(model.context_length)
    sd["vocab_size"] = torch.tensor(model.vocab_size)
    return sd


def _save_openai_jit(model, path: Path) -> None:
    """Trace a copy of ``model`` (whose keys already follow OpenAI's naming) and save it like OpenAI did."""
    model = copy.deepcopy(model).eval()
    size, context, vocab = model.visual.image_size[0], model.context_length, model.vocab_size
    # OpenAI's archives hold these hyper-parameters as 0-d tensors next to the weights.
    del model.context_length, model.vocab_size
    model.register_buffer("input_resolution", torch.tensor(size))
    model.register_buffer("context_length", torch.tensor(context))
    model.register_buffer("vocab_size", torch.tensor(vocab))
    image = torch.zeros(1, 3, size, size)
    text = torch.zeros(1, context, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(model, {"forward": (image, text), "encode_image": (image,),
                                                "encode_text": (text,)}, check_trace=False)
        with torch.no_grad():  # OpenAI's files keep conv/linear/projection weights in fp16
            for name, p in traced.named_parameters():
                if not ("ln_" in name or name.endswith("embedding") or name == "logit_scale"):
                    p.data = p.data.half()
        torch.jit.save(traced, str(path))


def save_tiny_clip(directory: str | os.PathLike, layout: str = "safetensors", seed: int = 0,
                   quick_gelu: bool = False, model=None) -> str:
    """Write a tiny CLIP to ``directory`` in ``layout`` and return the spec string for ``load_clip``.

    ``model``: an open_clip CLIP to save instead of ``tiny_clip_model(seed, quick_gelu)`` (it must
    have the tiny config for the named layouts). The OpenAI layouts always imply QuickGELU, so the
    default model there is built with ``quick_gelu=True``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {LAYOUTS}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if layout.startswith("openai"):
        quick_gelu = True
    if model is None:
        model = tiny_clip_model(seed=seed, quick_gelu=quick_gelu)
    width = int(model.visual.conv1.weight.shape[0])
    image_size = int(model.visual.image_size[0])
    tag = f"s{seed}{'-qg' if quick_gelu else ''}"
    if layout in ("safetensors", "bin"):
        from safetensors.torch import save_file

        name = register_tiny_config(quick_gelu, width, image_size)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if layout == "safetensors":
            path = directory / f"tiny_clip_{tag}.safetensors"
            save_file(sd, str(path))
        else:
            path = directory / f"tiny_clip_{tag}.bin"
            torch.save(sd, path)
        return f"{name}:{path}"
    if layout in ("hf", "hf_bin"):
        from safetensors.torch import save_file

        folder = directory / f"tiny-clip-hf-{tag}{'-bin' if layout == 'hf_bin' else ''}"
        folder.mkdir(exist_ok=True)
        config = {"model_cfg": tiny_clip_config(width, image_size, quick_gelu=quick_gelu),
                  "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                                     "interpolation": "bicubic", "resize_mode": "shortest"}}
        (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if layout == "hf":
            save_file(sd, str(folder / "open_clip_model.safetensors"))
        else:
            torch.save(sd, folder / "open_clip_pytorch_model.bin")
        return str(folder)
    if layout == "openai_jit":
        path = directory / f"ViT-tiny-{tag}.pt"
        _save_openai_jit(model, path)
        return str(path)
    path = directory / f"ViT-tiny-{tag}-state-dict.pt"
    torch.save(_openai_state_dict(model), path)
    return str(path)


def load_tiny_clip(directory: str | os.PathLike, layout: str = "safetensors", seed: int = 0,
                   quick_gelu: bool = False, device: str = "cpu"):
    """``load_clip(save_tiny_clip(...))`` in one call: a ready :class:`nada_core.guidance.clip.ClipModel`."""
    from nada_core.guidance.clip import load_clip

    return load_clip(save_tiny_clip(directory, layout=layout, seed=seed, quick_gelu=quick_gelu), device=device)
