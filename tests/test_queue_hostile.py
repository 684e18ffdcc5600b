"""``nada queue`` against hostile servers: every run ends, in seconds, with one line per variant.

Each server is built here in-process on 127.0.0.1 (the fakes ComfyUI of ``test_queue_scheduler``
with one route replaced, or a scripted websocket), with small limits so every case ends fast.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nada_queue.answers import event_of
from nada_queue.comfy_client import BadAnswer, ComfyClient, Limits, Unreachable
from nada_queue.scheduler import Backoff, BatchRunner, RunOptions, ServerWorker
from nada_queue.websocket import OP_CLOSE, OP_TEXT, accept_key
from tests.test_queue_scheduler import WORKFLOW, FakeComfy, Recorder, fakes, make_jobs  # noqa: F401 (fixture)
from tests.test_queue_websocket import server_frame

REPO = Path(__file__).resolve().parent.parent
LIMITS = Limits(timeout=0.5, deadline=0.8, download_deadline=0.8, max_json_bytes=4096,
                max_download_bytes=1000, max_ws_message=4096)


def run(servers, jobs, seconds=10.0, **opts):
    """Run ``jobs``; assert it ends within ``seconds`` with one final line per job."""
    finished, events = [], Recorder()
    options = dict(poll_interval=0.05, min_backoff=0.05, max_backoff=0.3, down_timeout=3.0,
                   safety_check_interval=0.3, limits=LIMITS, use_websocket=False)
    options.update(opts)
    runner = BatchRunner(servers, jobs, RunOptions(**options), events=events, on_final=finished.append)
    t0 = time.monotonic()
    runner.run()
    assert time.monotonic() - t0 < seconds
    assert sorted(j.variant.index for j in finished) == sorted(j.variant.index for j in jobs)
    for job in jobs:
        assert job.final and (job.error is None or "\n" not in job.error)
    return events


def raw(status: int, data: bytes, headers: dict | None = None):
    """A hook answering ``data`` as it is (no JSON encoding)."""
    def hook(handler, body):
        handler.send_response(status)
        for k, v in ({"Content-Length": str(len(data))} if headers is None else headers).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)
    return hook


def trickle(data: bytes = b'{"system": {}}' + b" " * 400, every: float = 0.05):
    """A hook sending its answer one byte at a time, each in time for the socket timeout."""
    def hook(handler, body):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for i in range(len(data)):
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the client hung up: what we want
    return hook


def history_of(fake_server, entry):
    """A /history hook answering ``entry`` (any JSON) for prompts the fakes has run."""
    def hook(handler, body):
        pid = handler.path.rsplit("/", 1)[1]
        with fake_server.lock:
            done = pid in fake_server.history
        handler.reply(200, {pid: entry} if done else {})
    return hook


# ---------------------------------------------------------------------------- HTTP answers
@pytest.mark.parametrize("route,answer,status,text", [
    ("prompt", raw(200, b"[1, 2]"), "error", "/prompt answer is an array, expected an object"),
    ("prompt", raw(200, b'{"prompt_id": {"a": 1}}'), "error", "no usable prompt_id (got an object)"),
    ("prompt", raw(200, b'\xff\xfe{"prompt_id": "x"}'), "error", "not UTF-8"),
    ("prompt", raw(200, b"[" * 2000), "error", "nested deeper"),
    ("prompt", raw(400, b'["not", "an", "object"]'), "invalid", "not"),
    ("prompt", raw(400, b"\x80\x81"), "invalid", "\ufffd"),
    ("prompt", raw(200, b"{}", {"Content-Length": str(1 << 40)}), "error", "more than the cap of 4096"),
    ("prompt", raw(200, b"x" * 5000, {}), "error", "sent more than 4096 bytes"),
    ("history", raw(200, b"[]"), "error", "is an array, expected an object"),
    ("history", raw(200, b'{"a": '), "error", "not valid JSON"),
])
def test_bad_http_answers_end_the_variant(fakes, route, answer, status, text):
    server = fakes()
    server.hooks[route] = answer
    jobs = make_jobs("1.color=1,2")
    run([server.url], jobs)
    assert [j.status for j in jobs] == [status, status]
    assert all(text in j.error for j in jobs), jobs[0].error


@pytest.mark.parametrize("entry,text", [
    ({"outputs": [1, 2], "status": {}}, "outputs of prompt"),
    ({"outputs": {"9": "x"}, "status": {}}, "outputs of node 9 is a string"),
    ({"outputs": {}, "status": "done"}, "status of prompt"),
    ({"outputs": {}, "status": {"messages": {"a": 1}}}, "status messages"),
    ({"outputs": {}, "status": {"status_str": 5}}, "status_str"),
    ("entry", "entry of prompt"),
])
def test_wrong_history_shapes_end_only_that_job(fakes, entry, text):
    server = fakes()
    server.hooks["history"] = history_of(server, entry)
    jobs = make_jobs("1.color=1,2")
    run([server.url], jobs)
    assert {j.status for j in jobs} == {"error"} and all(text in j.error for j in jobs), jobs[0].error


def test_history_timestamps_and_messages_of_any_type_do_not_break_a_success(fakes):
    server = fakes()
    entry = {"outputs": {"9": {"images": [{"filename": 5}, "x", {"filename": "ok.png"}]}},
             "status": {"status_str": "success", "completed": "yes",
                        "messages": [["execution_start", {"timestamp": "noon"}], ["execution_success", 1e400],
                                     "junk", [1, 2], ["execution_success", {"timestamp": float("inf")}]]}}
    server.hooks["history"] = history_of(server, entry)
    jobs = make_jobs("1.color=1")
    run([server.url], jobs)
    assert jobs[0].status == "success" and jobs[0].outputs["9"][0]["filename"] == "ok.png"
    assert jobs[0].run_seconds is None or jobs[0].run_seconds >= 0


def test_wrong_queue_shape_ends_the_unfinished_jobs(fakes):
    server = fakes(delay=5.0)  # history says "not yet", so the client asks /queue
    server.hooks["queue"] = raw(200, b'{"queue_running": {"x": 1}, "queue_pending": []}')
    jobs = make_jobs("1.color=1")
    run([server.url], jobs)
    assert jobs[0].status == "error" and "queue_running is an object, expected an array" in jobs[0].error


@pytest.mark.parametrize("answer,text", [
    (raw(200, b"x", {"Content-Length": str(1 << 50)}), "announced 1125899906842624 bytes, more than the cap"),
    (raw(200, b"x" * 5000, {}), "sent more than 1000 bytes"),
    (trickle(b"y" * 400), "no whole answer within 0.8 s"),
    (raw(200, b"short", {"Content-Length": "100"}), "ended 95 bytes short of its Content-Length"),
])
def test_downloads_are_capped_in_size_and_time(fakes, tmp_path, answer, text):
    server = fakes()
    server.hooks["view"] = answer
    jobs = make_jobs("1.color=1")
    run([server.url], jobs, download_dir=tmp_path / "dl")
    assert jobs[0].status == "error" and "could not be downloaded" in jobs[0].error and text in jobs[0].error
    assert not list((tmp_path / "dl").rglob("*.png"))  # nothing half-written is left as a result
    assert not [p for p in (tmp_path / "dl").rglob("*") if p.is_file()]


def test_byte_by_byte_history_hits_the_deadline_and_the_job_gives_up(fakes):
    server = fakes()
    server.hooks["history"] = trickle()
    jobs = make_jobs("1.color=1")
    t0 = time.monotonic()
    run([server.url], jobs, max_attempts=3)
    assert jobs[0].status == "unreachable" and "failed 3 requests about it" in jobs[0].error
    assert "no whole answer within 0.8 s" in jobs[0].error
    assert time.monotonic() - t0 >= 3 * 0.8  # each request really waited for its deadline, no longer


def test_trickling_liveness_probe_counts_as_down(fakes):
    server = fakes()
    server.hooks["system_stats"] = trickle()
    jobs = make_jobs("1.color=1,2")
    run([server.url], jobs, down_timeout=1.0)
    assert [j.status for j in jobs] == ["unreachable"] * 2
    assert "no server answered for 1 s" in jobs[0].error and "0.8 s" in jobs[0].error


def test_reconnects_back_off_when_every_request_drops(fakes):
    server = fakes()

    def drop(handler, body):  # accept, then hang up without a word
        handler.close_connection = True
        handler.connection.shutdown(2)

    server.hooks["prompt"] = drop
    jobs = make_jobs("1.color=1")
    t0 = time.monotonic()
    run([server.url], jobs, max_attempts=4, min_backoff=0.1, max_backoff=0.4)
    took = time.monotonic() - t0
    assert jobs[0].status == "unreachable" and "failed 4 requests" in jobs[0].error
    assert server.hits["prompt"] == 4
    assert server.hits["system_stats"] <= 5  # one probe per reconnect, not a spin
    assert took >= 0.0 + 0.1 + 0.2 - 0.05  # at once after a good spell, then 0.1 s, 0.2 s ...


def test_backoff_is_bounded_exponential():
    b = Backoff(0.25, 2.0)
    assert [b.next() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    b.reset()
    assert b.next() == 0.25


def test_a_crashing_worker_ends_its_jobs_and_the_run(fakes, monkeypatch):
    server = fakes()

    def boom(self):
        raise ZeroDivisionError("bug in a check")

    monkeypatch.setattr(ServerWorker, "_poll_due", boom)
    jobs = make_jobs("1.color=1-4")
    run([server.url], jobs, max_in_flight=2)
    assert {j.status for j in jobs} == {"error"}
    assert all("ZeroDivisionError" in j.error for j in jobs)


def test_a_crash_in_one_worker_leaves_the_other_server_working(fakes, monkeypatch):
    good, bad = fakes(), fakes()
    real = ServerWorker._poll_due

    def maybe_boom(self):
        if self.url == bad.url and self.inflight:
            raise RuntimeError("odd")
        return real(self)

    monkeypatch.setattr(ServerWorker, "_poll_due", maybe_boom)
    jobs = make_jobs("1.color=1-6")
    run([bad.url, good.url], jobs, max_in_flight=1)
    on_bad = [j for j in jobs if j.server == bad.url]
    assert len(on_bad) == 1 and on_bad[0].status == "error" and "RuntimeError: odd" in on_bad[0].error
    assert all(j.status == "success" for j in jobs if j.server == good.url)


# ---------------------------------------------------------------------------- websocket
def ws_server(fake_server, script):
    """A /ws hook: handshake, then ``script(conn, pid)`` once for each prompt the fakes receives,
    then keep the connection until the client leaves (at most 10 s)."""
    def hook(handler, body):
        key = handler.headers["Sec-WebSocket-Key"]
        handler.send_response(101)
        handler.send_header("Upgrade", "websocket")
        handler.send_header("Connection", "Upgrade")
        handler.send_header("Sec-WebSocket-Accept", accept_key(key))
        handler.end_headers()
        handler.wfile.flush()
        handler.close_connection = True
        conn, seen, t0 = handler.connection, set(), time.monotonic()
        try:
            while time.monotonic() - t0 < 10:
                with fake_server.lock:
                    pids = [e[0] for e in fake_server.pending] + ([fake_server.running[0]] if fake_server.running else [])
                for pid in pids:
                    if pid not in seen:
                        seen.add(pid)
                        if script(conn, pid) == "hang up":
                            return
                time.sleep(0.02)
        except OSError:
            pass
    return hook


def text(obj) -> bytes:
    return server_frame(OP_TEXT, json.dumps(obj).encode())


@pytest.mark.parametrize("frames,note", [
    (lambda pid: text({"type": 5, "data": {}}), "type is a number"),
    (lambda pid: server_frame(OP_TEXT, b"not json"), "not valid JSON"),
    (lambda pid: server_frame(OP_TEXT, b'{"type": "\xff"}'), "not UTF-8"),
    (lambda pid: bytes([0x81, 127]) + struct.pack(">Q", 1 << 62), "larger than the cap"),
    (lambda pid: server_frame(0x3, b"?"), "unknown opcode 3"),
    (lambda pid: bytes([0x81 | 0x40, 1]) + b"x", "reserved bits"),
    (lambda pid: server_frame(OP_CLOSE, b"x" * 200), "control frame"),
])
def test_bad_websocket_frames_fall_back_to_polling(fakes, frames, note):
    server = fakes()
    server.hooks["ws"] = ws_server(server, lambda conn, pid: conn.sendall(frames(pid)))
    jobs = make_jobs("1.color=1,2")
    events = run([server.url], jobs, use_websocket=True, safety_check_interval=30.0)
    assert [j.status for j in jobs] == ["success"] * 2  # followed by polling, not by the 30 s safety check
    (line,) = [x for x in events.lines if "websocket unusable" in x]
    assert note in line and "polling" in line


def test_unfollowed_and_odd_status_events_are_ignored(fakes):
    server = fakes()

    def script(conn, pid):
        conn.sendall(text({"type": "status", "data": {"status": 7}}) + text({"type": "status", "data": "busy"})
                     + text({"type": "crystools.monitor", "data": [1]}) + text({"type": "progress", "data": 3})
                     + text({"type": "progress", "data": {"prompt_id": "someone-else", "value": "x"}})
                     + text({"type": "executing", "data": {"prompt_id": pid, "node": "1"}})
                     + server_frame(0x2, b"\x00" * 100))  # a binary preview

    server.hooks["ws"] = ws_server(server, script)
    jobs = make_jobs("1.color=1")
    events = run([server.url], jobs, use_websocket=True)
    assert jobs[0].status == "success"
    assert not any("websocket unusable" in x for x in events.lines)


@pytest.mark.parametrize("data,text_", [
    ({"value": "abc", "max": 10, "node": "1"}, "progress value is a string"),
    ({"value": 1, "max": None}, "progress max is null"),
    ({"value": True, "max": 2}, "progress value is a boolean"),
])
def test_malformed_progress_about_our_prompt_ends_that_job(fakes, data, text_):
    server = fakes(delay=1.0)
    server.hooks["ws"] = ws_server(server, lambda conn, pid: conn.sendall(
        text({"type": "progress", "data": {"prompt_id": pid, **data}})))
    jobs = make_jobs("1.color=1")
    run([server.url], jobs, use_websocket=True)
    assert jobs[0].status == "error" and text_ in jobs[0].error and "malformed event" in jobs[0].error


def test_websocket_closing_mid_frame_reconnects_then_polls(fakes):
    server = fakes(delay=0.3)

    def script(conn, pid):
        conn.sendall(bytes([0x81, 100]) + b'{"type": "exe')  # 100 bytes announced, 13 sent
        return "hang up"

    server.hooks["ws"] = ws_server(server, script)
    jobs = make_jobs("1.color=1-3")
    events = run([server.url], jobs, use_websocket=True, max_in_flight=1)
    assert [j.status for j in jobs] == ["success"] * 3
    assert server.hits["ws"] >= 2  # it reconnected after the cut frame ...
    assert any("websocket unusable (closed 3 times" in x for x in events.lines)  # ... then gave up on it


def test_event_schema_directly():
    known = {"p1": object()}
    assert event_of('{"type": "status", "data": {"status": 1}}', "ws", known) is None
    assert event_of('{"type": "progress", "data": {"prompt_id": "p2", "value": "x"}}', "ws", known) is None
    ev = event_of('{"type": "progress", "data": {"prompt_id": "p1", "value": 3, "max": 8, "node": 4}}', "ws", known)
    assert (ev.kind, ev.prompt_id, ev.node, ev.value, ev.maximum) == ("progress", "p1", "4", 3.0, 8.0)
    assert event_of('{"type": "executing", "data": {"prompt_id": "p1", "node": null}}', "ws", known).node is None
    for bad in ('[1]', '{"type": null}', '"x"', "{"):
        with pytest.raises(BadAnswer):
            event_of(bad, "ws", known)


def test_limits_from_env_are_checked():
    lim = Limits.from_env({"NADA_QUEUE_DEADLINE": "3", "NADA_QUEUE_MAX_JSON_BYTES": "100"}, timeout=1)
    assert (lim.deadline, lim.max_json_bytes, lim.timeout) == (3.0, 100, 1)
    with pytest.raises(Exception, match="NADA_QUEUE_DEADLINE='soon' is not a number"):
        Limits.from_env({"NADA_QUEUE_DEADLINE": "soon"})
    with pytest.raises(Exception, match="must be positive"):
        Limits.from_env({"NADA_QUEUE_MAX_JSON_BYTES": "0"})


def test_client_errors_are_one_line_and_typed(fakes):
    server = fakes()
    server.hooks["queue"] = trickle()
    client = ComfyClient(server.url, LIMITS)
    t0 = time.monotonic()
    with pytest.raises(Unreachable, match="no whole answer within 0.8 s; raise NADA_QUEUE_DEADLINE"):
        client.queue()
    assert time.monotonic() - t0 < 2
    server.hooks["queue"] = raw(200, b'{"queue_running": [["a"]]}')
    with pytest.raises(BadAnswer, match="has no prompt id"):
        client.queue()


# ---------------------------------------------------------------------------- signals + resume
def spawn(tmp_path, server_url, report, *extra):
    wf = tmp_path / "w.json"
    wf.write_text(json.dumps(WORKFLOW))
    env = dict(os.environ, NADA_QUEUE_TIMEOUT="0.5", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "nada_core", "queue", "--workflow", str(wf),
                             "--sweep", "1.color=1-4", "--server", server_url, "--report", str(report),
                             "--no-websocket", "--poll-interval", "0.05", "--request-timeout", "1", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def lines(report):
    return [json.loads(x) for x in report.read_text().splitlines() if x.strip()]


def wait_for(cond, seconds=15):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.mark.parametrize("sig,code,stuck", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False),
                                            (signal.SIGTERM, 143, True)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-while-a-request-trickles"])
def test_signal_mid_run_reports_every_variant_and_resume_redoes_them(fakes, tmp_path, sig, code, stuck):
    busy = fakes(delay=30.0)  # its first job never ends during the test
    if stuck:  # the second /prompt trickles: the worker is inside a request when the signal comes
        slow = trickle(b'{"prompt_id": "t"}' + b" " * 400, every=0.05)
        busy.hooks["prompt"] = lambda handler, body: False if busy.hits["prompt"] == 1 else slow(handler, body)
    report = tmp_path / "r.jsonl"
    proc = spawn(tmp_path, busy.url, report, "--max-in-flight", "2" if stuck else "1")
    try:
        wait_for(lambda: busy.running is not None)
        if stuck:
            wait_for(lambda: busy.hits.get("prompt", 0) >= 2)
            time.sleep(0.2)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    recs = lines(report)
    assert sorted(r["index"] for r in recs) == [0, 1, 2, 3], out  # a line for every variant
    assert {r["status"] for r in recs} <= {"cancelled", "interrupted"}
    assert all(r["error"] and "\n" not in r["error"] for r in recs)
    assert busy.interrupts == [busy.running[0]]  # our running prompt was interrupted

    good = fakes()
    proc = subprocess.run([sys.executable, "-m", "nada_core", "queue", "--resume", str(report),
                           "--server", good.url, "--no-websocket", "--poll-interval", "0.05", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = lines(report)
    assert len(recs) == 8 and sorted(r["index"] for r in recs[4:]) == [0, 1, 2, 3]
    assert {r["status"] for r in recs[4:]} == {"success"} and len(good.executed) == 4


def test_cli_prints_one_line_per_failed_variant(fakes, tmp_path, capsys, monkeypatch):
    from nada_core.cli import main

    server = fakes()
    server.hooks["prompt"] = raw(200, b'{"prompt_id": ["x"]}')
    wf = tmp_path / "w.json"
    wf.write_text(json.dumps(WORKFLOW))
    report = tmp_path / "r.jsonl"
    monkeypatch.setenv("NADA_QUEUE_TIMEOUT", "0.5")
    rc = main(["queue", "--workflow", str(wf), "--sweep", "1.color=1,2", "--server", server.url, "--quiet",
               "--no-websocket", "--request-timeout", "1", "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 1
    finals = [x for x in out.splitlines() if x.startswith("[v00")]
    assert len(finals) == 2 and all("] error: " in x and "no usable prompt_id (got an array)" in x for x in finals)
    assert {r["status"] for r in lines(report)} == {"error"}


def test_cli_refuses_bad_limits_with_one_line(tmp_path, capsys, monkeypatch):
    from nada_core.cli import main

    wf = tmp_path / "w.json"
    wf.write_text(json.dumps(WORKFLOW))
    args = ["queue", "--workflow", str(wf), "--server", "http://127.0.0.1:9", "--report", str(tmp_path / "r.jsonl")]
    assert main(args + ["--request-timeout", "0"]) == 2
    assert "--request-timeout must be positive" in capsys.readouterr().err
    monkeypatch.setenv("NADA_QUEUE_MAX_JSON_BYTES", "lots")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NADA_QUEUE_MAX_JSON_BYTES='lots' is not an integer" in err
