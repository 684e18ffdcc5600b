"""Which generator class a config builds: StyleGAN2 (:mod:`.stylegan2`) or StyleGAN3 (:mod:`.stylegan3`).

Everything downstream takes "a generator" with the shared interface; only construction, file
metadata and a few descriptions need to know the architecture, and they ask here.
"""

from __future__ import annotations

from typing import Any, Union

from .stylegan2 import Generator, GeneratorConfig
from .stylegan3 import ARCHITECTURE as STYLEGAN3, StyleGAN3Config, StyleGAN3Generator

STYLEGAN2 = "stylegan2"
AnyConfig = Union[GeneratorConfig, StyleGAN3Config]
AnyGenerator = Union[Generator, StyleGAN3Generator]
GENERATOR_CLASSES = (Generator, StyleGAN3Generator)


def architecture_of(obj: Any) -> str:
    """``"stylegan2"`` or ``"stylegan3"`` for a generator or a config."""
    cfg = getattr(obj, "config", obj)
    return STYLEGAN3 if isinstance(cfg, StyleGAN3Config) else STYLEGAN2


def is_stylegan3(obj: Any) -> bool:
    return architecture_of(obj) == STYLEGAN3


def architecture_label(config: Any) -> str:
    """``"StyleGAN2"``, ``"StyleGAN3-T"`` or ``"StyleGAN3-R"`` for a generator, a config or a config's
    ``to_dict()`` (as stored in files)."""
    if isinstance(config, dict):
        if config.get("architecture", STYLEGAN2) != STYLEGAN3:
            return "StyleGAN2"
        return "StyleGAN3-R" if config.get("use_radial_filters") else "StyleGAN3-T"
    cfg = getattr(config, "config", config)
    if not isinstance(cfg, StyleGAN3Config):
        return "StyleGAN2"
    return "StyleGAN3-R" if cfg.use_radial_filters else "StyleGAN3-T"


def build_generator(config: AnyConfig) -> AnyGenerator:
    """A freshly initialised generator of the class ``config`` describes."""
    if isinstance(config, StyleGAN3Config):
        return StyleGAN3Generator(config)
    return Generator(config)


def config_from_dict(d: dict) -> AnyConfig:
    """Rebuild a config from ``to_dict()`` data; StyleGAN3 configs carry ``"architecture": "stylegan3"``,
    StyleGAN2 ones (all files written before StyleGAN3 support) carry no such key."""
    arch = d.get("architecture", STYLEGAN2) if isinstance(d, dict) else STYLEGAN2
    if arch == STYLEGAN3:
        return StyleGAN3Config.from_dict(d)
    if arch != STYLEGAN2:
        raise ValueError(f"unknown generator architecture {arch!r}")
    d = {k: v for k, v in d.items() if k != "architecture"}
    return GeneratorConfig.from_dict(d)
