"""Latent paths, style mixing and generator blending (paper Sec. 5, Fig. 8 and 19, Appendix F).

Latent paths
    :func:`interpolation_schedule` places ``frames`` frames along a path through ``K`` keyframes
    (optionally looping back to the first); :func:`interpolate_path` evaluates it for any tensor of
    keyframes with ``lerp`` (W codes) or ``slerp`` (z codes: moves along the sphere, so Gaussian
    codes keep a typical norm instead of shrinking towards the origin mid-way); easing
    (``linear``, ``ease-in-out``/``smoothstep``, ``cosine``, ``ease-in``, ``ease-out``) shapes each
    segment. The first and last frame are *exactly* the first and last keyframe, and a frame that
    lands on an inner keyframe is exactly that keyframe.

Style mixing
    :func:`style_mix` takes the W+ entries of a layer range from latent A and the rest from B.
    Named ranges follow StyleGAN's convention by resolution: ``coarse`` = entries 0-3 (4-8 px),
    ``middle`` = 4-7 (16-32 px), ``fine`` = 8 and up (64 px and up).

Generator blending
    :func:`blend_generators` lerps every parameter and buffer of two generators of the same
    architecture and lineage (``alpha`` 0 gives A, 1 gives B, bit for bit). Per-layer alphas (one
    per W+ entry) blend each synthesis layer by the alpha of the W+ entry that drives it:

    - ``synthesis.convs[i]`` (weight, bias, noise strength, style affine, ``noise_const``) -> entry ``i``;
    - ``synthesis.to_rgbs[j]`` (weight, bias, style affine) -> entry ``2j + 1``;
    - ``synthesis.const`` (the learned 4x4 input) -> entry 0, the layer that reads it;
    - the mapping network and ``w_avg`` -> ``mapping_alpha``. NADA keeps the mapping frozen, so it
      is normally identical in both generators and the choice has no effect; when it differs it is
      lerped with ``mapping_alpha`` (default: ``alpha`` for a single alpha; 0, i.e. ``G_a``'s
      mapping, for per-layer alphas, so per-layer alphas change only the layers they name).

    :func:`blend_sequence` walks through several generators reusing one output generator (its
    tensors are overwritten in place for each frame), so long morphs need memory for one extra
    generator, not one per frame.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

import torch

from ..errors import CheckpointError, InputError
from ..models.conditioning import class_one_hot
from .latents import Latents, generator_lineage, short_sha

Mode = Literal["lerp", "slerp"]
EASINGS = ("linear", "ease-in-out", "smoothstep", "cosine", "ease-in", "ease-out")
LAYER_GROUPS = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, None)}


# ----------------------------------------------------------------------------------------------
# Easing and schedules
# ----------------------------------------------------------------------------------------------


def ease(t: float, easing: str = "linear") -> float:
    """Map ``t`` in [0, 1] to [0, 1], monotone non-decreasing, with ``ease(0) == 0`` and ``ease(1) == 1`` exactly."""
    if not 0.0 <= t <= 1.0:
        raise InputError(f"interpolation position {t} is outside [0, 1]")
    if t in (0.0, 1.0):
        return float(t)
    if easing == "linear":
        return t
    if easing in ("ease-in-out", "smoothstep"):
        return t * t * (3.0 - 2.0 * t)
    if easing == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    if easing == "ease-in":
        return t * t
    if easing == "ease-out":
        return 1.0 - (1.0 - t) * (1.0 - t)
    raise InputError(f"unknown easing {easing!r}; use one of {', '.join(EASINGS)}")


def interpolation_schedule(num_keyframes: int, frames: int, loop: bool = False,
                           easing: str = "linear") -> list[tuple[int, int, float]]:
    """Where each frame sits on the path: a list of ``(from_key, to_key, t)`` with eased ``t`` in [0, 1].

    Without ``loop`` frame 0 is keyframe 0 and the last frame the last keyframe; with ``loop``
    the path returns to keyframe 0 and the frames split it evenly without repeating the first
    frame at the end (a seamless loop). Positions are computed with integers, so frames that fall
    on a keyframe get ``t == 0`` exactly.
    """
    if num_keyframes < 1:
        raise InputError("an interpolation needs at least one keyframe")
    if frames < 1:
        raise InputError(f"number of frames must be at least 1, got {frames}")
    if easing not in EASINGS:
        raise InputError(f"unknown easing {easing!r}; use one of {', '.join(EASINGS)}")
    if num_keyframes == 1:
        return [(0, 0, 0.0)] * frames
    segments = num_keyframes if loop else num_keyframes - 1
    if not loop and frames < 2:
        raise InputError(f"an interpolation through {num_keyframes} keyframes needs at least 2 frames")
    denom = frames if loop else frames - 1
    out = []
    for i in range(frames):
        seg, rem = divmod(i * segments, denom)
        if seg >= segments:  # the very last frame of an open path
            seg, rem = segments - 1, denom
        a = seg % num_keyframes
        b = (seg + 1) % num_keyframes
        out.append((a, b, ease(rem / denom, easing)))
    return out


# ----------------------------------------------------------------------------------------------
# Lerp / slerp
# ----------------------------------------------------------------------------------------------


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation; returns exact copies of ``a`` at ``t == 0`` and ``b`` at ``t == 1``."""
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    return torch.lerp(a, b, float(t))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dimension.

    Directions are slerped on the unit sphere and lengths lerped, so codes of equal norm keep
    that norm all the way (the Gaussian z of StyleGAN live near a sphere of radius sqrt(z_dim)).
    Exact copies at ``t == 0`` and ``t == 1``; (anti)parallel or zero vectors fall back to lerp.
    """
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    a64, b64 = a.double(), b.double()
    na = a64.norm(dim=-1, keepdim=True)
    nb = b64.norm(dim=-1, keepdim=True)
    ua = a64 / na.clamp_min(eps)
    ub = b64 / nb.clamp_min(eps)
    cos = (ua * ub).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    safe = sin.abs() > 1e-6
    s = torch.where(safe, sin, torch.ones_like(sin))
    wa = torch.where(safe, torch.sin((1.0 - t) * omega) / s, torch.full_like(sin, 1.0 - t))
    wb = torch.where(safe, torch.sin(t * omega) / s, torch.full_like(sin, t))
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    length = (1.0 - t) * na + t * nb
    out = torch.where((na > eps) & (nb > eps), direction * length, torch.lerp(a64, b64, float(t)))
    return out.to(a.dtype)


def interpolate_path(keyframes: torch.Tensor, frames: int, mode: Mode = "lerp", easing: str = "linear",
                     loop: bool = False) -> torch.Tensor:
    """Frames along a path through ``keyframes [K, ...]`` -> ``[frames, ...]`` (same dtype/device).

    ``mode`` ``lerp`` for W/W+ codes, ``slerp`` for z codes (slerp acts on the last dimension).
    """
    if mode not in ("lerp", "slerp"):
        raise InputError(f"unknown interpolation mode {mode!r}; use 'lerp' or 'slerp'")
    if keyframes.ndim < 2:
        raise InputError(f"keyframes must have shape [K, ...], got {list(keyframes.shape)}")
    fn = lerp if mode == "lerp" else slerp
    sched = interpolation_schedule(keyframes.shape[0], frames, loop, easing)
    return torch.stack([fn(keyframes[a], keyframes[b], t) for a, b, t in sched])


def _keyframe_truncation(provenance: dict) -> tuple[float, int | None, int | None]:
    """``(truncation_psi, truncation_cutoff, class_index)`` the keyframes were made with, from their
    provenance (a latents file's JSON, so each value is checked as the setting it is)."""
    from ..settings import SAMPLE, check

    try:
        psi = check(SAMPLE["truncation_psi"], provenance.get("truncation_psi", 1.0))
        cutoff = provenance.get("truncation_cutoff")
        cutoff = None if cutoff is None else check(SAMPLE["truncation_cutoff"], cutoff)
        class_index = provenance.get("class_index")  # the keyframes' class (conditional models)
        class_index = None if class_index is None else check(SAMPLE["class_index"], class_index)
    except InputError as err:
        raise CheckpointError(f"the latents' provenance is damaged ({err}); make the codes from seeds again") from None
    return psi, cutoff, class_index


def interpolate_latents(latents: Latents, frames: int, mode: Mode = "lerp", easing: str = "linear",
                        loop: bool = False, G: Any = None) -> Latents:
    """A :class:`Latents` of ``frames`` codes travelling through the codes of ``latents`` in order.

    ``lerp`` interpolates the W+ codes (and per-image noise maps, when present). ``slerp``
    interpolates the z codes on the sphere and maps them with ``G`` using the keyframes'
    truncation settings, so it needs latents made from seeds and the generator.
    """
    if mode == "slerp":
        if latents.z is None:
            raise InputError("slerp interpolates z codes, but these latents have none (inverted or loaded W codes); "
                             "use mode 'lerp', or latents made from seeds")
        if G is None:
            raise InputError("slerp through z needs the generator to map the z codes; pass G")
        z = interpolate_path(latents.z, frames, "slerp", easing, loop).to(G.w_avg.device)
        psi, cutoff, class_index = _keyframe_truncation(latents.provenance)
        c = class_one_hot(getattr(G, "c_dim", 0), class_index, z.shape[0], G.w_avg.device)
        with torch.no_grad():
            ws = G.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff).float().cpu()
        # Frames sitting on a keyframe reuse its stored code, so they match it bit for bit.
        for i, (a, b, t) in enumerate(interpolation_schedule(len(latents), frames, loop, easing)):
            if t == 0.0 or t == 1.0:
                ws[i] = latents.ws[a if t == 0.0 else b]
        ws_space = latents.space
        noise = None
    else:
        ws = interpolate_path(latents.ws, frames, "lerp", easing, loop)
        z = None
        ws_space = latents.space
        noise = None
        if latents.noise is not None:
            noise = [interpolate_path(n, frames, "lerp", easing, loop) for n in latents.noise]
    prov = {"source": "interpolation", "mode": mode, "easing": easing, "loop": loop, "frames": frames,
            "keyframes": latents.provenance}
    return Latents(ws, ws_space, latents.lineage_sha256, prov, None if z is None else z.cpu(), noise)


