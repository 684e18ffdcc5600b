"""StyleGAN3 ("Alias-Free GAN") generator in plain PyTorch, both -T and -R configurations.

The same interface as :class:`nada_core.models.stylegan2.Generator` (``mapping``, ``synthesis``,
``num_ws``, ``w_avg``, the W+ index -> layer map, parameter roles), so sampling, truncation,
latents, interpolation, inversion, training and the nodes work on it unchanged. The mapping
network is the StyleGAN2 one (same maths in NVIDIA's stylegan3 code: normalised z, ``lr_mul``
0.01 fully connected leaky-ReLU layers, ``w_avg``, broadcast, truncation with cutoff).

Layout and W+ indexing, with ``L = num_layers`` (14 in NVIDIA's configs)::

    ws[:, 0]           -> synthesis.input       Fourier features; its affine gives a rotation + translation
    ws[:, i + 1]       -> synthesis.L{i}_{size}_{ch}  for i < L (modulated conv + filtered leaky ReLU)
    ws[:, L + 1]       -> synthesis.L{L}_{R}_{img_channels}  (toRGB: 1x1 modulated conv, linear)

so ``num_ws = L + 2``. Module names equal NVIDIA's, so the state dict of a ``.pkl`` maps by name
(mapping ``fc{i}`` aside). Every layer's sizes, sampling rates, cutoffs and filters follow from
:class:`StyleGAN3Config` exactly as in the paper's Appendix (see :func:`layer_specs`).

Parameter roles: ``mapping``; ``affine`` (every style affine, the input layer's included);
``const`` = the input layer's learned channel mixing ``synthesis.input.weight`` (it plays the
part of StyleGAN2's learned constant: the one parameter before the first styled conv);
``conv`` = weight and bias of layers ``L0 .. L{L-1}``; ``torgb`` = weight and bias of the last.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .sg3_filters import design_lowpass, filtered_lrelu
from .stylegan2 import EqualizedLinear, GeneratorBase, MappingNetwork, NoiseMode

ARCHITECTURE = "stylegan3"


@dataclasses.dataclass(frozen=True)
class StyleGAN3Config:
    """Every constructor argument of NVIDIA's ``networks_stylegan3.Generator`` (their defaults).

    -T: ``conv_kernel=3``; -R: ``conv_kernel=1, use_radial_filters=True`` and doubled channels.
    ``num_fp16_res`` is recorded for information; inference runs in float32 unless the caller
    uses autocast. ``magnitude_ema_beta`` and ``w_avg_beta`` only matter for training NVIDIA's
    way; here the stored ``magnitude_ema`` buffers are read, never updated.
    """

    img_resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    c_dim: int = 0  # classes of a conditional model (0 = unconditional)
    embed_features: int | None = None  # class-embedding width: NVIDIA's stylegan3 always uses w_dim
    c_embed: str = "normalized"  # the class joins the mapping as NVIDIA's networks_stylegan3 does
    mapping_layers: int = 2
    mapping_hidden: int | None = None  # NVIDIA's stylegan3 mapping uses w_dim throughout
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2 ** 2.1
    last_stopband_rel: float = 2 ** 0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256.0
    magnitude_ema_beta: float = 0.999

    def __post_init__(self) -> None:
        from ..settings import InvalidSetting

        r = self.img_resolution
        if not (isinstance(r, int) and 8 <= r <= 4096):
            raise InvalidSetting(f"img_resolution must be a whole number from 8 to 4096, got {r!r}")
        if not (isinstance(self.num_layers, int) and 1 <= self.num_layers):
            raise InvalidSetting(f"num_layers must be at least 1, got {self.num_layers!r}")
        if not (isinstance(self.num_critical, int) and 0 <= self.num_critical < self.num_layers):
            raise InvalidSetting(f"num_critical must be from 0 to num_layers - 1, got {self.num_critical!r}")
        if self.mapping_layers < 1:
            raise InvalidSetting("mapping_layers must be at least 1")
        if self.conv_kernel < 1 or self.filter_size < 1 or self.lrelu_upsampling < 1:
            raise InvalidSetting("conv_kernel, filter_size and lrelu_upsampling must be at least 1")
        if not (self.first_cutoff > 0 and self.first_stopband > 0 and self.last_stopband_rel > 0):
            raise InvalidSetting("first_cutoff, first_stopband and last_stopband_rel must be positive")
        layer_specs(self)  # raises InvalidSetting when the sampling rates do not fit together

    @property
    def architecture(self) -> str:
        return ARCHITECTURE

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    @property
    def resolutions(self) -> list[int]:
        return [self.img_resolution]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["architecture"] = ARCHITECTURE
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN3Config":
        d = dict(d)
        if d.pop("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise ValueError("not a StyleGAN3 config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Derived sizes of synthesis layer ``idx`` (``idx == num_layers`` is toRGB)."""

    idx: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    channels: int
    size: int
    sampling_rate: float
    bandwidth: float


