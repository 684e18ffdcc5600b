"""The frozen CLIP wrapper (:class:`ClipModel`) and weighted groups of guides (:class:`ClipEnsemble`)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from ...errors import InputError, non_negative_weight
from .preprocess import Preprocess, _as_rgb, preprocess_unit_images


_TEXT_CACHE_SIZE = 4096


def sequence_first_attention(visual) -> bool:
    """Run the image tower's attention blocks on ``[L, N, D]`` activations instead of ``[N, L, D]``.

    open_clip's ViTs keep activations batch-first, so ``nn.MultiheadAttention`` transposes them to
    ``[L, N, D]`` views and every projection runs as a batched matmul over the L tokens with N rows
    each (slow on a CPU, worst in the backward pass). With the transformer sequence-first, the
    activations are contiguous ``[L, N, D]`` and each projection is one ``[L*N, D]`` matmul: the
    same arithmetic (results equal to float rounding), about 25% less time for the image tower's
    forward + backward on one CPU thread. Applies only to towers made of ``nn.MultiheadAttention``
    blocks (others are left alone); returns whether it applied.
    """
    transformer = getattr(visual, "transformer", None)
    blocks = getattr(transformer, "resblocks", None)
    if blocks is None or not getattr(transformer, "batch_first", False):
        return False
    attns = [getattr(b, "attn", None) for b in blocks]
    if not attns or not all(isinstance(a, torch.nn.MultiheadAttention) and a.batch_first for a in attns):
        return False
    transformer.batch_first = False
    for a in attns:
        a.batch_first = False
    return True


class PatchEmbedding(torch.nn.Module):
    """A ViT's patch embedding (a convolution with kernel = stride = ``p``, no padding) as one matmul.

    ``[N, C, H, W] -> [N, D, H // p, W // p]``, equal to the convolution (pixels beyond the last whole
    patch are dropped, as there). The convolution's backward pass to its input (the image gradient
    CLIP guidance needs) is slow on a CPU (about 10x the forward at ViT-B/32); as a matmul both
    directions cost what the arithmetic costs. Keeps the convolution's parameters (same names, same
    tensors), so state dicts are unchanged.
    """

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.weight = conv.weight  # [D, C, p, p]
        self.bias = conv.bias
        self.patch = conv.kernel_size[0]

    @staticmethod
    def applies(conv) -> bool:
        return (type(conv) is torch.nn.Conv2d and conv.kernel_size[0] == conv.kernel_size[1]
                and tuple(conv.stride) == tuple(conv.kernel_size) and conv.padding in ((0, 0), "valid")
                and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.patch
        gh, gw = h // p, w // p
        patches = x[:, :, :gh * p, :gw * p].reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        y = patches.reshape(n * gh * gw, c * p * p) @ self.weight.reshape(self.weight.shape[0], -1).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(n, gh, gw, -1).permute(0, 3, 1, 2)


def patch_embedding_as_matmul(visual) -> bool:
    """Swap a ViT image tower's patch-embedding convolution (``visual.conv1``) for
    :class:`PatchEmbedding`; returns whether it applied (other towers are left alone)."""
    conv = getattr(visual, "conv1", None)
    if not PatchEmbedding.applies(conv):
        return False
    visual.conv1 = PatchEmbedding(conv)
    return True


class ClipModel:
    """A frozen CLIP model with cached text and differentiable image encoders.

    Attributes: ``name`` (``"<architecture>:<weights>"``, unique per weights), ``arch`` (open_clip
    architecture), ``source`` (weights file, folder or tag), ``image_size`` (CLIP input side in
    pixels), ``embed_dim``, ``device``, ``mean``/``std`` (RGB normalisation), ``quick_gelu``,
    ``precision``, ``model`` (the open_clip module; ``requires_grad`` off, eval mode).
    """

    def __init__(self, model, tokenizer, *, arch: str, source: str, preprocess: Preprocess,
                 device: torch.device | str = "cpu", quick_gelu: bool = False, precision: str = "fp32",
                 name: str | None = None, spec: str | None = None) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        sequence_first_attention(getattr(self.model, "visual", None))
        patch_embedding_as_matmul(getattr(self.model, "visual", None))
        self.tokenizer = tokenizer
        self.arch, self.source = arch, source
        self.name = name or f"{arch}:{source}"
        self.spec = spec or self.name
        self.preprocess = preprocess
        self.quick_gelu, self.precision = quick_gelu, precision
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.text_encoder_calls = 0  # batches sent to the text tower (caching is observable)
        self.image_encoder_calls = 0
        self.embed_dim = int(self._infer_embed_dim())

    # -- properties ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype the image tower expects its input in (that of its first conv/linear weight)."""
        visual = getattr(self.model, "visual", self.model)
        for module in visual.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                return module.weight.dtype
        return next(visual.parameters()).dtype

    @property
    def image_size(self) -> int:
        return self.preprocess.size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    def _infer_embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if isinstance(proj, torch.Tensor) and proj.ndim == 2:
            return proj.shape[1]
        visual = getattr(self.model, "visual", None)
        vproj = getattr(visual, "proj", None)
        if isinstance(vproj, torch.Tensor) and vproj.ndim == 2:
            return vproj.shape[1]
        with torch.no_grad():
            return self.encode_text(["a"]).shape[-1]

    def describe(self) -> dict:
        """JSON-able facts for provenance records."""
        return {"name": self.name, "arch": self.arch, "source": self.source, "spec": self.spec,
                "embed_dim": self.embed_dim, "image_size": self.image_size, "quick_gelu": self.quick_gelu,
                "precision": self.precision, "mean": list(self.mean), "std": list(self.std)}

    def to(self, device: torch.device | str) -> "ClipModel":
        self.model.to(device)
        self._text_cache.clear()
        return self

    def __repr__(self) -> str:
        return (f"ClipModel({self.name!r}, image_size={self.image_size}, embed_dim={self.embed_dim}, "
                f"device={self.device})")

    # -- text ---------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Prompts -> ``[T, D]`` float32 L2-normalised embeddings (no grad). Cached per text."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise InputError("no prompts to encode")
        if not all(isinstance(t, str) for t in texts):
            raise InputError("prompts must be strings")
        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if todo:
            tokens = self.tokenizer(todo).to(self.device)
            with torch.no_grad():
                emb = self.model.encode_text(tokens)
            self.text_encoder_calls += 1
            emb = F.normalize(emb.float(), dim=-1)
            for t, e in zip(todo, emb):
                self._text_cache[t] = e
                if len(self._text_cache) > _TEXT_CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        for t in texts:
            if t in self._text_cache:
                self._text_cache.move_to_end(t)
        return torch.stack([self._text_cache[t] for t in texts])

    # -- images -------------------------------------------------------------------------------
    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """Generator output ``[N, C, H, W]`` in [-1, 1] (C = 1 or 3, any size) -> ``[N, D]`` float32,
        L2-normalised, differentiable w.r.t. ``img``. Values outside [-1, 1] are not clamped, so
        saturated pixels still get gradients (as in the reference implementation)."""
        x = _as_rgb(img, "encode_image")
        return self._encode_pixels(preprocess_unit_images((x.float() + 1.0) * 0.5, self.preprocess))

    def encode_unit_images(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """User images in [0, 1]: a batch ``[N, 3, H, W]`` or a list of ``[3, H, W]`` of any sizes
        -> ``[N, D]``. Matches open_clip's PIL preprocessing (values clipped after resizing)."""
        if isinstance(images, torch.Tensor):
            batch = [_as_rgb(images, "encode_unit_images")]
        else:
            batch = [_as_rgb(im, "encode_unit_images") for im in images]
            if not batch:
                raise InputError("encode_unit_images: no images given")
        pixels = torch.cat([preprocess_unit_images(b.float().to(self.device), self.preprocess, clamp=True)
                            for b in batch])
        return self._encode_pixels(pixels)

    def encode_pil(self, images) -> torch.Tensor:
        """PIL image(s) of any mode -> ``[N, D]`` (see :func:`nada_core.media.images.pil_to_unit`)."""
        from ...media.images import pil_to_unit

        if not isinstance(images, (list, tuple)):
            images = [images]
        return self.encode_unit_images([pil_to_unit(im) for im in images])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        feats = self.model.encode_image(pixels.to(device=self.device, dtype=self.dtype))
        self.image_encoder_calls += 1
        return F.normalize(feats.float(), dim=-1)


class ClipEnsemble:
    """Several CLIP models guiding together, each with a loss weight.

    Members with weight 0 are dropped at construction (never called); their names are kept in
    ``dropped``. Weights must be finite and >= 0 with at least one > 0.
    """

    def __init__(self, members: Sequence[tuple[ClipModel, float]] | ClipModel) -> None:
        if isinstance(members, ClipModel):
            members = [(members, 1.0)]
        members = list(members)
        if not members:
            raise InputError("no CLIP model given; add at least one CLIP guide")
        kept, dropped, names = [], [], set()
        for item in members:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise InputError("CLIP guides must be (model, weight) pairs")
            model, weight = item
            weight = _check_weight(weight, getattr(model, "name", "?"))
            if weight == 0.0:
                dropped.append(getattr(model, "name", "?"))
                continue
            if model.name in names:
                raise InputError(f"CLIP model {model.name} is listed twice; list each guide once")
            names.add(model.name)
            kept.append((model, weight))
        if not kept:
            raise InputError("every CLIP model has weight 0; give at least one a weight above 0")
        self.members: list[tuple[ClipModel, float]] = kept
        self.dropped: list[str] = dropped

    @property
    def models(self) -> list[ClipModel]:
        return [m for m, _ in self.members]

    @property
    def names(self) -> list[str]:
        return [m.name for m, _ in self.members]

    @property
    def weights(self) -> dict[str, float]:
        return {m.name: w for m, w in self.members}

    def __iter__(self) -> Iterator[tuple[ClipModel, float]]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, name: str) -> ClipModel:
        for m, _ in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    def encode_text(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {m.name: m.encode_text(texts) for m, _ in self.members}

    def encode_image(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        return {m.name: m.encode_image(img) for m, _ in self.members}

    def describe(self) -> list[dict]:
        return [dict(m.describe(), weight=w) for m, w in self.members]

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.name}x{w:g}" for m, w in self.members)
        return f"ClipEnsemble([{inner}])"


def _check_weight(weight, label: str) -> float:
    return non_negative_weight(weight, f"weight of CLIP model {label}")


def as_ensemble(guide: ClipModel | ClipEnsemble) -> ClipEnsemble:
    """Wrap a single model (weight 1) or pass an ensemble through."""
    if isinstance(guide, ClipEnsemble):
        return guide
    if hasattr(guide, "encode_text") and hasattr(guide, "encode_image") and hasattr(guide, "name"):
        ens = ClipEnsemble.__new__(ClipEnsemble)
        ens.members, ens.dropped = [(guide, 1.0)], []
        return ens
    raise InputError(f"expected a ClipModel or ClipEnsemble, got {type(guide).__name__}")
