"""StyleGAN2 generator in plain PyTorch: no custom CUDA/C++ ops, no compile step.

Runs on CPU, CUDA and Apple MPS alike, and under fp16/bf16 autocast. The maths reproduces both
public reference implementations (rosinality's ``stylegan2-pytorch`` and NVIDIA's
``stylegan2-ada-pytorch``, "skip" architecture), so their checkpoints load into it unchanged
(see :mod:`nada_core.formats.checkpoints`). Everything about the architecture lives in
:class:`GeneratorConfig`, which the checkpoint loaders read from the file.

Layout and W+ indexing, for an ``R`` px generator with ``L = log2(R)``:

- ``num_ws = 2 * L - 2`` style vectors; W+ is ``[N, num_ws, w_dim]``.
- ``synthesis.convs``: ``2 * L - 3`` styled 3x3 convolutions, ``convs[i]`` driven by ``ws[:, i]``;
  ``convs[0]`` works at 4x4, then each resolution has an upsampling conv and a plain conv.
- ``synthesis.to_rgbs``: one 1x1 toRGB per resolution; ``to_rgbs[j]`` (at ``4 * 2**j`` px) is
  driven by ``ws[:, 2 * j + 1]``, the same entry as the next resolution's upsampling conv.
  The last W+ entry drives only the final toRGB.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import check_class_input

NoiseMode = Literal["const", "random", "none"]
#: How a conditional mapping network mixes the class into z (see :class:`MappingNetwork`).
C_EMBED_MODES = ("normalized", "joint")
_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Every hyper-parameter of the architecture; loaded from the checkpoint, never guessed.

    ``channels`` maps each resolution ``4, 8, ..., img_resolution`` to its feature count.
    ``conv_clamp`` clamps conv/toRGB activations to +-X (NVIDIA ADA models use 256; None = off).
    ``num_fp16_res`` is recorded from NVIDIA files for information; inference runs in float32
    unless the caller uses autocast.
    """

    img_resolution: int = 1024
    channels: tuple[tuple[int, int], ...] = ()
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_hidden: int | None = None  # None = w_dim
    mapping_lr_mul: float = 0.01
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    c_dim: int = 0  # classes of a conditional model (0 = unconditional)
    embed_features: int | None = None  # class-embedding width (None = w_dim); only with c_dim > 0
    c_embed: str = "normalized"  # "normalized" (NVIDIA SG2-ADA/SG3) or "joint" (TF StyleGAN2 LabelConcat)

    def __post_init__(self) -> None:
        from ..settings import InvalidSetting

        r = self.img_resolution
        if not (isinstance(r, int) and 8 <= r <= 1024 and r & (r - 1) == 0):
            raise InvalidSetting(f"img_resolution must be a power of two from 8 to 1024, got {r!r}")
        if not self.channels:
            object.__setattr__(self, "channels", channels_from_base(r))
        chans = dict((int(k), int(v)) for k, v in self.channels)
        expected = [2**i for i in range(2, int(math.log2(r)) + 1)]
        if sorted(chans) != expected:
            raise InvalidSetting(f"channels must give a width for each resolution {expected}, got {sorted(chans)}")
        object.__setattr__(self, "channels", tuple(sorted(chans.items())))
        if self.mapping_layers < 1:
            raise InvalidSetting("mapping_layers must be at least 1")
        if not (isinstance(self.c_dim, int) and self.c_dim >= 0):
            raise InvalidSetting(f"c_dim must be a whole number >= 0, got {self.c_dim!r}")
        if self.c_embed not in C_EMBED_MODES:
            raise InvalidSetting(f"c_embed must be one of {', '.join(C_EMBED_MODES)}, got {self.c_embed!r}")

    # Derived sizes -------------------------------------------------------------------------
    @property
    def resolutions(self) -> list[int]:
        return [res for res, _ in self.channels]

    @property
    def channel_dict(self) -> dict[int, int]:
        return dict(self.channels)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2

    @property
    def num_convs(self) -> int:
        return self.num_ws - 1

    # (De)serialisation as plain JSON-able data ----------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels}
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        d = dict(d)
        if "channels" in d and isinstance(d["channels"], dict):
            d["channels"] = tuple((int(k), int(v)) for k, v in d["channels"].items())
        elif "channels" in d:
            d["channels"] = tuple((int(k), int(v)) for k, v in d["channels"])
        if "resample_filter" in d:
            d["resample_filter"] = tuple(int(v) for v in d["resample_filter"])
        return cls(**d)


