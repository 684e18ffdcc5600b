"""``nada queue`` against real ComfyUI servers started on loopback ports (skipped without ComfyUI).

Workflows use only built-in nodes and no models: EmptyImage -> ImageBlur (xN) -> SaveImage.
A 512x512 blur of radius 31 takes about a second on one CPU thread, which makes slow jobs; the
interrupt flag is checked between nodes, so a chain of blurs can be cancelled mid-way.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from nada_core.cli import main
from nada_queue.workflow_io import load_workflow

from tests.comfy_server import ServerStartError, start_servers, stop_servers, unavailable_reason

REPO = Path(__file__).resolve().parent.parent


def workflow(size: int = 64, blurs: int = 1, radius: int = 2, color: int = 0, prefix: str = "nadaq") -> dict:
    wf = {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                       "color": color}, "_meta": {"title": "Canvas"}}}
    prev = "1"
    for i in range(blurs):
        nid = str(10 + i)
        wf[nid] = {"class_type": "ImageBlur", "inputs": {"image": [prev, 0], "blur_radius": radius, "sigma": 5.0},
                   "_meta": {"title": f"Blur {i}"}}
        prev = nid
    wf["2"] = {"class_type": "ImageScale", "inputs": {"image": [prev, 0], "upscale_method": "nearest-exact",
                                                      "width": 16, "height": 16, "crop": "disabled"}}
    wf["3"] = {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix},
               "_meta": {"title": "Save"}}
    return wf


def write(tmp_path: Path, wf: dict, name: str = "wf.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(wf))
    return p


def records(report: Path) -> list[dict]:
    return [json.loads(line) for line in report.read_text().splitlines() if line.strip()]


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 255, (color >> 8) & 255, color & 255


def prompts_of(server, client_id: str) -> dict[str, dict]:
    """History entries of ``server`` queued by ``client_id`` (prompt id -> API prompt)."""
    history = server.get("/history")
    return {pid: e["prompt"][2] for pid, e in history.items() if e["prompt"][3].get("client_id") == client_id}


def queued_by(server, prefix: str) -> tuple[list[str], list[str]]:
    """(running, pending) prompt ids on ``server`` whose client id starts with ``prefix``."""
    q = server.get("/queue")
    pick = lambda items: [i[1] for i in items if str(i[3].get("client_id", "")).startswith(prefix)]  # noqa: E731
    return pick(q["queue_running"]), pick(q["queue_pending"])


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """Three servers, started together: A and B for most tests, a third one to kill."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    try:
        servers = start_servers(3, tmp_path_factory.mktemp("comfy"), timeout=150)
    except ServerStartError as err:
        if "ModuleNotFoundError" in str(err) or "ImportError" in str(err):
            pytest.skip(f"ComfyUI's dependencies do not import: {str(err).splitlines()[-1]}")
        raise
    yield servers
    stop_servers(servers)


def run_cli(*args: str) -> int:
    return main(["queue", *args])


def test_sweep_over_two_servers_runs_each_variant_once(comfy, tmp_path, capsys):
    a, b = comfy[0], comfy[1]
    colors = [0x102030 + 0x050301 * i for i in range(6)]
    wf = write(tmp_path, workflow(size=256, radius=31))  # ~0.3 s a job: both servers get work
    dl, report = tmp_path / "dl", tmp_path / "report.jsonl"
    rc = run_cli("--workflow", str(wf), "--sweep", "Canvas.color=" + ",".join(map(str, colors)),
                 "--server", a.url, "--server", b.url, "--max-in-flight", "1", "--download", str(dl),
                 "--report", str(report))
    out = capsys.readouterr().out
    assert rc == 0, out
    recs = records(report)
    assert sorted(r["index"] for r in recs) == list(range(6))
    assert {r["status"] for r in recs} == {"success"}
    assert {r["server"] for r in recs} == {a.url, b.url}
    run_id = recs[0]["run_id"]
    ran = {**prompts_of(a, run_id), **prompts_of(b, run_id)}
    assert set(ran) == {r["prompt_id"] for r in recs}  # each variant ran exactly once
    for r in recs:
        color = r["overrides"]["1.color"]
        assert ran[r["prompt_id"]]["1"]["inputs"]["color"] == color
        assert r["wait_seconds"] is not None and r["run_seconds"] > 0
        (ref,) = r["outputs"]["3"]
        server = a if r["server"] == a.url else b
        assert (server.output_dir / ref["subfolder"] / ref["filename"]).is_file()
        local = Path(ref["local"])
        assert local.parent == dl / r["label"]
        with Image.open(local) as im:  # the downloaded file is this variant's image
            assert im.size == (16, 16)
            pixel = im.convert("RGB").getpixel((5, 5))
        # the blur kernel sums to 1 up to rounding: allow one or two levels of 255
        assert all(abs(p - q) <= 2 for p, q in zip(pixel, rgb(color))), (pixel, rgb(color))
        # ComfyUI embedded the prompt in the PNG: it can be queued again as it is
        assert load_workflow(local) == ran[r["prompt_id"]]
    assert "6 success" in out


