"""``nada train`` end to end, as a user runs it, on tiny files written by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nada_core import cli
from nada_core.formats.checkpoints import load_generator, read_metadata, save_generator, sha256_file
from nada_core.training.state import read_state
from tests.clip_factory import save_tiny_clip
from tests.factories import tiny_generator

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    gen = save_generator(tiny_generator(16), root / "source.safetensors")
    clip_spec = save_tiny_clip(root / "clip", layout="safetensors")
    clip_b = save_tiny_clip(root / "clip_b", layout="safetensors", seed=1)
    return {"generator": str(gen), "clip": clip_spec, "clip_b": clip_b, "root": root}


def _train(files, out, *extra, steps=4):
    return cli.main(["train", "--generator", files["generator"], "--clip", files["clip"],
                     "--source", "photo", "--target", "pencil sketch", "--steps", str(steps), "--batch", "2",
                     "--layers", "2", "--lr", "0.01", "--device", "cpu", "--out", str(out), "--quiet", *extra])


def _params(path) -> dict[str, torch.Tensor]:
    return dict(load_generator(path).named_parameters())


def test_train_writes_every_output(files, tmp_path):
    from PIL import Image

    out = tmp_path / "run"
    rc = _train(files, out, "--preview-every", "2", "--eval-seeds", "1000-1003", "--no-templates",
                "--global-weight", "0.2", steps=4)
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["generator.safetensors", "loss.png", "metrics.json", "preview_000002.png",
                     "preview_000004.png", "train_state.safetensors"]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("directional_similarity", "target_score", "diversity", "source_correspondence"):
        assert isinstance(metrics[f"{key}_before"], float) and isinstance(metrics[f"{key}_after"], float)
    assert metrics["directional_similarity_before"] == 0.0 and metrics["directional_similarity_after"] != 0.0
    assert metrics["steps"] == 4 and metrics["seconds_per_step"] > 0 and metrics["eval_seeds"] == [1000, 1001,
                                                                                                    1002, 1003]
    meta = read_metadata(out / "generator.safetensors")
    nada = meta["provenance"]["nada"]
    assert nada["direction"]["source_text"] == "photo" and nada["direction"]["target_text"] == "pencil sketch"
    assert nada["direction"]["templates"] is False
    assert nada["settings"]["global_weight"] == 0.2 and nada["settings"]["num_layers"] == 2
    assert meta["source_sha256"] == sha256_file(files["generator"])
    # Preview: 2 rows (source, adapted) x 4 seed columns of 16 px with 2 px gaps.
    with Image.open(out / "preview_000004.png") as im:
        assert im.size == (4 * 16 + 3 * 2, 2 * 16 + 2)
    with Image.open(out / "loss.png") as im:
        assert im.format == "PNG" and im.size[0] > 200
    # The adapted generator differs from the source only in the synthesis network.
    src, adapted = _params(files["generator"]), _params(out / "generator.safetensors")
    changed = {k for k in src if not torch.equal(src[k], adapted[k])}
    assert changed and all(k.startswith("synthesis.convs.") for k in changed)


def test_resume_continues_exactly(files, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ("--eval-seeds", "none", "--preview-every", "0", "--mixing", "0.9", "--interval", "2")
    assert _train(files, full, *common, steps=6) == 0
    assert _train(files, part, *common, steps=3) == 0
    assert read_state(part)[1]["step"] == 3
    # Resume needs only the folder and the new step count: inputs and settings come from the state.
    rc = cli.main(["train", "--resume", str(part), "--out", str(part), "--steps", "6", "--eval-seeds", "none",
                   "--device", "cpu", "--quiet"])
    assert rc == 0
    a, b = _params(full / "generator.safetensors"), _params(part / "generator.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_state(part)[1]["history"] == read_state(full)[1]["history"]


def test_resume_refuses_other_settings(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(files, out, "--eval-seeds", "none", steps=2) == 0
    rc = cli.main(["train", "--resume", str(out), "--out", str(out), "--steps", "4", "--lr", "0.05",
                   "--eval-seeds", "none", "--device", "cpu", "--quiet"])
    assert rc == 2
    assert "cannot resume" in capsys.readouterr().err


def test_ctrl_c_saves_what_it_has(files, tmp_path, monkeypatch, capsys):
    from nada_core import trainer as trainer_mod

    real_step = trainer_mod.NadaTrainer._step

    def step_then_ctrl_c(self):
        if self.step_index == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(trainer_mod.NadaTrainer, "_step", step_then_ctrl_c)
    out = tmp_path / "run"
    rc = _train(files, out, "--eval-seeds", "1000-1001", steps=10)
    assert rc == 130
    assert "--resume" in capsys.readouterr().err
    meta = read_metadata(out / "generator.safetensors")
    assert meta["provenance"]["nada"]["steps_done"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["steps"] == 2
    assert "directional_similarity_after" not in metrics
    load_generator(out / "generator.safetensors")


def test_two_clip_guides_with_weights_and_snapshots(files, tmp_path):
    out = tmp_path / "run"
    rc = cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--clip", files["clip_b"],
                   "--clip-weight", "1.0", "--clip-weight", "0.5", "--source", "photo", "--target", "sketch",
                   "--steps", "2", "--snapshot-every", "1", "--layers", "all", "--eval-seeds", "none",
                   "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    meta = read_metadata(out / "generator.safetensors")["provenance"]["nada"]
    assert [m["weight"] for m in meta["clip_models"]] == [1.0, 0.5]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["generator_000001.safetensors",
                                                                     "generator_000002.safetensors"]
    history = read_state(out)[1]["history"]
    assert any(k.startswith("directional/") for k in history[0])  # one loss curve per guide


def test_target_images_direction(files, tmp_path):
    from PIL import Image

    images = tmp_path / "examples"
    images.mkdir()
    for i, colour in enumerate([(240, 240, 240), (30, 30, 30)]):
        Image.new("RGB", (40, 24), colour).save(images / f"ex{i}.png")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    rc = cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--target-images",
                   str(images), "--source-samples", "4", "--steps", "2", "--eval-seeds", "none",
                   "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    nada = read_metadata(out / "generator.safetensors")["provenance"]["nada"]
    assert nada["direction"]["kind"] == "image" and nada["direction"]["num_target_images"] == 2


@pytest.mark.parametrize("args, message", [
    (["--layers", "few"], "layers"),
    (["--clip-weight", "1", "--clip-weight", "2"], "--clip-weight"),
    (["--steps", "0"], "steps"),
    (["--lr", "-1"], "lr"),
    (["--mixing", "2"], "mixing"),
])
def test_bad_arguments_give_one_line_errors(files, tmp_path, capsys, args, message):
    rc = _train(files, tmp_path / "run", "--eval-seeds", "none", *args, steps=2)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_missing_inputs_are_named(files, tmp_path, capsys):
    rc = cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--source", "photo",
                   "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"])
    assert rc == 2 and "--target" in capsys.readouterr().err
    rc = cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--target-images",
                   str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    rc = cli.main(["train", "--generator", files["generator"], "--source", "photo", "--target", "sketch",
                   "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"])
    assert rc == 2 and "--clip" in capsys.readouterr().err
    rc = cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--source", "photo",
                   "--target", "Photo", "--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"])
    assert rc == 2 and "same" in capsys.readouterr().err


def test_real_command_line_in_a_subprocess(files, tmp_path):
    clip_dir = save_tiny_clip(tmp_path / "clip", layout="hf")  # self-describing: works in a new process
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "nada_core", "train", "--generator", files["generator"],
                           "--clip", clip_dir, "--source", "photo", "--target", "pencil sketch", "--steps", "3",
                           "--layers", "2", "--preview-every", "3", "--eval-seeds", "1000-1001", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nada train" in proc.stderr and "3/3" in proc.stderr  # the tqdm bar
    assert "directional=" in proc.stderr  # current losses on the bar
    assert (out / "generator.safetensors").is_file() and (out / "preview_000003.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3


def test_demo_training_writes_outputs_and_says_weights_are_random(tmp_path):
    from nada_core.training.demo import run_demo_training, tiny_random_clip

    lines = []
    result = run_demo_training(tmp_path / "demo", steps=3, device="cpu",
                               generator=tiny_generator(16), say=lines.append)
    assert any("RANDOM weights" in line and "abstract" in line for line in lines)
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"generator.safetensors", "train_state.safetensors", "loss.png", "metrics.json",
            "preview_000003.png"} <= names
    assert result["steps"] == 3 and result["directional_similarity_before"] == 0.0
    assert result["directional_similarity_after"] != 0.0
    nada = read_metadata(tmp_path / "demo" / "generator.safetensors")["provenance"]["nada"]
    assert nada["direction"]["target_text"] == "pencil sketch"
    # The tiny random CLIP is reproducible and leaves the global RNG alone.
    state = torch.get_rng_state()
    a, b = tiny_random_clip(seed=3, image_size=32, width=64), tiny_random_clip(seed=3, image_size=32, width=64)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.encode_text(["photo"]), b.encode_text(["photo"]))


def _colours(img) -> set:
    import numpy as np

    return {tuple(int(c) for c in px) for px in np.asarray(img.convert("RGB")).reshape(-1, 3)}


def test_loss_plot_draws_each_series_and_survives_nan(tmp_path):
    from PIL import Image

    from nada_core.media.plots import _PALETTE, draw_loss_plot, ema, save_loss_plot

    assert ema([1.0, 1.0, 1.0], 0.1) == pytest.approx([1.0, 1.0, 1.0])  # bias-corrected: no pull to 0
    assert ema([2.0, 0.0], 0.5) == pytest.approx([2.0, 2.0 / 3.0])
    img = draw_loss_plot({"total": [1.0, float("nan"), 0.8, 0.7], "global": [0.9, 0.9, 0.85, 0.8]})
    colours = _colours(img)
    assert _PALETTE[0] in colours and _PALETTE[1] in colours  # both curves drawn in their colours
    empty = draw_loss_plot({"total": []})
    assert _PALETTE[0] not in _colours(empty)
    path = save_loss_plot({"total": [0.5]}, tmp_path / "one.png")
    with Image.open(path) as im:
        assert im.size == (800, 450)


def test_loss_series_draws_a_lone_term_once_as_the_total():
    from nada_core.training.run import loss_series

    one = [{"total": 1.0, "directional": 1.0}, {"total": 0.5, "directional": 0.5}]
    assert loss_series(one) == {"total (= directional)": [1.0, 0.5]}
    two = [{"total": 1.5, "directional": 1.0, "global": 0.5}]
    assert loss_series(two) == {"total": [1.5], "directional": [1.0], "global": [0.5]}
    weighted = [{"total": 2.0, "directional": 1.0}]  # weight 2: different curves, both shown
    assert loss_series(weighted) == {"total": [2.0], "directional": [1.0]}


def test_real_ctrl_c_in_a_subprocess_saves_and_exits_130(files, tmp_path):
    import signal
    import time

    clip_dir = save_tiny_clip(tmp_path / "clip", layout="hf")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nada_core", "train", "--generator", files["generator"],
                             "--clip", clip_dir, "--source", "photo", "--target", "pencil sketch", "--steps", "100000",
                             "--layers", "2", "--preview-every", "2", "--eval-seeds", "1000-1001", "--device", "cpu",
                             "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not (out / "preview_000004.png").exists():  # training is under way
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    steps = read_metadata(out / "generator.safetensors")["provenance"]["nada"]["steps_done"]
    assert 4 <= steps < 100000
    assert read_state(out)[1]["step"] == steps
    load_generator(out / "generator.safetensors")
    assert json.loads((out / "metrics.json").read_text())["interrupted"] is True
    # The printed way to continue runs as printed (from any folder; one more step to keep it short).
    hint = err.split("continue with: ", 1)[1].strip().splitlines()[0]
    assert f"--resume {out.resolve()} --out {out.resolve()} --device cpu" in hint
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    more = subprocess.run(["bash", "-c", f"{hint} --steps {steps + 1} --eval-seeds none --quiet"], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr
    assert read_state(out)[1]["step"] == steps + 1


def test_cli_and_node_share_one_pipeline_and_give_identical_runs(files, tmp_path, monkeypatch):
    """A short seeded run through `nada train` and through the NadaTrain node: same weights, same losses."""
    import nada_core.training.run as run_mod
    from nada_core.guidance.clip import load_clip_ensemble
    from nada_core.guidance.directions import text_direction
    from nodes import NODE_CLASS_MAPPINGS

    calls = []
    real = run_mod.run_training

    def spy(trainer, *a, **kw):
        outcome = real(trainer, *a, **kw)
        calls.append(outcome)
        return outcome

    monkeypatch.setattr(run_mod, "run_training", spy)
    out = tmp_path / "cli"
    assert _train(files, out, "--eval-seeds", "1000-1003", "--mixing", "0.5", "--seed", "3", steps=3) == 0
    G = load_generator(files["generator"])
    clip = load_clip_ensemble([(files["clip"], 1.0)], device="cpu")
    direction = text_direction(clip, "photo", "pencil sketch", templates=True)
    with torch.inference_mode():  # as ComfyUI runs nodes
        adapted = NODE_CLASS_MAPPINGS["NadaTrain"]().train(
            G, clip, direction, steps=3, batch=2, lr=0.01, layers="2", interval=1, falloff=0, mixing=0.5,
            global_weight=0.0, angle_weight=0.0, seed=3, preview_every=0, preview_seeds="0-3")[0]
    assert len(calls) == 2  # both paths went through the one pipeline
    cli_outcome, node_outcome = calls
    assert cli_outcome.loss_series == node_outcome.loss_series
    assert cli_outcome.loss_series == run_mod.loss_series(read_state(out)[1]["history"])
    cli_params = _params(out / "generator.safetensors")
    node_params = dict(adapted.named_parameters())
    assert cli_params.keys() == node_params.keys()
    assert all(torch.equal(cli_params[k], node_params[k].cpu()) for k in cli_params)
    assert any(not torch.equal(cli_params[k], v) for k, v in G.named_parameters())  # training changed something


def test_shared_outputs_carry_file_names_and_hashes_not_folders(files, tmp_path):
    """The absolute paths ``--resume`` needs stay in train_state.safetensors (the run's own folder);
    the files people share (generator, snapshots, domain, metrics, the exported .pt) name the source
    generator and CLIP weights by file name and sha256 only."""
    images = tmp_path / "private_examples"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (24, 24), (200, 30, 30)).save(images / "ex.png")
    runs = {"full": ["--snapshot-every", "1"], "domain": ["--adapt", "domain"]}
    for name, extra in runs.items():
        assert cli.main(["train", "--generator", files["generator"], "--clip", files["clip"], "--target-images",
                         str(images), "--source-samples", "2", "--steps", "1", "--eval-seeds", "none", "--device",
                         "cpu", "--out", str(tmp_path / name), "--quiet", *extra]) == 0
    exported = tmp_path / "export.pt"
    assert cli.main(["export", "--generator", str(tmp_path / "full" / "generator.safetensors"), "--out", str(exported),
                     "--custom-layout"]) == 0
    shared = [exported, *(p for p in tmp_path.rglob("*") if p.is_file() and p.name != "train_state.safetensors"
                          and p.parent != images)]
    assert {p.name for p in shared} >= {"generator.safetensors", "generator_000001.safetensors", "domain.safetensors",
                                        "metrics.json", "export.pt"}
    secrets = [str(Path(files["root"]).resolve()).encode(), str(images.resolve()).encode()]
    for path in shared:
        data = path.read_bytes()
        assert not any(s in data for s in secrets), f"{path.name} names a private folder"
    nada = read_metadata(tmp_path / "full" / "generator.safetensors")["provenance"]["nada"]
    assert nada["source_file"] == "source.safetensors" and nada["source_sha256"] == sha256_file(files["generator"])
    assert all(":" not in m["name"] or "/" not in m["name"] for m in nada["clip_models"])
    # --resume needs the real path: it stays in the training state, inside the run folder.
    assert read_state(tmp_path / "full")[1]["extra"]["generator"] == str(Path(files["generator"]).resolve())