# ----------------------------------------------------------------------------------------------
# Layers and style mixing
# ----------------------------------------------------------------------------------------------


def parse_layers(spec: str | int | Iterable[int] | range, num_ws: int) -> list[int]:
    """W+ entries from ``"coarse"``, ``"middle"``, ``"fine"``, ``"0-3"``, ``"0-3,8,10-"``, an int or a list.

    ``"8-"`` runs to the last entry. Raises :class:`InputError` for entries out of ``0..num_ws-1``
    or a named group this generator does not have (a 32 px model has no ``fine`` layers).
    """
    if isinstance(spec, (int,)) and not isinstance(spec, bool):
        items: list[int] = [int(spec)]
    elif isinstance(spec, str):
        items = []
        for part in re.split(r"[,;+\s]+", spec.strip().lower()):
            if not part:
                continue
            if part in LAYER_GROUPS:
                lo, hi = LAYER_GROUPS[part]
                hi = num_ws if hi is None else min(hi, num_ws)
                if lo >= hi:
                    raise InputError(f"this {2 ** ((num_ws + 2) // 2)} px generator has no {part} layers "
                                     f"(it has W+ entries 0-{num_ws - 1}); use explicit entries like '0-3'")
                items.extend(range(lo, hi))
                continue
            m = re.fullmatch(r"(\d+)\s*(?:-|\.\.)\s*(\d*)", part)
            if m:
                lo = int(m.group(1))
                hi = int(m.group(2)) if m.group(2) else num_ws - 1
                if hi < lo:
                    raise InputError(f"layer range {part!r} runs backwards; write it as {hi}-{lo}")
                if hi >= num_ws:  # checked before the list is built: '0-1000000000000' must not allocate
                    raise InputError(f"W+ entry {hi} is out of range; this generator has entries 0-{num_ws - 1}")
                items.extend(range(lo, hi + 1))
            elif part.isdigit():
                items.append(int(part))
            else:
                raise InputError(f"cannot read layers {part!r}; use 'coarse', 'middle', 'fine', or entries like '0-3,8'")
    else:
        items = [int(i) for i in spec]
    if not items:
        raise InputError("no layers given; use e.g. 'coarse' or '0-3'")
    for i in items:
        if not 0 <= i < num_ws:
            raise InputError(f"W+ entry {i} is out of range; this generator has entries 0-{num_ws - 1}")
    return sorted(set(items))


