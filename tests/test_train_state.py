"""``nada train --resume`` on a damaged training state: one error line naming the file and the fix.

Each test builds its own corrupt ``train_state.safetensors`` from a real one-step run.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nada_core import cli
from nada_core.errors import CheckpointError
from nada_core.formats.checkpoints import save_generator
from nada_core.training.state import STATE_FILE, read_state
from tests.clip_factory import save_tiny_clip
from tests.factories import tiny_generator


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    gen = save_generator(tiny_generator(16), root / "source.safetensors")
    clip = save_tiny_clip(root / "clip", layout="safetensors")
    out = root / "run"
    rc = cli.main(["train", "--generator", str(gen), "--clip", clip, "--source", "photo", "--target", "sketch",
                   "--steps", "1", "--layers", "2", "--device", "cpu", "--out", str(out), "--quiet",
                   "--eval-seeds", "none", "--preview-every", "0"])
    assert rc == 0
    return out


def _load(path):
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())


def _copy(run_dir, tmp_path):
    dst = tmp_path / "damaged"
    shutil.copytree(run_dir, dst)
    return dst


def _rewrite(folder, tensors=None, info=None, raw_info=None):
    path = folder / STATE_FILE
    t, meta = _load(path)
    if tensors is not None:
        t = tensors(t)
    if info is not None:
        data = json.loads(meta["nada_train_state"])
        info(data)
        meta["nada_train_state"] = json.dumps(data)
    if raw_info is not None:
        meta["nada_train_state"] = raw_info
    path.unlink()
    save_file(t, str(path), metadata=meta)


def _resume_error(folder, capsys, *extra) -> str:
    capsys.readouterr()
    rc = cli.main(["train", "--resume", str(folder), "--out", str(folder), "--steps", "2", "--quiet",
                   "--eval-seeds", "none", "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _expect_named(err: str, folder) -> None:
    assert str(folder / STATE_FILE) in err, err
    assert "resume from an intact --out folder" in err, err


def test_truncated_file(run_dir, tmp_path, capsys):
    bad = _copy(run_dir, tmp_path)
    data = (bad / STATE_FILE).read_bytes()
    (bad / STATE_FILE).write_bytes(data[: len(data) // 2])
    _expect_named(_resume_error(bad, capsys), bad)


def test_garbage_bytes(run_dir, tmp_path, capsys):
    bad = _copy(run_dir, tmp_path)
    (bad / STATE_FILE).write_bytes(b"\xff" * 64)
    _expect_named(_resume_error(bad, capsys), bad)


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", "[" * 500 + "]" * 500, '"text"'])
def test_wrong_json(run_dir, tmp_path, capsys, raw):
    bad = _copy(run_dir, tmp_path)
    _rewrite(bad, raw_info=raw)
    _expect_named(_resume_error(bad, capsys), bad)


@pytest.mark.parametrize("change, word", [
    (lambda d: d.pop("step"), "'step'"),
    (lambda d: d.pop("config"), "'config'"),
    (lambda d: d.update(step="three"), "'step'"),
    (lambda d: d.update(step=-1), "'step'"),
    (lambda d: d.update(history="abc"), "'history'"),
    (lambda d: d.update(history=[{"total": "x"}]), "'history'"),
    (lambda d: d.update(layer_history=[["a"]]), "'layer_history'"),
    (lambda d: d.update(selector={"current": "all"}), "'selector'"),
    (lambda d: d.update(selector={"current": [999]}), "W+ indices"),
    (lambda d: d.update(extra={"clip": [[1, 2, 3]]}), "'extra.clip'"),
    (lambda d: d.update(extra=[]), "'extra'"),
    (lambda d: d["config"].update(batch="two"), "batch"),
    (lambda d: d["config"].update(lr=float("nan")), "lr"),
    (lambda d: d["config"].update(bogus=1), "bogus"),
    (lambda d: d.update(config=[]), "'config'"),
])
def test_wrong_types_and_missing_keys(run_dir, tmp_path, capsys, change, word):
    bad = _copy(run_dir, tmp_path)
    _rewrite(bad, info=change)
    err = _resume_error(bad, capsys)
    _expect_named(err, bad)
    assert word in err


def _first(t, prefix):
    return next(k for k in sorted(t) if k.startswith(prefix))


@pytest.mark.parametrize("damage, word", [
    (lambda t: {**t, _first(t, "synthesis."): torch.zeros(3, 5)}, "synthesis."),
    (lambda t: {k: v for k, v in t.items() if k != _first(t, "synthesis.")}, "missing"),
    (lambda t: {**t, _first(t, "adam.").rsplit(".", 1)[0] + ".exp_avg": torch.zeros(7)}, "exp_avg"),
    (lambda t: {k: v for k, v in t.items() if not k.endswith(".exp_avg_sq")}, "incomplete"),
    (lambda t: {k: v for k, v in t.items() if k != "rng.train"}, "rng.train"),
    (lambda t: {**t, "rng.train": torch.zeros(3, dtype=torch.uint8)}, "rng.train"),
])
def test_tensors_of_wrong_shape_or_missing(run_dir, tmp_path, capsys, damage, word):
    bad = _copy(run_dir, tmp_path)
    _rewrite(bad, tensors=damage)
    err = _resume_error(bad, capsys)
    _expect_named(err, bad)
    assert word in err


def test_intact_state_still_resumes(run_dir, tmp_path):
    good = _copy(run_dir, tmp_path)
    rc = cli.main(["train", "--resume", str(good), "--out", str(good), "--steps", "2", "--quiet",
                   "--eval-seeds", "none", "--device", "cpu"])
    assert rc == 0
    assert read_state(good)[1]["step"] == 2


def test_state_saved_before_the_layers_rename_still_resumes(run_dir, tmp_path):
    """Older states stored the layer count as "layers"; it is read as num_layers."""
    old = _copy(run_dir, tmp_path)

    def rename(d):
        d["config"]["layers"] = d["config"].pop("num_layers")

    _rewrite(old, info=rename)
    rc = cli.main(["train", "--resume", str(old), "--out", str(old), "--steps", "2", "--quiet",
                   "--eval-seeds", "none", "--device", "cpu"])
    assert rc == 0
    assert read_state(old)[1]["config"]["num_layers"] == 2


def test_a_state_listing_absurdly_many_tensors_is_refused_before_reading_them(run_dir, tmp_path):
    from nada_core.training.state import MAX_STATE_TENSORS

    folder = _copy(run_dir, tmp_path)
    _rewrite(folder, tensors=lambda t: {**t, **{f"junk.{i}": torch.zeros(1) for i in range(MAX_STATE_TENSORS + 1)}})
    with pytest.raises(CheckpointError, match="more than any run saves") as info:
        read_state(folder)
    assert "\n" not in str(info.value)
