"""What an encoder checkpoint's ``encoder.*`` tensors say about the network that made them.

The e4e / pSp / ReStyle encoders share one backbone, an IR-SE ResNet (ArcFace style): a 3x3
input conv + BatchNorm + PReLU, then ``body.{i}`` bottleneck units in four stages of growing width
(64, 128, 256, 512 for the released models; the first unit of each stage halves the resolution).
How many units each stage has (3/4/14/3 = "IR-SE50", 3/13/30/3 = 100, 3/8/36/3 = 152), whether the
units carry squeeze-excitation (``ir_se``) or not (``ir``), the input channels (3, or 6 for
ReStyle's image + previous reconstruction) and the widths are all read from the tensor names and
shapes here, never assumed; :func:`read_layout` refuses, in one line, what no known head fits.

Heads (``styles.{k}`` = one "map2style" block per W+ entry: stride-2 3x3 convs + LeakyReLU down to
1x1, then an equalised linear layer):

- ``GradualStyleEncoder`` (pSp) and ``Encoder4Editing`` (e4e): feature-pyramid heads on the last
  three stages (``latlayer1``/``latlayer2`` lateral 1x1 convs); entries 0-2 read the coarsest map,
  3-6 the middle one, 7+ the finest. e4e predicts entry 0 and adds per-entry offsets to it.
- ``BackboneEncoder`` (ReStyle-pSp) and ``ProgressiveBackboneEncoder`` (ReStyle-e4e): every entry
  reads the last stage's map; the progressive one again adds offsets to entry 0.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from ..errors import CheckpointError
from ..formats.limits import check_encoder_layout

FPN_TYPES = ("GradualStyleEncoder", "Encoder4Editing")
BACKBONE_TYPES = ("BackboneEncoder", "ProgressiveBackboneEncoder")
ENCODER_TYPES = FPN_TYPES + BACKBONE_TYPES
#: Encoder types whose first entry is a W code and the others offsets added to it (e4e's design).
PROGRESSIVE_TYPES = ("Encoder4Editing", "ProgressiveBackboneEncoder")
#: W+ entries fed by the coarse / middle pyramid levels in the FPN heads (fixed by the architecture).
COARSE_END, MIDDLE_END = 3, 7
#: Unit counts per stage of the three standard depths (for naming only; any count is built).
STANDARD_DEPTHS = {(3, 4, 14, 3): 50, (3, 13, 30, 3): 100, (3, 8, 36, 3): 152}


@dataclasses.dataclass(frozen=True)
class UnitLayout:
    """One bottleneck unit: ``in_channels -> depth`` at ``stride`` (1 or 2); ``projection``: the
    shortcut is a 1x1 conv + BatchNorm (otherwise a plain subsampling); ``se_channels``: width of
    the squeeze-excitation bottleneck (0 = plain ``ir`` unit)."""

    in_channels: int
    depth: int
    stride: int
    projection: bool
    se_channels: int


@dataclasses.dataclass(frozen=True)
class HeadLayout:
    """One map2style block: ``convs`` stride-2 convs of width ``channels`` then a linear
    ``channels -> w_dim``; ``level`` 0/1/2 = which feature map it reads (2 = last stage)."""

    in_channels: int
    channels: int
    convs: int
    w_dim: int
    level: int


@dataclasses.dataclass(frozen=True)
class EncoderLayout:
    """The whole encoder: ``encoder_type`` (one of :data:`ENCODER_TYPES`), ``input_nc`` (3 or 6),
    ``stem`` width, ``units`` of the body, stage ends (indices of the last unit of each stage),
    ``heads`` (one per W+ entry) and, for the FPN types, the lateral convs' ``(in, out)`` widths."""

    encoder_type: str
    input_nc: int
    stem: int
    units: tuple[UnitLayout, ...]
    stage_ends: tuple[int, ...]
    heads: tuple[HeadLayout, ...]
    laterals: tuple[tuple[int, int], ...]

    @property
    def num_ws(self) -> int:
        return len(self.heads)

    @property
    def w_dim(self) -> int:
        return self.heads[0].w_dim

    @property
    def mode(self) -> str:
        return "ir_se" if self.units[0].se_channels else "ir"

    @property
    def stage_units(self) -> tuple[int, ...]:
        starts = (-1,) + self.stage_ends[:-1]
        return tuple(e - s for s, e in zip(starts, self.stage_ends))

    @property
    def depth_name(self) -> str:
        """``"IR-SE50"`` etc. for the standard depths, else ``"IR-SE(3+4+2+1 units)"``."""
        n = STANDARD_DEPTHS.get(self.stage_units)
        base = "IR-SE" if self.mode == "ir_se" else "IR"
        return f"{base}{n}" if n else f"{base}({'+'.join(map(str, self.stage_units))} units)"

    @property
    def progressive(self) -> bool:
        return self.encoder_type in PROGRESSIVE_TYPES


def _shape(sd: dict, name: str, ndim: int, source: str) -> tuple[int, ...]:
    t = sd.get(name)
    if not isinstance(t, torch.Tensor):
        raise CheckpointError(f"{source}: encoder tensor '{name}' is missing; the file is not a complete "
                              f"e4e/pSp/ReStyle encoder")
    if t.dim() != ndim:
        raise CheckpointError(f"{source}: encoder tensor '{name}' has shape {list(t.shape)}, expected {ndim} "
                              f"dimensions; the file is corrupt")
    return tuple(int(d) for d in t.shape)


def _indices(sd: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.fullmatch(k))})


def _contiguous(found: list[int], what: str, source: str) -> int:
    if not found or found != list(range(len(found))):
        raise CheckpointError(f"{source}: the encoder's {what} are missing or not numbered 0..n (found "
                              f"{found[:8]}); the file is not an e4e/pSp/ReStyle encoder")
    return len(found)


