"""``nada queue`` command line without a ComfyUI server: dry runs, errors, resume, dead servers."""

from __future__ import annotations

import json
import socket

import pytest

from nada_core.cli import main

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
          "_meta": {"title": "Canvas"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


@pytest.fixture
def workflow(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps(WORKFLOW))
    return p


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_dry_run_lists_variants_without_contacting_servers(workflow, capsys):
    rc = main(["queue", "--workflow", str(workflow), "--sweep", "Canvas.width=8,16", "--sweep", "1.color=1-2",
               "--set", "2.filename_prefix=run", "--server", dead_url(), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("v")]
    assert lines == ['v000  2.filename_prefix="run" 1.width=8 1.color=1',
                     'v001  2.filename_prefix="run" 1.width=8 1.color=2',
                     'v002  2.filename_prefix="run" 1.width=16 1.color=1',
                     'v003  2.filename_prefix="run" 1.width=16 1.color=2']
    assert "4 variant(s)" in out


def test_user_errors_exit_2_with_one_line(tmp_path, workflow, capsys):
    ui = tmp_path / "canvas.json"
    ui.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
    assert main(["queue", "--workflow", str(ui), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Export (API)" in err
    assert main(["queue", "--workflow", str(workflow), "--set", "Canvas.width=wide", "--dry-run"]) == 2
    assert "'wide' is not an integer" in capsys.readouterr().err
    assert main(["queue", "--dry-run"]) == 2
    assert "--workflow" in capsys.readouterr().err
    assert main(["queue", "--workflow", str(workflow), "--server", "ftp://x", "--dry-run"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err


def test_dead_server_fails_every_variant_in_bounded_time(tmp_path, workflow, capsys):
    report = tmp_path / "r.jsonl"
    rc = main(["queue", "--workflow", str(workflow), "--sweep", "1.color=1-3", "--server", dead_url(),
               "--down-timeout", "0.5", "--report", str(report), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 1
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(r["index"] for r in records) == [0, 1, 2]
    assert {r["status"] for r in records} == {"unreachable"}
    assert all("no server answered" in r["error"] and r["prompt_id"] is None for r in records)
    assert "3 unreachable" in out and f"--resume {report}" in out


def test_resume_dry_run_skips_successes(tmp_path, workflow, capsys):
    report = tmp_path / "r.jsonl"
    lines = [{"index": 0, "overrides": {"1.color": 1}, "status": "success", "workflow": str(workflow)},
             {"index": 1, "overrides": {"1.color": 2}, "status": "invalid", "workflow": str(workflow)},
             {"index": 2, "overrides": {"1.color": 3}, "status": "unreachable", "workflow": str(workflow)}]
    report.write_text("".join(json.dumps(r) + "\n" for r in lines))
    # from the report alone (workflow path recorded in it)
    assert main(["queue", "--resume", str(report), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "v001  1.color=2" in out and "v002  1.color=3" in out and "v000" not in out.split("skipped")[-1]
    # with the original sweep: same selection, plus new values of a longer sweep
    assert main(["queue", "--workflow", str(workflow), "--sweep", "1.color=1-4", "--resume", str(report),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("  v")] == ["v001", "v002", "v003"]
    assert "1 variant(s) already succeeded" in out


def test_resume_of_finished_report_has_nothing_to_do(tmp_path, workflow, capsys):
    report = tmp_path / "r.jsonl"
    report.write_text(json.dumps({"index": 0, "overrides": {}, "status": "success", "workflow": str(workflow)}) + "\n")
    assert main(["queue", "--resume", str(report), "--server", dead_url()]) == 0
    assert "nothing to do" in capsys.readouterr().out