def style_mix(a: Latents | torch.Tensor, b: Latents | torch.Tensor,
              layers: str | int | Iterable[int]) -> Latents | torch.Tensor:
    """W+ entries ``layers`` from ``a``, the others from ``b``.

    ``a``, ``b``: :class:`Latents` or ``[N, num_ws, w_dim]`` tensors; a batch of 1 broadcasts
    against the other. Noise maps (when both have them) follow their W+ entry. Returns the same
    kind as ``a``, with ``space`` ``"w+"``.
    """
    wa = a.ws if isinstance(a, Latents) else a
    wb = b.ws if isinstance(b, Latents) else b
    if wa.ndim != 3 or wb.ndim != 3 or wa.shape[1:] != wb.shape[1:]:
        raise InputError(f"cannot mix latents of shapes {list(wa.shape)} and {list(wb.shape)}; "
                         "both need [N, num_ws, w_dim] from the same generator")
    na, nb = wa.shape[0], wb.shape[0]
    if na != nb and 1 not in (na, nb):
        raise InputError(f"cannot mix {na} codes with {nb}; give the same number, or one to apply to all")
    n = max(na, nb)
    idx = parse_layers(layers, wa.shape[1])
    mask = torch.zeros(wa.shape[1], dtype=torch.bool, device=wa.device)
    mask[idx] = True
    mixed = torch.where(mask[None, :, None], wa.expand(n, -1, -1), wb.to(wa.device).expand(n, -1, -1))
    if not isinstance(a, Latents):
        return mixed
    lineage_b = b.lineage_sha256 if isinstance(b, Latents) else None
    if a.lineage_sha256 and lineage_b and a.lineage_sha256 != lineage_b:
        raise CheckpointError(f"cannot mix latents of generator lineages {short_sha(a.lineage_sha256)} and "
                              f"{short_sha(lineage_b)}; mix latents found on the same generator family")
    noise = None
    if isinstance(b, Latents) and a.noise is not None and b.noise is not None:
        noise = [(na_ if i in idx else nb_).expand(n, -1, -1, -1).clone() for i, (na_, nb_) in enumerate(zip(a.noise, b.noise))]
    prov = {"source": "style_mix", "layers_from_a": idx, "a": a.provenance,
            "b": b.provenance if isinstance(b, Latents) else None}
    return Latents(mixed, "w+", a.lineage_sha256 or lineage_b, prov, None, noise)


