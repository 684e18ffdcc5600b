"""The settings table: one default/range per setting, shared by the CLI, the nodes and the configs."""

from __future__ import annotations

import math

import pytest

from nada_core import cli
from nada_core.errors import InputError
from nada_core.settings import TRAIN, Setting, check
from nada_core.training.config import TrainConfig


def test_config_defaults_are_the_table_defaults():
    cfg = TrainConfig()
    for s in TRAIN:
        assert getattr(cfg, s.name) == s.default, s.name


@pytest.mark.parametrize("name, value", [
    ("truncation", math.nan), ("truncation", math.inf), ("lr", -math.inf), ("mixing", 1.01), ("steps", "10"),
    ("steps", True), ("batch", 1.0), ("seed", 2**32), ("num_layers", 65), ("noise_mode", "loud"),
    ("mixed_precision", 1), ("betas", (0.5,)), ("global_weight", 101.0), ("lr", -0.001),
])
def test_bad_values_name_the_setting_and_the_allowed_range(name, value):
    with pytest.raises(InputError) as info:
        TRAIN.check(name, value)
    msg = str(info.value)
    assert msg.startswith(f"{TRAIN[name].label or name} must be ") and TRAIN[name].allowed() in msg and "\n" not in msg


def test_lr_zero_is_auto_the_recipe_of_the_adapt_kind():
    """lr 0 (the node's default) = the adapt kind's recipe, with the numbers the run uses stored in the config;
    an explicit lr wins, and a compact kind keeps its plain Adam with it (the CLI's rule)."""
    from nada_core.settings import ADAPT_RECIPES, optimizer_recipe

    full = TrainConfig(lr=0.0)
    assert (full.lr, full.betas, full.adam_ratio) == (0.002, (0.0, 0.99), 0.8)  # the official default run
    assert full.to_dict() == TrainConfig().to_dict()
    for kind, lr in (("domain", 0.1), ("stylespace", 0.05)):
        cfg = TrainConfig(lr=0.0, adapt=kind)
        assert (cfg.lr, cfg.betas, cfg.adam_ratio) == (lr, (0.9, 0.999), 1.0) == tuple(ADAPT_RECIPES[kind].values())
        assert (cfg.adam_lr, cfg.adam_betas) == (lr, (0.9, 0.999))  # plain torch Adam, as the reference code
        assert optimizer_recipe(kind, 0.02) == {"lr": 0.02, "betas": (0.9, 0.999), "adam_ratio": 1.0}
    assert optimizer_recipe("full", 0.01, adam_ratio=0.5) == {"lr": 0.01, "betas": (0.0, 0.99), "adam_ratio": 0.5}
    with pytest.raises(InputError, match="adapt must be"):
        optimizer_recipe("lora")


def test_good_values_are_normalised():
    assert TRAIN.check("lr", 1) == 1.0 and isinstance(TRAIN.check("lr", 1), float)
    assert TRAIN.check("num_layers", " 12 ") == 12 and TRAIN.check("num_layers", "ALL") == "all"
    assert TRAIN.check("preview_seeds", "0-2,7") == (0, 1, 2, 7)
    assert TRAIN.check("betas", [0, 0.5]) == (0.0, 0.5)
    s = Setting("x", "float", 0.5, "x", lo=0.0, hi=1.0, lo_open=True)
    assert check(s, 1.0) == 1.0
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        check(s, 0.0)


@pytest.mark.parametrize("flag, value, name", [("--truncation", "nan", "truncation"), ("--lr", "inf", "lr"),
                                               ("--mixing", "2", "mixing"), ("--steps", "0", "steps")])