def _plan(cfg: StyleGAN3Config) -> dict:
    """Per-layer cutoffs, stop-bands, sampling rates, sizes and widths (float64, the paper's Appendix)."""
    n, res = cfg.num_layers, cfg.img_resolution
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    # The first num_layers - num_critical layers move geometrically from the first to the last
    # cutoff; the critically sampled ones at the end stay at the last.
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    return dict(cutoffs=cutoffs, rates=rates, half_widths=half_widths, sizes=sizes, channels=channels)


def input_spec(cfg: StyleGAN3Config) -> InputSpec:
    p = _plan(cfg)
    return InputSpec(int(p["channels"][0]), int(p["sizes"][0]), float(p["rates"][0]), float(p["cutoffs"][0]))


def layer_specs(cfg: StyleGAN3Config) -> list[LayerSpec]:
    """The ``num_layers + 1`` synthesis layers' derived sizes (pure arithmetic, nothing allocated)."""
    from ..settings import InvalidSetting

    p = _plan(cfg)
    specs = []
    for idx in range(cfg.num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == cfg.num_layers
        crit = idx >= cfg.num_layers - cfg.num_critical
        in_rate, out_rate = int(p["rates"][prev]), int(p["rates"][idx])
        tmp_rate = max(in_rate, out_rate) * (1 if is_torgb else cfg.lrelu_upsampling)
        up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
        if in_rate * up != tmp_rate or out_rate * down != tmp_rate:
            raise InvalidSetting(f"layer {idx}: sampling rates {in_rate} -> {out_rate} are not integer multiples; "
                                 f"img_resolution {cfg.img_resolution} does not fit these cutoffs")
        up_taps = cfg.filter_size * up if up > 1 and not is_torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not is_torgb else 1
        kernel = 1 if is_torgb else cfg.conv_kernel
        in_size, out_size = int(p["sizes"][prev]), int(p["sizes"][idx])
        # Appendix C.3: pad so that the output grid sits symmetrically on the input grid.
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        hi = total - lo
        out_ch = int(p["channels"][idx])
        specs.append(LayerSpec(
            idx=idx, name=f"L{idx}_{out_size}_{out_ch}", is_torgb=is_torgb, is_critically_sampled=crit,
            in_channels=int(p["channels"][prev]), out_channels=out_ch, in_size=in_size, out_size=out_size,
            in_sampling_rate=in_rate, out_sampling_rate=out_rate,
            in_cutoff=float(p["cutoffs"][prev]), out_cutoff=float(p["cutoffs"][idx]),
            in_half_width=float(p["half_widths"][prev]), out_half_width=float(p["half_widths"][idx]),
            conv_kernel=kernel, up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=bool(cfg.use_radial_filters and not crit), padding=(int(lo), int(hi), int(lo), int(hi))))
    return specs


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


class SynthesisInput(nn.Module):
    """Fourier features ``[N, C, size, size]`` steered by ``w [N, w_dim]`` (rotation + translation).

    Buffers: ``freqs [C, 2]`` and ``phases [C]`` (random at construction, stored in files) and
    ``transform [3, 3]``, the user's inverse transform of the output image (identity).
    """

    def __init__(self, w_dim: int, spec: InputSpec) -> None:
        super().__init__()
        c = spec.channels
        self.channels, self.size = c, spec.size
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        freqs = torch.randn([c, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * spec.bandwidth  # uniform-ish in a disc
        self.weight = nn.Parameter(torch.randn([c, c]))
        self.affine = EqualizedLinear(w_dim, 4)
        with torch.no_grad():  # starts as the identity transform: rotation (1, 0), translation (0, 0)
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([c]) - 0.5)

    def forward(self, w: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        n, dev = w.shape[0], w.device
        user = self.transform if transform is None else transform.to(device=dev, dtype=torch.float32)
        t = self.affine(w.float())  # [N, 4] = (cos, sin, tx, ty), up to scale
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        c, s, tx, ty = t.unbind(dim=1)
        one, zero = torch.ones_like(c), torch.zeros_like(c)
        # Inverse rotation, then inverse translation, then the user's transform (all wrt. the image).
        m_r = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=1).reshape(n, 3, 3)
        m_t = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).reshape(n, 3, 3)
        m = m_r @ m_t @ user.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)  # [N, C]
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]  # [N, C, 2]
        # Frequencies pushed out of band by the user's transform fade out instead of aliasing.
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Pixel centres of a size x size grid, in units of the sampling period.
        g = (torch.arange(self.size, device=dev, dtype=torch.float32) + 0.5 - self.size / 2) / self.sampling_rate
        x = g.reshape(1, 1, -1, 1) * freqs[:, None, None, :, 0] + g.reshape(1, -1, 1, 1) * freqs[:, None, None, :, 1]
        x = torch.sin((x + phases[:, None, None, :]) * (2 * math.pi)) * amp[:, None, None, :]  # [N, H, W, C]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer3(nn.Module):
    """Modulated conv (1x1 for toRGB / -R) followed by the filtered leaky ReLU.

    ``x [N, in, in_size, in_size], w [N, w_dim] -> [N, out, out_size, out_size]``. The style is
    ``affine(w)`` (``[N, in_channels]``; for toRGB scaled by ``1/sqrt(in)``). Parameters
    ``weight, bias, affine.*``; buffers ``magnitude_ema`` (input magnitude, read-only here),
    ``up_filter`` / ``down_filter`` (absent when the layer does not resample).
    """

    def __init__(self, w_dim: int, spec: LayerSpec, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.spec = spec
        self.is_torgb = spec.is_torgb
        self.in_channels, self.out_channels, self.conv_kernel = spec.in_channels, spec.out_channels, spec.conv_kernel
        self.conv_clamp = cfg.conv_clamp
        self.affine = EqualizedLinear(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn([spec.out_channels, spec.in_channels, spec.conv_kernel,
                                                spec.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        tmp_rate = spec.in_sampling_rate * spec.up_factor
        up = design_lowpass(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_rate)
        down = design_lowpass(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, tmp_rate,
                              radial=spec.down_radial)
        self.register_buffer("up_filter", up)
        self.register_buffer("down_filter", down)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [N, in]
        weight = self.weight.float()
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
            y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.conv_kernel - 1)
            y = y * self.magnitude_ema.rsqrt().to(y.dtype)
        else:
            y = self._demodulated_conv(x, weight, styles)
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        s = self.spec
        return filtered_lrelu(y, self.up_filter, self.down_filter, self.bias, s.up_factor, s.down_factor,
                              s.padding, gain, slope, self.conv_clamp)

    def _demodulated_conv(self, x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """``conv(x, W * s * d) * input_gain`` per sample, with the style moved onto the activations.

        NVIDIA first normalises the weight (per output, RMS 1) and the styles (RMS over the whole
        batch); demodulation divides both scales out again except for its ``1e-8``, which is why
        they are kept. ``conv(x * s, W) * d`` shares one weight over the batch, so backward never
        builds a per-sample weight gradient.
        """
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
        # d[n, o] = rsqrt(sum_{i,kh,kw} (W[o,i,kh,kw] * s[n,i])^2 + eps)
        d = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, out]
        d = d * self.magnitude_ema.rsqrt()
        y = F.conv2d(x * styles[:, :, None, None].to(x.dtype), weight.to(x.dtype), padding=self.conv_kernel - 1)
        return y * d[:, :, None, None].to(y.dtype)


class SynthesisNetwork3(nn.Module):
    """W+ ``[N, num_ws, w_dim]`` -> image ``[N, img_channels, R, R]`` (about [-1, 1], unclamped)."""

    def __init__(self, cfg: StyleGAN3Config) -> None:
        super().__init__()
        self.num_ws, self.w_dim = cfg.num_ws, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.output_scale = cfg.output_scale
        self.input = SynthesisInput(cfg.w_dim, input_spec(cfg))
        self.layer_names: list[str] = []
        for spec in layer_specs(cfg):
            self.add_module(spec.name, SynthesisLayer3(cfg.w_dim, spec, cfg))
            self.layer_names.append(spec.name)

    @property
    def layers(self) -> list[SynthesisLayer3]:
        return [getattr(self, name) for name in self.layer_names]

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "const",
                input_transform: torch.Tensor | None = None) -> torch.Tensor:
        """``noise_mode`` is accepted for interface compatibility (StyleGAN3 has no noise inputs);
        ``input_transform`` ``[3, 3]`` replaces ``input.transform`` for this call (same meaning as
        NVIDIA's ``synthesis.input.transform``: the inverse of the wanted image transform)."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if input_transform is not None and tuple(input_transform.shape) != (3, 3):
            raise ValueError(f"input_transform must be a [3, 3] matrix, got {list(input_transform.shape)}")
        dtype = ws.dtype
        x = self.input(ws[:, 0], input_transform).to(dtype)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i + 1])
        return x * self.output_scale if self.output_scale != 1 else x

    # Which modules each W+ entry drives (layer freezing relies on this) ------------------------
    def conv_for_w_index(self, index: int) -> SynthesisLayer3 | None:
        """The styled conv layer driven by ``ws[:, index]`` (None for 0: input, and the last: toRGB)."""
        self._check_index(index)
        return self.layers[index - 1] if 1 <= index < self.num_ws - 1 else None

    def torgb_for_w_index(self, index: int) -> SynthesisLayer3 | None:
        """The toRGB layer, driven by the last W+ entry only."""
        self._check_index(index)
        return self.layers[-1] if index == self.num_ws - 1 else None

    def input_for_w_index(self, index: int) -> SynthesisInput | None:
        self._check_index(index)
        return self.input if index == 0 else None

    def modules_for_w_index(self, index: int) -> list[nn.Module]:
        """All synthesis modules whose style comes from ``ws[:, index]``."""
        mods = (self.input_for_w_index(index), self.conv_for_w_index(index), self.torgb_for_w_index(index))
        return [m for m in mods if m is not None]

    def style_affines(self) -> list[tuple[str, nn.Module, int, str]]:
        """``(parameter-path prefix relative to G, affine, W+ index, "conv" | "torgb")`` for every layer
        whose style is one value per input channel of a modulated conv (the input layer's 4-value
        rotation/translation affine is not one of them)."""
        return [(f"synthesis.{name}.affine", layer.affine, i + 1, "torgb" if layer.is_torgb else "conv")
                for i, (name, layer) in enumerate(zip(self.layer_names, self.layers))]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_ws:
            raise IndexError(f"W+ index {index} out of range 0..{self.num_ws - 1}")


class StyleGAN3Generator(GeneratorBase):
    """StyleGAN3 generator: ``G(z) = G.synthesis(G.mapping(z))``.

    Attributes: ``z_dim, w_dim, num_ws, img_resolution, img_channels, w_avg, config``.
    """

    def __init__(self, config: StyleGAN3Config | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config if config is not None else StyleGAN3Config(**kwargs)
        self.config = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.c_dim = cfg.c_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork3(cfg)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: NoiseMode = "const",
                input_transform: torch.Tensor | None = None) -> torch.Tensor:
        """z ``[N, z_dim]`` (+ one-hot class ``c [N, c_dim]`` for a conditional model) -> image
        ``[N, img_channels, R, R]``, about [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, input_transform=input_transform)

    def parameter_roles(self) -> dict[str, str]:
        """Map each parameter name to ``mapping``, ``affine``, ``const``, ``conv`` or ``torgb`` (module docstring)."""
        torgb = f"synthesis.{self.synthesis.layer_names[-1]}."
        roles = {}
        for name, _ in self.named_parameters():
            if name.startswith("mapping."):
                roles[name] = "mapping"
            elif ".affine." in name:
                roles[name] = "affine"
            elif name == "synthesis.input.weight":
                roles[name] = "const"
            elif name.startswith(torgb):
                roles[name] = "torgb"
            elif name.startswith("synthesis.L"):
                roles[name] = "conv"
            else:  # pragma: no cover - guards future additions
                raise AssertionError(f"parameter {name} has no role")
        return roles