# ----------------------------------------------------------------------------------------------
# Generator blending
# ----------------------------------------------------------------------------------------------


def w_index_of_tensor(name: str) -> int | None:
    """The W+ entry whose layer owns parameter/buffer ``name`` (None for the mapping network).

    ``synthesis.convs.{i}.*`` -> ``i``; ``synthesis.to_rgbs.{j}.*`` -> ``2j + 1``; ``synthesis.const``
    and other synthesis-level tensors -> 0. StyleGAN3: ``synthesis.L{i}_*`` -> ``i + 1``,
    ``synthesis.input.*`` -> 0.
    """
    if name.startswith("mapping."):
        return None
    m = re.match(r"synthesis\.L(\d+)_", name)  # StyleGAN3: layer L{i} is driven by entry i + 1
    if m:
        return int(m.group(1)) + 1
    m = re.match(r"synthesis\.convs\.(\d+)\.", name)
    if m:
        return int(m.group(1))
    m = re.match(r"synthesis\.to_rgbs\.(\d+)\.", name)
    if m:
        return 2 * int(m.group(1)) + 1
    return 0


def check_same_family(G_a: Any, G_b: Any, what: str = "blend") -> None:
    """Raise unless both generators have the same architecture and (when known) the same lineage."""
    if G_a.config != G_b.config:
        ca, cb = G_a.config, G_b.config
        diffs = [f"{f}: {getattr(ca, f)!r} vs {getattr(cb, f)!r}" for f in ("img_resolution", "z_dim", "w_dim",
                 "mapping_layers", "channels", "conv_clamp")
                 if getattr(ca, f, None) != getattr(cb, f, None)]
        raise InputError(f"cannot {what} generators of different architectures ({'; '.join(diffs) or 'config differs'}); "
                         "use generators adapted from the same source model")
    la, lb = generator_lineage(G_a), generator_lineage(G_b)
    if la and lb and la != lb:
        raise CheckpointError(f"cannot {what} generators from different sources (lineage {short_sha(la)} vs "
                              f"{short_sha(lb)}); use generators adapted from the same source checkpoint")