def channels_from_base(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> tuple:
    """NVIDIA's rule ``min(channel_base // res, channel_max)``; 32768/512 is config-f."""
    res_list = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    return tuple((r, min(channel_base // r, channel_max)) for r in res_list)


def channels_from_multiplier(img_resolution: int, channel_multiplier: int = 2) -> tuple:
    """rosinality's table: 512 up to 32 px, then ``256 * m, 128 * m, ...`` (m=2 is config-f)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    res_list = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    return tuple((r, table[r] * (channel_multiplier if r >= 64 else 1)) for r in res_list)


# ----------------------------------------------------------------------------------------------
# Functional building blocks
# ----------------------------------------------------------------------------------------------


def lrelu_act(x: torch.Tensor, bias: torch.Tensor | None = None, clamp: float | None = None,
              act: bool = True) -> torch.Tensor:
    """``x + bias`` (bias broadcast over dim 1), then leaky ReLU * sqrt(2), then clamp to +-clamp."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if act:
        x = F.leaky_relu(x, _LRELU_SLOPE) * _LRELU_GAIN
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def make_fir_kernel(taps: tuple[int, ...], gain: float = 1.0) -> torch.Tensor:
    """Separable 2-D low-pass kernel ``[k, k]`` from 1-D taps, normalised to sum ``gain``."""
    f = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(f, f)
    return k / k.sum() * gain


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Depthwise 2-D FIR filter of ``[N, C, H, W]`` with zero padding ``(before, after)`` per axis.

    Output size is ``H + before + after - k + 1``. The kernel is applied as a true convolution
    (flipped), which for the symmetric kernels used here equals correlation.
    """
    c = x.shape[1]
    k = kernel.flip([0, 1]).to(x.dtype)[None, None].expand(c, 1, -1, -1)
    if pad[0] == pad[1]:  # the convolution pads by itself: no padded copy of ``x`` (forward or backward)
        return F.conv2d(x, k, padding=pad[0], groups=c)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    return F.conv2d(x, k, groups=c)


def upsample_2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-insertion 2x upsampling followed by the FIR filter (kernel gain 4): ``[N,C,H,W] -> [N,C,2H,2W]``."""
    n, c, h, w = x.shape
    k = kernel.shape[-1]
    z = F.pad(x.reshape(n, c, h, 1, w, 1), [0, 1, 0, 0, 0, 1]).reshape(n, c, 2 * h, 2 * w)
    return fir_filter(z, kernel, ((k + 1) // 2, (k - 2) // 2))


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


class EqualizedLinear(nn.Module):
    """Linear layer with equalised learning rate: weights stored as ``N(0, 1) / lr_mul``,
    scaled by ``lr_mul / sqrt(in_features)`` at run time; bias scaled by ``lr_mul``."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias * self.lr_mul
        if self.activation:
            return lrelu_act(F.linear(x, w), b)
        return F.linear(x, w, b)


class MappingNetwork(nn.Module):
    """z ``[N, z_dim]`` (+ class ``c [N, c_dim]``) -> W+ ``[N, num_ws, w_dim]``.

    Pixel-norm, MLP of leaky-ReLU layers, broadcast to ``num_ws`` entries, truncation. A
    conditional model (``cfg.c_dim > 0``) has ``embed`` (linear ``c_dim -> embed_features``) and
    mixes the class in before the MLP, in one of two ways (``cfg.c_embed``):

    - ``"normalized"`` (NVIDIA stylegan2-ada / stylegan3): ``cat(norm(z), norm(embed(c)))``;
    - ``"joint"`` (TF StyleGAN2's ``LabelConcat``, no bias): ``norm(cat(z, embed(c)))``;

    where ``norm`` is the 2nd-moment normalisation. ``w_avg`` of a conditional model is the mean
    over all classes (what NVIDIA's training tracks), so truncation pulls towards the average of
    every class, not the class asked for. Reads only ``cfg`` fields (StyleGAN3 shares this class).
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        hidden = cfg.mapping_hidden or cfg.w_dim
        self.c_dim = int(getattr(cfg, "c_dim", 0) or 0)
        self.c_embed = str(getattr(cfg, "c_embed", "normalized") or "normalized")
        embed = (getattr(cfg, "embed_features", None) or cfg.w_dim) if self.c_dim else 0
        if self.c_dim:
            self.embed = EqualizedLinear(self.c_dim, embed, lr_mul=1.0)
        dims = [cfg.z_dim + embed] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        self.layers = nn.ModuleList(
            EqualizedLinear(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul, activation=True)
            for i in range(cfg.mapping_layers)
        )
        self.num_ws = cfg.num_ws
        self.z_dim = cfg.z_dim
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        c = check_class_input(self.c_dim, c, z.shape[0])
        if c is None:
            x = _norm_2nd_moment(z)
        elif self.c_embed == "joint":
            x = _norm_2nd_moment(torch.cat([z, self.embed(c.to(z.dtype))], dim=1))
        else:
            x = torch.cat([_norm_2nd_moment(z), _norm_2nd_moment(self.embed(c.to(z.dtype)))], dim=1)
        for layer in self.layers:
            x = layer(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)


def _norm_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    """``x [N, D]`` scaled to unit mean square per row (StyleGAN's pixel norm)."""
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """Move W+ codes ``[N, num_ws, w_dim]`` towards ``w_avg`` by ``psi`` on the first ``cutoff`` entries."""
    if psi == 1:
        return ws
    cutoff = ws.shape[1] if cutoff is None else max(0, min(int(cutoff), ws.shape[1]))
    head = w_avg.to(ws.dtype).lerp(ws[:, :cutoff], psi)
    return torch.cat([head, ws[:, cutoff:]], dim=1)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution (optionally demodulated, optionally 2x upsampling).

    ``x [N, in, H, W], w [N, w_dim] -> [N, out, H', W']`` with ``H' = 2H`` when ``up``.
    Per-sample weights run as one grouped convolution, or the style scaling moves onto the
    activations (same result): :meth:`grouped_is_cheaper` picks per call.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False,
                 resample_filter: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.up = demodulate, up
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.grouped: bool | None = None  # None: pick per call; True/False: force one formulation
        if up:
            self.register_buffer("resample_kernel", make_fir_kernel(resample_filter, gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n, c, h, wd = x.shape
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {c}")
        y, dcoefs = self.modulate(x, w)
        return y if dcoefs is None else y * dcoefs[:, :, None, None]

    def modulate(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution with the demodulation left to the caller: ``(y, d)`` with the result
        ``y * d[:, :, None, None]``, or ``(y, None)`` when ``y`` is already final. Lets
        :class:`SynthesisLayer` fold ``d`` into its noise/bias/activation pass."""
        styles = self.affine(w)  # [N, in]
        grouped = self.grouped
        if grouped is None:
            grouped = self.grouped_is_cheaper(x, styles)
        if grouped:
            return self._forward_grouped(x, styles), None
        return self._forward_scaled(x, styles)

    def grouped_is_cheaper(self, x: torch.Tensor, styles: torch.Tensor) -> bool:
        """Which formulation costs less for this call (both give the same result to float rounding).

        When autograd needs the styles' gradient but not the weight's (layer selection, inversion,
        compact domains), per-sample weights would need a per-sample weight gradient, a second
        convolution's worth of work: the scaled form is used. Otherwise (training the weights,
        frozen layers, no autograd) the extra work of each form is elementwise: the grouped form
        passes over the per-sample weights ``N * out * in * k * k``, the scaled form over the
        activations (scaling ``x``, and in the backward pass its gradient and the styles'), so the
        smaller of the two decides: grouped at the fine, large layers, scaled at the coarse ones.
        Both twins of a training run make the same choice for the same shapes, which keeps
        ``G_train(w) == G_frozen(w)`` bit for bit before the first update.
        """
        if torch.is_grad_enabled() and styles.requires_grad and not self.weight.requires_grad:
            return False
        return x.shape[0] * self.weight.numel() <= x.numel()

    def _forward_grouped(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """Per-sample modulated weights in one grouped convolution: fastest without autograd."""
        n, c, h, wd = x.shape
        weight = self.weight[None] * self.weight_gain * styles[:, None, :, None, None]  # [N, out, in, k, k]
        if self.demodulate:
            weight = weight * (weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        weight = weight.to(x.dtype)
        k = self.kernel_size
        if k == 1 and not self.up:
            # A 1x1 conv per sample is a batched matmul; the grouped 1x1 convolution with few output
            # channels (ToRGB) falls back to a slow generic kernel on the CPU, worst in its backward pass.
            y = torch.bmm(weight.reshape(n, self.out_channels, c), x.reshape(n, c, h * wd))
            return y.reshape(n, self.out_channels, h, wd)
        x = x.reshape(1, n * c, h, wd)
        if self.up:
            wt = weight.transpose(1, 2).reshape(n * c, self.out_channels, k, k)
            x = self._upsample_conv(x, wt, groups=n)
        else:
            x = F.conv2d(x, weight.reshape(n * self.out_channels, c, k, k), padding=k // 2, groups=n)
        return x.reshape(n, self.out_channels, *x.shape[2:])

    def _forward_scaled(self, x: torch.Tensor, styles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same maths with the style scaling moved onto the activations.

        ``conv(x * s, W) * d`` equals ``conv(x, W * s * d)`` per sample, but the convolution
        shares one weight across the batch. With autograd this avoids building a per-sample weight
        gradient: the style gradient is a cheap reduction, and when the weight itself is frozen
        (layer selection, inversion) no weight gradient is computed at all.
        """
        weight = self.weight * self.weight_gain  # [out, in, k, k]
        k = self.kernel_size
        x = x * styles.to(x.dtype)[:, :, None, None]
        w = weight.to(x.dtype)
        if self.up:
            x = self._upsample_conv(x, w.transpose(0, 1), groups=1)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        if not self.demodulate:
            return x, None
        # d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i,kh,kw] * s[n,i])^2 + eps)
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, out]
        return x, dcoefs.to(x.dtype)

    def _upsample_conv(self, x: torch.Tensor, weight_t: torch.Tensor, groups: int) -> torch.Tensor:
        """Transposed conv (stride 2) then low-pass: the standard StyleGAN2 upsampling conv."""
        k = self.kernel_size
        x = F.conv_transpose2d(x, weight_t, stride=2, groups=groups)
        f = self.resample_kernel
        pad = (len(f) - 2) - (k - 1)  # total padding so that the output is exactly 2H
        return fir_filter(x, f.to(x.device), ((pad + 1) // 2 + 1, pad // 2 + 1))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv + per-pixel noise + bias + leaky ReLU (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 up: bool = False, conv_clamp: float | None = None,
                 resample_filter: tuple[int, ...] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.resolution = resolution
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up, resample_filter=resample_filter)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        y, dcoefs = self.conv.modulate(x, w)
        # lrelu(v) * g == lrelu(v * g) for g > 0, so the gain rides along in one fused
        # multiply-add with demodulation, noise and bias: ``lrelu(g*d*y + g*(noise + bias))``.
        # (Memory passes over the big activations dominate the cost of these ops.)
        g = _LRELU_GAIN
        offset = self.bias.to(y.dtype)[:, None, None] * g  # [C, 1, 1]
        if noise_mode == "const":
            offset = offset + (self.noise_const * (self.noise_strength * g)).to(y.dtype)  # [C, H, W]
        if dcoefs is None:
            y = torch.add(offset, y, alpha=g)
        else:
            y = torch.addcmul(offset, y, dcoefs[:, :, None, None] * g)
        if noise_mode == "random":
            noise = torch.randn(y.shape[0], 1, self.resolution, self.resolution, device=y.device, dtype=y.dtype)
            y = y + noise * (self.noise_strength * g).to(y.dtype)
        y = F.leaky_relu(y, _LRELU_SLOPE)
        if self.conv_clamp is not None:
            y = y.clamp(-self.conv_clamp, self.conv_clamp)
        return y


class ToRGB(nn.Module):
    """Modulated 1x1 conv (no demodulation) + bias (+ clamp): features -> image channels."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return lrelu_act(self.conv(x, w), self.bias, self.conv_clamp, act=False)


class SynthesisNetwork(nn.Module):
    """W+ ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]`` (about [-1, 1], unclamped)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        ch = cfg.channel_dict
        res = cfg.resolutions
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        convs = [SynthesisLayer(ch[4], ch[4], cfg.w_dim, 4, conv_clamp=cfg.conv_clamp)]
        for prev, r in zip(res[:-1], res[1:]):
            convs.append(SynthesisLayer(ch[prev], ch[r], cfg.w_dim, r, up=True, conv_clamp=cfg.conv_clamp,
                                        resample_filter=cfg.resample_filter))
            convs.append(SynthesisLayer(ch[r], ch[r], cfg.w_dim, r, conv_clamp=cfg.conv_clamp))
        self.convs = nn.ModuleList(convs)
        self.to_rgbs = nn.ModuleList(ToRGB(ch[r], cfg.img_channels, cfg.w_dim, cfg.conv_clamp) for r in res)
        self.register_buffer("resample_kernel", make_fir_kernel(cfg.resample_filter, gain=4.0), persistent=False)
        assert len(self.convs) == cfg.num_convs

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const") -> torch.Tensor:
        return self.forward_from(ws, None, 0, noise_mode)

    # Blocks: the network as a chain, so a run can start or stop part-way ----------------------
    # Block 0 is the constant, convs[0] and to_rgbs[0]; block j >= 1 is convs[2j-1] (upsampling),
    # convs[2j] and to_rgbs[j] at 4 * 2**j px, plus the upsampling of the running image. The state
    # between blocks is ``(x, img)``: features [N, C, r, r] and the image so far [N, 3, r, r].
    @property
    def num_blocks(self) -> int:
        return len(self.to_rgbs)

    def block_modules(self, block: int) -> list[nn.Module]:
        """The modules holding block ``block``'s parameters (block 0 owns the constant via ``self``'s
        ``const``, which is not a module: see :meth:`block_parameter_names`)."""
        if not 0 <= block < self.num_blocks:
            raise IndexError(f"block {block} out of range 0..{self.num_blocks - 1}")
        convs = [self.convs[0]] if block == 0 else [self.convs[2 * block - 1], self.convs[2 * block]]
        return [*convs, self.to_rgbs[block]]

    def block_parameter_names(self, block: int) -> list[str]:
        """Parameter names (relative to this network, e.g. ``convs.1.bias``) of block ``block``."""
        ids = {id(p) for m in self.block_modules(block) for p in m.parameters()}
        names = [n for n, p in self.named_parameters() if id(p) in ids]
        return (["const"] if block == 0 else []) + names

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")

    def _block(self, block: int, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
               noise_mode: NoiseMode) -> tuple[torch.Tensor, torch.Tensor]:
        if block == 0:
            x = self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.convs[0](x, ws[:, 0], noise_mode)
            return x, self.to_rgbs[0](x, ws[:, 1])
        j = block
        x = self.convs[2 * j - 1](x, ws[:, 2 * j - 1], noise_mode)
        x = self.convs[2 * j](x, ws[:, 2 * j], noise_mode)
        return x, upsample_2x(img, self.resample_kernel) + self.to_rgbs[j](x, ws[:, 2 * j + 1])

    def forward_prefix(self, ws: torch.Tensor, stop: int, noise_mode: NoiseMode = "const"
                       ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Run blocks ``0 .. stop - 1``; returns the state ``(x, img)`` after them (None for ``stop=0``).

        ``forward_from(ws, forward_prefix(ws, b), b) == forward(ws)``: a caller can compute a
        prefix shared by two generators whose first ``b`` blocks are equal once (random noise
        draws in the same order as :meth:`forward`).
        """
        self._check_ws(ws)
        if not 0 <= stop <= self.num_blocks:
            raise IndexError(f"stop block {stop} out of range 0..{self.num_blocks}")
        state = None
        for b in range(stop):
            state = self._block(b, *(state or (None, None)), ws, noise_mode)
        return state

    def forward_from(self, ws: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, start: int,
                     noise_mode: NoiseMode = "const", checkpoint: bool = False) -> torch.Tensor:
        """Run blocks ``start ..`` from ``state`` (as :meth:`forward_prefix` returns; None with
        ``start=0``) and return the image ``[N, img_channels, R, R]``.

        ``checkpoint``: under autograd, store only each block's input and recompute the block in
        the backward pass (``torch.utils.checkpoint``; random noise is replayed), trading about one
        more forward pass for the activation memory of the network.
        """
        self._check_ws(ws)
        if not 0 <= start <= self.num_blocks or (start > 0) != (state is not None):
            raise ValueError(f"start block {start} needs the state after block {start - 1}" if start
                             else "start block 0 takes no state")
        x, img = state if state is not None else (None, None)
        use_ckpt = checkpoint and torch.is_grad_enabled()
        for b in range(start, self.num_blocks):
            if use_ckpt:
                from torch.utils.checkpoint import checkpoint as ckpt

                x, img = ckpt(self._block, b, x, img, ws, noise_mode, use_reentrant=False)
            else:
                x, img = self._block(b, x, img, ws, noise_mode)
        return img

    # Which modules each W+ entry drives (layer freezing relies on this) ------------------------
    def conv_for_w_index(self, index: int) -> SynthesisLayer | None:
        """The styled conv driven by ``ws[:, index]`` (None for the last index: toRGB only)."""
        self._check_index(index)
        return self.convs[index] if index < len(self.convs) else None

    def torgb_for_w_index(self, index: int) -> ToRGB | None:
        """The toRGB driven by ``ws[:, index]`` (odd indices only)."""
        self._check_index(index)
        return self.to_rgbs[(index - 1) // 2] if index % 2 == 1 else None

    def modules_for_w_index(self, index: int) -> list[nn.Module]:
        """All synthesis modules whose style comes from ``ws[:, index]``."""
        return [m for m in (self.conv_for_w_index(index), self.torgb_for_w_index(index)) if m is not None]

    def style_affines(self) -> list[tuple[str, nn.Module, int, str]]:
        """Every style affine, in W+ order of the convs then the toRGBs:
        ``(path relative to the Generator, affine module, W+ index, "conv" | "torgb")``.

        The affine's output is the style ``s`` ``[N, in_channels]`` of its modulated conv; compact
        domains (:mod:`nada_core.domains`) act on exactly these outputs, through this one contract.
        """
        out: list[tuple[str, nn.Module, int, str]] = []
        for i, layer in enumerate(self.convs):
            out.append((f"synthesis.convs.{i}.conv.affine", layer.conv.affine, i, "conv"))
        for j, rgb in enumerate(self.to_rgbs):
            out.append((f"synthesis.to_rgbs.{j}.conv.affine", rgb.conv.affine, 2 * j + 1, "torgb"))
        return out

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_ws:
            raise IndexError(f"W+ index {index} out of range 0..{self.num_ws - 1}")


class GeneratorBase(nn.Module):
    """What every generator architecture shares (StyleGAN2 here, StyleGAN3 in :mod:`.stylegan3`): the
    truncation centre, parameters by role and the ``w_avg`` estimate. Subclasses set ``mapping``,
    ``synthesis``, ``z_dim``, ``w_dim``, ``c_dim`` and implement ``parameter_roles``."""

    @property
    def w_avg(self) -> torch.Tensor:
        """Truncation centre ``[w_dim]``."""
        return self.mapping.w_avg

    def parameters_with_role(self, role: str) -> Iterator[nn.Parameter]:
        roles = self.parameter_roles()
        for name, p in self.named_parameters():
            if roles[name] == role:
                yield p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def estimate_w_avg(self, num_samples: int = 10_000, seed: int = 0, batch: int = 1000) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``num_samples`` codes drawn from a fixed seed ``[w_dim]``.

        Used as the truncation centre for files that do not store one (rosinality checkpoints
        without ``latent_avg``); deterministic for a given seed on every device. A conditional
        model's codes cycle through all classes (sample ``i`` gets class ``i % c_dim``), giving the
        all-class mean NVIDIA's training tracks.
        """
        gen = torch.Generator().manual_seed(seed)
        dev = self.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=dev)
        done = 0
        with torch.no_grad():
            while done < num_samples:
                n = min(batch, num_samples - done)
                z = torch.randn(n, self.z_dim, generator=gen).to(dev)
                c = None
                if self.c_dim:
                    c = F.one_hot(torch.arange(done, done + n) % self.c_dim, self.c_dim).float().to(dev)
                total += self.mapping(z, c)[:, 0].double().sum(dim=0)
                done += n
        return (total / num_samples).float()


class Generator(GeneratorBase):
    """StyleGAN2 generator: ``G(z) = G.synthesis(G.mapping(z))``.

    Attributes: ``z_dim, w_dim, num_ws, img_resolution, img_channels, w_avg, config``.
    """

    def __init__(self, config: GeneratorConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config if config is not None else GeneratorConfig(**kwargs)
        self.config = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.c_dim = cfg.c_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode = "const") -> torch.Tensor:
        """z ``[N, z_dim]`` (+ one-hot class ``c [N, c_dim]`` for a conditional model) -> image
        ``[N, img_channels, R, R]``, about [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    # Parameter roles ---------------------------------------------------------------------------
    def parameter_roles(self) -> dict[str, str]:
        """Map each parameter name to its role: ``mapping``, ``affine``, ``const``, ``conv``, ``torgb``.

        ``conv`` covers a styled conv's weight, bias and noise strength; ``affine`` the style
        affines of both convs and toRGBs; ``torgb`` the toRGB weights and biases.
        """
        roles = {}
        for name, _ in self.named_parameters():
            if name.startswith("mapping."):
                roles[name] = "mapping"
            elif ".affine." in name:
                roles[name] = "affine"
            elif name == "synthesis.const":
                roles[name] = "const"
            elif name.startswith("synthesis.to_rgbs."):
                roles[name] = "torgb"
            elif name.startswith("synthesis.convs."):
                roles[name] = "conv"
            else:  # pragma: no cover - guards future additions
                raise AssertionError(f"parameter {name} has no role")
        return roles
