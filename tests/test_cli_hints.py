"""Every command the CLI prints as a hint runs as printed, in the context it was printed in.

After the README's ComfyUI route (a clone in ``custom_nodes`` + ``pip install -r requirements.txt``)
the pack is not installed: there is no ``nada`` command and ``python -m nada_core`` works only from
the pack's folder. The hints must say so (``cd <pack> && python -m nada_core ...``); with the
console script they say ``nada ...``; installed, ``python -m nada_core ...`` from anywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from nada_core.cli import main
from nada_core.commands import common

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def not_installed(monkeypatch):
    """The ComfyUI route: the pack's folder holds nada_core, but no distribution is installed."""
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    monkeypatch.setattr(sys, "argv", [str(REPO / "nada_core" / "__main__.py")])


def test_prefix_follows_how_nada_was_started(monkeypatch, not_installed):
    assert common.command_prefix() == f"cd {REPO} && {sys.executable} -m nada_core"
    monkeypatch.setattr(sys, "argv", ["/home/me/.venv/bin/nada", "queue"])
    assert common.command_prefix() == "nada"
    monkeypatch.setattr(metadata, "distribution", lambda name: object())
    monkeypatch.setattr(sys, "argv", ["/x/nada_core/__main__.py"])
    assert common.command_prefix() == f"{sys.executable} -m nada_core"
    assert common.command_line("queue", "--resume", "/a b/r.jsonl").endswith("queue --resume '/a b/r.jsonl'")


def test_queue_resume_hint_runs_as_printed(tmp_path, capsys, not_installed):
    from tests.test_queue_scheduler import FakeComfy

    fake = FakeComfy(0.02)
    try:
        rejected = []

        def reject_first(handler, body):  # the first prompt is refused once, then the server is fine
            if rejected:
                return False
            rejected.append(1)
            handler.reply(400, {"error": {"message": "Prompt outputs failed validation"},
                                "node_errors": {"1": {"class_type": "EmptyImage",
                                                      "errors": [{"message": "busy", "details": "width"}]}}})
            return True

        fake.hooks["prompt"] = reject_first
        wf = tmp_path / "w.json"
        wf.write_text(json.dumps({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}))
        report = tmp_path / "runs.jsonl"
        rc = main(["queue", "--workflow", str(wf), "--sweep", "1.color=1,2", "--server", fake.url,
                   "--max-in-flight", "1", "--report", str(report), "--quiet", "--no-websocket",
                   "--poll-interval", "0.05"])
        out = capsys.readouterr().out
        assert rc == 1, out
        hint = next(line.split("with: ", 1)[1] for line in out.splitlines() if "re-queue the 1 unfinished" in line)
        assert hint.startswith(f"cd {REPO} && ") and f"--server {fake.url}" in hint
        # Run it as printed, from another folder, in a shell: the unfinished variant now succeeds.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        done = subprocess.run(["bash", "-c", hint], cwd=elsewhere, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = [json.loads(x) for x in report.read_text().splitlines()]
        assert [r["status"] for r in lines] .count("success") == 2 and len(lines) == 3
    finally:
        fake.shutdown()