def _alpha_per_index(alpha: float | Sequence[float] | Mapping[int, float], num_ws: int,
                     mapping_alpha: float | None) -> tuple[list[float], float]:
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        alphas = [float(alpha)] * num_ws
        map_alpha = float(alpha) if mapping_alpha is None else float(mapping_alpha)
    elif isinstance(alpha, Mapping):
        alphas = [0.0] * num_ws
        for k, v in alpha.items():
            if not 0 <= int(k) < num_ws:
                raise InputError(f"per-layer alpha for W+ entry {k} is out of range; this generator has entries 0-{num_ws - 1}")
            alphas[int(k)] = float(v)
        map_alpha = 0.0 if mapping_alpha is None else float(mapping_alpha)
    else:
        alphas = [float(v) for v in alpha]
        if len(alphas) != num_ws:
            raise InputError(f"got {len(alphas)} per-layer alphas but this generator has {num_ws} W+ entries")
        map_alpha = 0.0 if mapping_alpha is None else float(mapping_alpha)
    for v in alphas + [map_alpha]:
        if not math.isfinite(v):
            raise InputError(f"blend alpha must be a finite number, got {v}")
    return alphas, map_alpha


def layer_alphas(num_ws: int, layers: str | Iterable[int], alpha: float = 1.0, others: float = 0.0) -> list[float]:
    """Per-layer alphas: ``alpha`` on ``layers`` (see :func:`parse_layers`), ``others`` elsewhere.

    E.g. ``blend_generators(G_photo, G_sketch, layer_alphas(G.num_ws, "fine"))`` keeps the photo
    generator's coarse and middle layers and takes the sketch generator's fine layers.
    """
    chosen = set(parse_layers(layers, num_ws))
    return [float(alpha) if i in chosen else float(others) for i in range(num_ws)]


def _state_tensors(G: Any) -> dict[str, torch.Tensor]:
    """All parameters and buffers (persistent or not) by name."""
    from ..domains.apply import materialize

    G = materialize(G)  # applied domains are part of the weights being blended
    out = dict(G.named_parameters())
    out.update(dict(G.named_buffers()))
    return out


def new_output_generator(G: Any) -> Any:
    """A frozen copy of ``G`` (eval mode, no gradients) to blend into; keeps its metadata attributes."""
    from ..domains.apply import applied_domains, bake

    with torch.inference_mode(False), torch.no_grad():
        out = bake(G) if applied_domains(G) else copy.deepcopy(G)
    out.eval().requires_grad_(False)
    return out