def read_layout(sd: dict[str, Any], encoder_type: str, source: str) -> EncoderLayout:
    """The :class:`EncoderLayout` of an ``encoder.*`` state dict (prefix removed).

    ``encoder_type`` comes from the checkpoint's ``opts``; the tensors must fit it. Sizes are
    bounded by :func:`~nada_core.formats.limits.check_encoder_layout` before anything is built.
    """
    if encoder_type not in ENCODER_TYPES:
        known = ", ".join(ENCODER_TYPES)
        raise CheckpointError(f"{source}: encoder type '{encoder_type}' is not supported (supported: {known}; "
                              f"ResNet34-based ReStyle encoders are not)")
    stem, input_nc, kh, kw = _shape(sd, "input_layer.0.weight", 4, source)
    if (kh, kw) != (3, 3):
        raise CheckpointError(f"{source}: the encoder's input conv is {kh}x{kw}, not the IR-SE 3x3; unsupported "
                              f"backbone")
    n_units = _contiguous(_indices(sd, r"body\.(\d+)\.res_layer\.1\.weight"), "body units 'body.N'", source)
    check_encoder_layout(source, input_nc=input_nc, widths=[stem], units=n_units, heads=0, head_convs=0)
    units: list[UnitLayout] = []
    prev = stem
    for i in range(n_units):
        p = f"body.{i}."
        depth, cin, _, _ = _shape(sd, p + "res_layer.1.weight", 4, source)
        if cin != prev:
            raise CheckpointError(f"{source}: encoder unit {i} takes {cin} channels but the previous layer gives "
                                  f"{prev}; the file is corrupt")
        projection = p + "shortcut_layer.0.weight" in sd
        se = 0
        if p + "res_layer.5.fc1.weight" in sd:
            se = _shape(sd, p + "res_layer.5.fc1.weight", 4, source)[0]
        # A unit opening a stage (wider than its input, or the very first) halves the resolution:
        # the rule of the IR-SE layout (the stride itself is not stored: the plain shortcut has no weights).
        stride = 2 if (i == 0 or depth != cin) else 1
        if depth != cin and not projection:
            raise CheckpointError(f"{source}: encoder unit {i} changes width {cin} -> {depth} without a "
                                  f"projection shortcut; the file is corrupt")
        units.append(UnitLayout(cin, depth, stride, projection, se))
        prev = depth
    if len({u.se_channels > 0 for u in units}) != 1:
        raise CheckpointError(f"{source}: the encoder mixes units with and without squeeze-excitation; unsupported")
    ends = tuple(i for i in range(n_units) if i == n_units - 1 or units[i + 1].depth != units[i].depth)
    if len(ends) < 3:
        raise CheckpointError(f"{source}: the encoder backbone has {len(ends)} stages; the e4e/pSp/ReStyle heads "
                              f"need at least 3")

    n_heads = _contiguous(_indices(sd, r"styles\.(\d+)\.linear\.weight"), "style heads 'styles.N'", source)
    widths = [u.depth for u in units] + [u.se_channels for u in units if u.se_channels]
    laterals: tuple[tuple[int, int], ...] = ()
    levels = [units[e].depth for e in ends[-3:]]  # widths of the three deepest stage outputs
    if encoder_type in FPN_TYPES:
        lat = []
        for name, level in (("latlayer1", 1), ("latlayer2", 0)):
            out_c, in_c, _, _ = _shape(sd, f"{name}.weight", 4, source)
            if in_c != levels[level]:
                raise CheckpointError(f"{source}: '{name}' takes {in_c} channels but the backbone gives "
                                      f"{levels[level]}; the file is corrupt")
            lat.append((in_c, out_c))
        laterals = tuple(lat)
        if not (laterals[0][1] == laterals[1][1] == levels[2]):
            raise CheckpointError(f"{source}: the pyramid's lateral convs ({laterals[0][1]}, {laterals[1][1]} "
                                  f"channels) do not match the last stage ({levels[2]}); the file is corrupt")
    heads: list[HeadLayout] = []
    for k in range(n_heads):
        p = f"styles.{k}."
        convs = _contiguous([i // 2 for i in _indices(sd, rf"styles\.{k}\.convs\.(\d+)\.weight")],
                            f"head {k} convs", source)
        check_encoder_layout(source, input_nc=input_nc, widths=widths, units=n_units, heads=n_heads,
                             head_convs=convs)
        level = 2
        if encoder_type in FPN_TYPES:
            level = 2 if k < COARSE_END else (1 if k < MIDDLE_END else 0)
        out_c, in_c, _, _ = _shape(sd, p + "convs.0.weight", 4, source)
        if in_c != levels[2]:
            raise CheckpointError(f"{source}: style head {k} takes {in_c} channels but its feature map has "
                                  f"{levels[2]}; the file is corrupt")
        w_dim, lin_in = _shape(sd, p + "linear.weight", 2, source)
        if lin_in != out_c:
            raise CheckpointError(f"{source}: style head {k}'s linear layer takes {lin_in} inputs, its convs give "
                                  f"{out_c}; the file is corrupt")
        heads.append(HeadLayout(in_c, out_c, convs, w_dim, level))
        widths.append(out_c)
    if len({h.w_dim for h in heads}) != 1:
        raise CheckpointError(f"{source}: the style heads give codes of different sizes; the file is corrupt")
    check_encoder_layout(source, input_nc=input_nc, widths=widths + [heads[0].w_dim], units=n_units,
                         heads=n_heads, head_convs=max(h.convs for h in heads))
    return EncoderLayout(encoder_type, input_nc, stem, tuple(units), ends, tuple(heads), laterals)