def test_invalid_and_failing_variants_do_not_stop_the_rest(comfy, tmp_path, capsys):
    a = comfy[0]
    # width -5 fails validation (HTTP 400); width 16 passes it but a radius-31 blur cannot pad 16 px
    wf = write(tmp_path, workflow(size=64, radius=31, color=0x336699))
    report = tmp_path / "r.jsonl"
    rc = run_cli("--workflow", str(wf), "--sweep", "Canvas.width=64,-5,16,72", "--server", a.url,
                 "--report", str(report), "--quiet")
    out = capsys.readouterr().out
    assert rc == 1
    by_index = {r["index"]: r for r in records(report)}
    assert [by_index[i]["status"] for i in range(4)] == ["success", "invalid", "error", "success"]
    invalid = by_index[1]["error"]
    assert "node 1 (EmptyImage)" in invalid and "-5" in invalid and "width" in invalid
    assert by_index[1]["prompt_id"] is None
    assert by_index[2]["error"].startswith("node 10 (ImageBlur): RuntimeError")
    assert by_index[0]["outputs"]["3"] and by_index[3]["outputs"]["3"]
    assert "2 success" in out and "1 invalid" in out and "1 error" in out


def test_report_and_download_hold_text_outputs(comfy, tmp_path, capsys):
    """What nodes show as text (ComfyUI's Preview Any here; NADA's metrics and saved names the same
    way) reaches the report line and the download folder."""
    a = comfy[0]
    wf = workflow(color=0x101010)
    wf["20"] = {"class_type": "PrimitiveString", "inputs": {"value": "x"}, "_meta": {"title": "Domain"}}
    wf["21"] = {"class_type": "PreviewAny", "inputs": {"source": ["20", 0]}, "_meta": {"title": "Shown"}}
    report, dl = tmp_path / "r.jsonl", tmp_path / "dl"
    rc = run_cli("--workflow", str(write(tmp_path, wf)), "--sweep", "Domain.value=pencil sketch,oil painting",
                 "--server", a.url, "--download", str(dl), "--report", str(report), "--quiet")
    assert rc == 0, capsys.readouterr().out
    recs = sorted(records(report), key=lambda r: r["index"])
    for r, text in zip(recs, ["pencil sketch", "oil painting"]):
        assert r["texts"]["21"] == {"class_type": "PreviewAny", "title": "Shown", "text": [text]}
        assert r["saved"] == []
        local = json.loads(Path(r["texts_local"]).read_text(encoding="utf-8"))
        assert Path(r["texts_local"]).parent == dl / r["label"] and local["texts"]["21"]["text"] == [text]


def test_polling_without_websocket(comfy, tmp_path, capsys):
    b = comfy[1]
    wf = write(tmp_path, workflow(color=0x0A0B0C))
    report = tmp_path / "r.jsonl"
    rc = run_cli("--workflow", str(wf), "--sweep", "Save.filename_prefix=poll_a,poll_b", "--server", b.url,
                 "--no-websocket", "--poll-interval", "0.1", "--report", str(report))
    assert rc == 0, capsys.readouterr().out
    recs = records(report)
    assert {r["status"] for r in recs} == {"success"}
    assert sorted(r["outputs"]["3"][0]["filename"].split("_")[1] for r in recs) == ["a", "b"]


def test_resume_runs_only_what_did_not_succeed(comfy, tmp_path, capsys):
    a = comfy[0]
    wf = write(tmp_path, workflow(color=0))
    report = tmp_path / "r.jsonl"
    assert run_cli("--workflow", str(wf), "--sweep", "Canvas.color=11,12", "--server", a.url,
                   "--report", str(report), "--quiet") == 0
    # the sweep grows: only the new values run, and the same report gains their lines
    assert run_cli("--workflow", str(wf), "--sweep", "Canvas.color=11-14", "--server", a.url,
                   "--resume", str(report), "--quiet") == 0
    recs = records(report)
    assert sorted(r["index"] for r in recs[:2]) == [0, 1]
    assert sorted(r["index"] for r in recs[2:]) == [2, 3] and len(recs) == 4
    second_run = recs[2]["run_id"]
    assert second_run != recs[0]["run_id"]
    ran = prompts_of(a, second_run)
    assert sorted(p["1"]["inputs"]["color"] for p in ran.values()) == [13, 14]
    capsys.readouterr()