@torch.no_grad()
def blend_generators(G_a: Any, G_b: Any, alpha: float | Sequence[float] | Mapping[int, float], *,
                     mapping_alpha: float | None = None, out: Any = None) -> Any:
    """Weight-space blend ``(1 - alpha) * G_a + alpha * G_b`` of every parameter and buffer.

    ``alpha``: one number (the whole network), a list of ``num_ws`` numbers, or a dict
    ``{w_index: alpha}`` (entries not named stay 0, i.e. from ``G_a``); see the module docs for
    which tensors each W+ entry owns. Alphas outside [0, 1] extrapolate. ``mapping_alpha``
    overrides the mapping network's alpha. ``out``: a generator of the same architecture to
    overwrite (e.g. from :func:`new_output_generator`), else a new copy of ``G_a`` is made.
    Alpha 0 copies ``G_a``'s tensors and alpha 1 ``G_b``'s exactly. Returns the output generator
    (eval mode, ``requires_grad`` off).
    """
    check_same_family(G_a, G_b)
    alphas, map_alpha = _alpha_per_index(alpha, G_a.num_ws, mapping_alpha)
    if out is None:
        out = new_output_generator(G_a)
    elif out.config != G_a.config:
        raise InputError("the output generator for a blend must have the same architecture as the inputs")
    ta, tb, to = _state_tensors(G_a), _state_tensors(G_b), _state_tensors(out)
    with torch.inference_mode(False), torch.no_grad():  # inference_mode(False) alone re-enables grad
        for name, dst in to.items():
            a, b = ta[name], tb[name]
            idx = w_index_of_tensor(name)
            t = map_alpha if idx is None else alphas[idx]
            if t == 0.0:
                dst.copy_(a)
            elif t == 1.0:
                dst.copy_(b)
            elif not torch.is_floating_point(dst):
                dst.copy_(a if t < 0.5 else b)
            else:
                dst.copy_(torch.lerp(a.to(dst.device, dst.dtype), b.to(dst.device, dst.dtype), t))
    return out


def blend_sequence(generators: Sequence[Any], frames: int, easing: str = "linear", loop: bool = False,
                   layers: str | Iterable[int] | None = None, out: Any = None,
                   should_stop: Callable[[], bool] | None = None) -> Iterator[Any]:
    """Yield ``frames`` blends along a path through ``generators`` (cross-domain morph, Fig. 19).

    One output generator is reused: each yielded object is the *same* module with new weights,
    valid until the next iteration (render it, or deep-copy it if you need to keep it). Frame 0
    equals ``generators[0]`` and the last frame ``generators[-1]`` bit for bit (unless ``loop``).
    ``layers`` restricts the morph to those W+ entries (others stay from the segment's start).
    """
    gens = list(generators)
    if len(gens) < 1:
        raise InputError("a generator morph needs at least one generator")
    for other in gens[1:]:
        check_same_family(gens[0], other, "morph")
    chosen = None if layers is None else set(parse_layers(layers, gens[0].num_ws))
    sched = interpolation_schedule(len(gens), frames, loop, easing)
    if out is None:
        out = new_output_generator(gens[0])
    for a, b, t in sched:
        if should_stop is not None and should_stop():
            return
        alpha: float | list[float] = t
        if chosen is not None:
            alpha = [t if i in chosen else 0.0 for i in range(gens[0].num_ws)]
        yield blend_generators(gens[a], gens[b], alpha, out=out)


def render_blend_sequence(generators: Sequence[Any], latents: Latents, frames: int, easing: str = "linear",
                          loop: bool = False, layers: str | Iterable[int] | None = None,
                          noise_mode: str = "const", batch_size: int = 8,
                          should_stop: Callable[[], bool] | None = None,
                          input_transform: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Render ``latents`` through a generator morph: yields ``frames`` tensors ``[N, 3, R, R]`` (CPU, about [-1, 1])."""
    from .latents import check_compatible, render

    for G in generators:
        check_compatible(latents, G)
    for G in blend_sequence(generators, frames, easing, loop, layers, should_stop=should_stop):
        yield render(G, latents, noise_mode=noise_mode, batch_size=batch_size, input_transform=input_transform)
