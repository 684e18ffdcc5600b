"""The IR-SE backbone and the style heads of e4e / pSp / ReStyle, built from an :class:`EncoderLayout`.

Parameter names follow the checkpoints' ``encoder.*`` layout (the file format), so a state dict
loads with ``strict=True``; the layout itself is described in :mod:`nada_core.encoders.layout`.
Everything runs in eval mode (BatchNorm with the stored running statistics).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layout import FPN_TYPES, EncoderLayout, HeadLayout, UnitLayout


class Squeeze(nn.Module):
    """Squeeze-excitation: channel gates ``sigmoid(fc2(relu(fc1(mean over space))))`` (no biases)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class Subsample(nn.Module):
    """Identity shortcut at stride ``s``: every ``s``-th pixel (a 1x1 max-pool, no weights)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x


class Unit(nn.Module):
    """Bottleneck unit ``shortcut(x) + res(x)``; ``res`` = BN, 3x3 conv, PReLU, 3x3 conv (stride),
    BN and, for ``ir_se``, squeeze-excitation. ``[N, in, H, W] -> [N, depth, H/stride, W/stride]``."""

    def __init__(self, u: UnitLayout) -> None:
        super().__init__()
        if u.projection:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(u.in_channels, u.depth, 1, u.stride, bias=False),
                                                nn.BatchNorm2d(u.depth))
        else:
            self.shortcut_layer = Subsample(u.stride)
        layers = [nn.BatchNorm2d(u.in_channels), nn.Conv2d(u.in_channels, u.depth, 3, 1, 1, bias=False),
                  nn.PReLU(u.depth), nn.Conv2d(u.depth, u.depth, 3, u.stride, 1, bias=False), nn.BatchNorm2d(u.depth)]
        if u.se_channels:
            layers.append(Squeeze(u.depth, u.se_channels))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut_layer(x) + self.res_layer(x)


class EqualLinear(nn.Module):
    """Linear layer with the weight scaled by ``1/sqrt(in)`` at run time (StyleGAN's equalised lr, lr_mul 1)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * (1.0 / math.sqrt(self.weight.shape[1])), self.bias)


class StyleHead(nn.Module):
    """map2style: ``convs`` x (3x3 stride-2 conv + LeakyReLU 0.01), flatten the 1x1 map, equalised linear.
    ``[N, C, S, S] -> [N, w_dim]`` (S reaches 1 after the convs for the maps it is meant for)."""

    def __init__(self, h: HeadLayout) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(h.convs):
            layers += [nn.Conv2d(h.in_channels if i == 0 else h.channels, h.channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(h.channels, h.w_dim)
        self.channels = h.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.channels))


def _up_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    """Feature-pyramid merge: ``top`` resized (bilinear, corners aligned) to ``lateral``'s size, plus it."""
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class EncoderNet(nn.Module):
    """Backbone + heads. ``forward(x [N, input_nc, H, W]) -> [N, num_ws, w_dim]`` raw codes
    (offsets from the encoder's starting code: the caller adds ``latent_avg`` or the previous step)."""

    def __init__(self, layout: EncoderLayout) -> None:
        super().__init__()
        self.layout = layout
        self.input_layer = nn.Sequential(nn.Conv2d(layout.input_nc, layout.stem, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(layout.stem), nn.PReLU(layout.stem))
        self.body = nn.Sequential(*[Unit(u) for u in layout.units])
        self.styles = nn.ModuleList([StyleHead(h) for h in layout.heads])
        if layout.encoder_type in FPN_TYPES:
            (in1, out1), (in2, out2) = layout.laterals
            self.latlayer1 = nn.Conv2d(in1, out1, 1)
            self.latlayer2 = nn.Conv2d(in2, out2, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps the heads read, finest first: ``[p1, p2, c3]`` (FPN) or ``[c3]`` (backbone)."""
        x = self.input_layer(x)
        taps = set(self.layout.stage_ends[-3:])
        kept = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in taps:
                kept.append(x)
        c1, c2, c3 = kept
        if self.layout.encoder_type not in FPN_TYPES:
            return [c3, c3, c3]
        p2 = _up_add(c3, self.latlayer1(c2))
        p1 = _up_add(p2, self.latlayer2(c1))
        return [p1, p2, c3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        heads = self.styles
        if not self.layout.progressive:
            return torch.stack([h(maps[spec.level]) for h, spec in zip(heads, self.layout.heads)], dim=1)
        # e4e: entry 0 is a W code shared by every layer; each later entry adds its own offset.
        base = heads[0](maps[self.layout.heads[0].level])
        rows = [base] + [base + h(maps[spec.level]) for h, spec in zip(heads[1:], self.layout.heads[1:])]
        return torch.stack(rows, dim=1)


__all__ = ["EncoderNet", "EqualLinear", "StyleHead", "Unit"]