def test_cli_rejects_nan_and_out_of_range_with_one_line(tmp_path, capsys, flag, value, name):
    rc = cli.main(["train", "--generator", str(tmp_path / "none.pt"), "--clip", "x", "--source", "a", "--target",
                   "b", "--out", str(tmp_path / "o"), "--quiet", flag, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{name} must be {TRAIN[name].allowed()}" in err


def test_cli_flags_and_node_inputs_come_from_the_table():
    from nada_core.commands import train as train_cmd
    from nodes.train_nodes import NODE_SETTINGS, NadaTrain

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    flags = {a.dest: a for a in sub._actions}
    for name in train_cmd._TRAINING_FLAGS + train_cmd._OUTPUT_FLAGS:
        s = TRAIN[name]
        assert s.cli_flag in flags[name].option_strings
        assert TRAIN[name].allowed() in flags[name].help
    inputs = NadaTrain.INPUT_TYPES()["required"]
    assert "--select-codes" in flags["n_select_codes"].option_strings  # the flags users already have
    assert "--layers" in flags["num_layers"].option_strings and "layers" in inputs
    for input_name, name in NODE_SETTINGS.items():
        s = TRAIN[name]
        kind, opts = inputs[input_name]
        default = s.node_default if s.node_default is not None else s.default
        if kind in ("INT", "FLOAT"):
            assert opts["default"] == default and opts["max"] == s.hi
            assert opts["min"] == (s.widget_min if s.widget_min is not None else s.lo)
            TRAIN.check(name, opts["min"])  # the widget's own limits are valid values
            TRAIN.check(name, opts["max"])
        assert opts["tooltip"] == s.help


def test_invert_config_is_checked_when_built_and_takes_the_table_defaults():
    from nada_core.editing.invert import InvertConfig
    from nada_core.settings import INVERT

    cfg = InvertConfig()
    for s in INVERT:
        assert getattr(cfg, s.name) == s.default, s.name
    for bad, name in ((dict(lr=math.nan), "lr"), (dict(steps=1.5), "steps"), (dict(fit="zoom"), "fit"),
                      (dict(pixel_scales=(0,)), "pixel_scales"), (dict(seed=-1), "seed")):
        with pytest.raises(InputError, match=f"^{name} must be"):
            InvertConfig(**bad)  # no longer waits for invert() to be checked


@pytest.mark.parametrize("flag, value, name", [("--lr", "nan", "lr"), ("--steps", "0", "steps"),
                                               ("--ssim-weight", "-1", "ssim_weight")])
def test_invert_cli_rejects_bad_values_before_loading_anything(tmp_path, capsys, flag, value, name):
    from nada_core.settings import INVERT

    rc = cli.main(["invert", "--generator", str(tmp_path / "missing.pt"), "--image", str(tmp_path / "x.png"),
                   "--out", str(tmp_path / "o"), "--quiet", flag, value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"{name} must be {INVERT[name].allowed()}" in err


def test_invert_node_inputs_come_from_the_table():
    from nada_core.settings import INVERT
    from nodes.invert_nodes import NadaInvertImage

    inputs = NadaInvertImage.INPUT_TYPES()["required"]
    assert inputs["steps"][1]["default"] == INVERT["steps"].default and inputs["steps"][1]["max"] == INVERT["steps"].hi
    assert inputs["space"][0] == list(INVERT["space"].choices) and inputs["space"][1]["default"] == "w+"
    assert inputs["fit"][0] == list(INVERT["fit"].choices)
    assert inputs["seed"][1]["control_after_generate"] is False


@pytest.mark.parametrize("psi, cutoff, needle", [
    (float("nan"), None, "truncation must be a finite number"),
    (float("inf"), None, "truncation must be a finite number"),
    (0.5, -3, "truncation cutoff must be a whole number"),
    ("0.5", None, "truncation must be"),
])
def test_latents_from_seeds_checks_truncation_at_the_boundary(psi, cutoff, needle):
    from factories import tiny_generator
    from nada_core.editing.latents import latents_from_seeds
    from nada_core.errors import InputError

    G = tiny_generator(16)
    with pytest.raises(InputError, match=needle):
        latents_from_seeds(G, "0-1", truncation_psi=psi, truncation_cutoff=cutoff)
    assert latents_from_seeds(G, "0-1", truncation_psi=0.5, truncation_cutoff=2).ws.shape[0] == 2


def test_invert_config_is_frozen_and_replace_checks_the_change():
    import dataclasses

    from nada_core.editing.invert import InvertConfig

    cfg = InvertConfig(steps=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 0  # a checked config cannot become invalid afterwards
    assert dataclasses.replace(cfg, lr=0.05).lr == 0.05 and cfg.lr != 0.05
    with pytest.raises(InputError, match="^steps must be"):
        dataclasses.replace(cfg, steps=0)
    assert InvertConfig(pixel_scales=[1, 2]).pixel_scales == (1, 2)  # normalised when built