def spawn_queue(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nada_core", "queue", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ctrl_c_removes_only_this_runs_prompts(comfy, tmp_path):
    a = comfy[0]
    # another user's long job runs, our two wait behind it, then another user's job waits behind ours
    theirs_running = a.post("/prompt", {"prompt": workflow(512, blurs=10, radius=31, color=101),
                                        "client_id": "someone-else"})["prompt_id"]
    a.wait_for(lambda: a.queue_ids()[0] == [theirs_running], what="foreign job running")
    report = tmp_path / "r.jsonl"
    proc = spawn_queue("--workflow", str(write(tmp_path, workflow(color=7))), "--sweep", "Canvas.color=7,8",
                       "--server", a.url, "--max-in-flight", "2", "--report", str(report))
    try:
        def our_two_pending():
            pending = queued_by(a, "nada-queue-")[1]
            return pending if len(pending) == 2 else None

        ours = a.wait_for(our_two_pending, timeout=30, what="our two prompts pending")
        theirs_pending = a.post("/prompt", {"prompt": workflow(color=102), "client_id": "someone-else"})["prompt_id"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    running, pending = a.queue_ids()
    assert running == [theirs_running]  # not ours: left running
    assert pending == [theirs_pending]  # ours deleted, theirs kept
    recs = records(report)
    assert sorted(r["prompt_id"] for r in recs) == sorted(ours)
    assert {r["status"] for r in recs} == {"cancelled"}
    assert all("removed from the server queue" in r["error"] for r in recs)
    a.post("/interrupt", {"prompt_id": theirs_running})  # done with it; let the other job through
    entry = a.wait_for(lambda: a.history(theirs_pending), timeout=60, what="foreign pending job finished")
    assert entry["status"]["status_str"] == "success"
    assert all(a.history(pid) is None for pid in ours)  # ours never ran


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_cancel_interrupts_our_running_prompt(comfy, tmp_path, sig, code):
    a = comfy[0]
    a.wait_for(lambda: a.queue_ids() == ([], []), timeout=60, what="idle server")
    report = tmp_path / "r.jsonl"
    proc = spawn_queue("--workflow", str(write(tmp_path, workflow(512, blurs=10, radius=31, color=103 + code))),
                       "--server", a.url, "--report", str(report))
    try:
        (pid,) = a.wait_for(lambda: queued_by(a, "nada-queue-")[0], timeout=30, what="our prompt running")
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    (rec,) = records(report)
    assert rec["prompt_id"] == pid and rec["status"] == "cancelled" and "interrupted" in rec["error"]
    entry = a.wait_for(lambda: a.history(pid), timeout=20, what="interrupted prompt in history")
    events = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in events and entry["status"]["status_str"] == "error"


def test_killed_server_jobs_finish_on_the_other(comfy, tmp_path, capsys):
    victim, b = comfy[2], comfy[1]
    b.wait_for(lambda: b.queue_ids() == ([], []), timeout=60, what="idle server")
    colors = list(range(201, 207))
    wf = write(tmp_path, workflow(512, blurs=1, radius=31))  # about 1 s a job
    report = tmp_path / "r.jsonl"
    lost = {}

    def kill_victim_when_busy():
        def ours_running():
            q = victim.get("/queue")["queue_running"]
            return q[0] if q else None
        try:
            item = victim.wait_for(ours_running, timeout=30, what="a job running on the victim")
        except Exception:
            return
        victim.kill()
        lost["color"] = item[2]["1"]["inputs"]["color"]

    killer = threading.Thread(target=kill_victim_when_busy, daemon=True)
    killer.start()
    rc = run_cli("--workflow", str(wf), "--sweep", "Canvas.color=" + ",".join(map(str, colors)),
                 "--server", victim.url, "--server", b.url, "--max-in-flight", "1", "--report", str(report))
    killer.join(5)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert not victim.alive() and "color" in lost
    recs = records(report)
    assert sorted(r["index"] for r in recs) == list(range(6))
    assert {r["status"] for r in recs} == {"success"}
    moved = [r for r in recs if r["overrides"]["1.color"] == lost["color"]]
    assert len(moved) == 1 and moved[0]["server"] == b.url and moved[0]["attempts"] == 2
    assert "moving it to another server" in out
