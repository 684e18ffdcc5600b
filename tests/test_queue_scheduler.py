"""Scheduler behaviour against small fake ComfyUI servers (HTTP only, no websocket).

These run without ComfyUI and cover the history-polling fallback, load spreading, validation
errors, vanished prompts, a server dying mid-run and all servers being down. The same paths are
exercised against real ComfyUI servers in ``test_queue_live.py``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from nada_queue.scheduler import BatchRunner, Events, Job, RunOptions
from nada_queue.variants import expand_variants

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
}


class FakeComfy:
    """Just enough of ComfyUI's HTTP API: one prompt at a time, each taking ``delay`` seconds."""

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        # hostile tests replace a route: hooks["history"] = fn(handler, body) answers instead
        # (routes: system_stats, history, queue, view, ws, prompt, queue_post, interrupt)
        self.hooks: dict = {}
        self.hold = None  # callable: while it returns True a finished job waits (at most 10 s)
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.pending: list[tuple[str, dict, str]] = []
        self.running: tuple[str, dict, str] | None = None
        self.history: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        self.executed: list[str] = []
        self.interrupts: list[str] = []
        self.blackout = threading.Event()  # answer 503 to everything, as a dead server behind a proxy
        self.stopped = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status, body=None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def route(self, name, body=None):
                fake.hits[name] = fake.hits.get(name, 0) + 1
                hook = fake.hooks.get(name)
                return hook is not None and hook(self, body) is not False  # False: answer as usual

            def do_GET(self):
                if fake.blackout.is_set():
                    return self.reply(503, {})
                url = urlsplit(self.path)
                if self.route(url.path.strip("/").split("/")[0]):
                    return
                if url.path == "/system_stats":
                    return self.reply(200, {"system": {"comfyui_version": "fake"}})
                if url.path.startswith("/history/"):
                    pid = url.path.rsplit("/", 1)[1]
                    with fake.lock:
                        return self.reply(200, {pid: fake.history[pid]} if pid in fake.history else {})
                if url.path == "/queue":
                    with fake.lock:
                        item = lambda e: [0, e[0], e[1], {"client_id": e[2]}, []]  # noqa: E731
                        return self.reply(200, {"queue_running": [item(fake.running)] if fake.running else [],
                                                "queue_pending": [item(e) for e in fake.pending]})
                if url.path == "/view":
                    name = parse_qs(url.query)["filename"][0]
                    return self.reply(200, raw=fake.files[name]) if name in fake.files else self.reply(404, {})
                return self.reply(404, {})  # no /ws: clients must poll

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if fake.blackout.is_set():
                    return self.reply(503, {})
                if self.route({"/queue": "queue_post"}.get(self.path, self.path.strip("/")), body):
                    return
                if self.path == "/prompt":
                    prompt, pid = body["prompt"], body.get("prompt_id") or f"p{time.monotonic_ns()}"
                    width = prompt["1"]["inputs"]["width"]
                    if width < 1:
                        return self.reply(400, {"error": {"message": "Prompt outputs failed validation"},
                                                "node_errors": {"1": {"class_type": "EmptyImage", "errors": [
                                                    {"message": f"Value {width} smaller than min of 1",
                                                     "details": "width"}]}}})
                    with fake.lock:
                        fake.pending.append((pid, prompt, body.get("client_id")))
                    return self.reply(200, {"prompt_id": pid, "number": 0, "node_errors": {}})
                if self.path == "/queue":
                    with fake.lock:
                        fake.pending = [e for e in fake.pending if e[0] not in body.get("delete", [])]
                    return self.reply(200, raw=b"")
                if self.path == "/interrupt":
                    with fake.lock:
                        fake.interrupts.append(body.get("prompt_id"))
                    return self.reply(200, raw=b"")
                return self.reply(404, {})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        threading.Thread(target=self._execute, daemon=True).start()

    def _execute(self):
        while not self.stopped.is_set():
            with self.lock:
                if self.running is None and self.pending:
                    self.running = self.pending.pop(0)
                job = self.running
            if job is None:
                time.sleep(0.01)
                continue
            time.sleep(self.delay)
            waited = time.monotonic()
            while self.hold is not None and self.hold() and time.monotonic() - waited < 10:
                time.sleep(0.01)
            if self.stopped.is_set():
                return
            pid, prompt, _ = job
            color = prompt["1"]["inputs"]["color"]
            name = f"x_{color}_{pid[:6]}.png"
            outputs = {"9": {"images": [{"filename": name, "subfolder": "", "type": "output"}]}}
            for nid, n in prompt.items():  # text outputs, as ComfyUI's history holds them
                if n["class_type"] == "PreviewAny":
                    outputs[nid] = {"text": [f"directional similarity {color / 10:.2f}"]}
                elif n["class_type"] == "NadaSaveGenerator":
                    outputs[nid] = {"text": [f"nada/{n['inputs']['file_name']}.safetensors"]}
            with self.lock:
                self.files[name] = f"color={color}".encode()
                self.history[pid] = {"outputs": outputs,
                                     "status": {"status_str": "success", "completed": True, "messages": []}}
                self.executed.append(pid)
                self.running = None

    def shutdown(self):
        """Vanish: stop answering (connections are refused afterwards)."""
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class Recorder(Events):
    def __init__(self):
        self.lines = []

    def job(self, job, text):
        self.lines.append(f"{job.label} {text}")

    def server(self, url, text):
        self.lines.append(f"{url} {text}")


def make_jobs(sweep: str):
    variants = expand_variants(WORKFLOW, sweeps=[sweep])
    return [Job(variant=v, workflow=WORKFLOW, label=v.label()) for v in variants]


def run(servers, jobs, **opts):
    finished = []
    events = Recorder()
    options = RunOptions(poll_interval=0.05, max_backoff=0.5, **opts)
    runner = BatchRunner(servers, jobs, options, events=events, on_final=finished.append)
    runner.run()
    return finished, events


@pytest.fixture
def fakes():
    made = []

    def make(delay=0.02):
        made.append(FakeComfy(delay))
        return made[-1]

    yield make
    for f in made:
        if not f.stopped.is_set():
            f.shutdown()


def test_polling_spreads_jobs_and_slow_server_gets_fewer(fakes, tmp_path):
    fast, slow = fakes(0.02), fakes(0.6)
    # "slow" relative to the fast one, whatever the CPU load: the slow server's job ends only once
    # the fast one has finished six, so at most the one job left then can go to either server
    slow.hold = lambda: len(fast.executed) < 6
    jobs = make_jobs("1.color=1-8")
    finished, events = run([slow.url, fast.url], jobs, max_in_flight=1, download_dir=tmp_path)
    assert sorted(j.variant.index for j in finished) == list(range(8))  # each reported once
    assert all(j.status == "success" for j in jobs)
    on_slow = [j for j in jobs if j.server == slow.url]
    assert 1 <= len(on_slow) <= 2 < len(jobs) - len(on_slow)
    assert len(fast.executed) + len(slow.executed) == 8  # nothing ran twice
    for j in jobs:
        (ref,) = j.outputs["9"]
        assert (tmp_path / j.label / ref["filename"]).read_bytes() == f"color={j.variant.overrides['1.color']}".encode()
        assert ref["local"] == str(tmp_path / j.label / ref["filename"])
    assert any("no websocket" in line for line in events.lines)


def test_validation_error_is_per_variant(fakes):
    server = fakes(0.01)
    jobs = make_jobs("1.width=4,-5,6")
    run([server.url], jobs)
    assert [j.status for j in jobs] == ["success", "invalid", "success"]
    assert jobs[1].error == "node 1 (EmptyImage): Value -5 smaller than min of 1: width"
    assert jobs[1].prompt_id is None and jobs[1].server == server.url


def test_prompt_deleted_by_someone_else_is_cancelled_not_rerun(fakes):
    server = fakes(0.5)
    jobs = make_jobs("1.color=1,2")

    def delete_second():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with server.lock:
                if len(server.pending) == 1 and server.running:
                    server.pending.clear()  # as if another user pressed "delete" in ComfyUI
                    return
            time.sleep(0.01)

    threading.Thread(target=delete_second, daemon=True).start()
    run([server.url], jobs, max_in_flight=2)
    assert jobs[0].status == "success"
    assert jobs[1].status == "cancelled" and "removed from the queue" in jobs[1].error
    assert len(server.executed) == 1


def test_dying_server_hands_its_jobs_to_the_other(fakes):
    doomed, healthy = fakes(1.0), fakes(0.05)
    jobs = make_jobs("1.color=1-4")

    def kill_when_busy():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if doomed.running:
                doomed.shutdown()
                return
            time.sleep(0.01)

    threading.Thread(target=kill_when_busy, daemon=True).start()
    finished, events = run([doomed.url, healthy.url], jobs, max_in_flight=1)
    assert all(j.status == "success" and j.server == healthy.url for j in jobs)
    assert sorted(j.variant.index for j in finished) == [0, 1, 2, 3]
    assert max(j.attempts for j in jobs) == 2  # the job lost with the dead server ran again
    assert doomed.executed == []
    assert any("moving it to another server" in line for line in events.lines)


def test_server_back_from_outage_drops_the_prompts_moved_elsewhere(fakes):
    flaky, steady = fakes(0.8), fakes(0.2)
    jobs = make_jobs("1.color=1-6")
    seen = {}

    def outage():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with flaky.lock:
                if flaky.running and len(flaky.pending) == 1:
                    seen["running"], seen["pending"] = flaky.running[0], flaky.pending[0][0]
                    break
            time.sleep(0.01)
        flaky.blackout.set()
        time.sleep(0.4)
        flaky.blackout.clear()

    threading.Thread(target=outage, daemon=True).start()
    finished, events = run([flaky.url, steady.url], jobs, max_in_flight=2)
    assert sorted(j.variant.index for j in finished) == list(range(6))
    assert all(j.status == "success" for j in jobs)
    assert sum(j.attempts == 2 for j in jobs) == 2  # both prompts held by the flaky server were re-queued
    assert not {seen["running"], seen["pending"]} & {j.prompt_id for j in jobs}
    # back online, the flaky server was told to forget both: the pending one deleted, the running one interrupted
    assert seen["pending"] not in flaky.executed and not any(p[0] == seen["pending"] for p in flaky.pending)
    assert flaky.interrupts == [seen["running"]]
    assert any("connected again" in line for line in events.lines)


def test_all_servers_down_fails_remaining_jobs_in_bounded_time(fakes):
    gone = fakes(0.01)
    gone.shutdown()
    jobs = make_jobs("1.color=1-3")
    t0 = time.monotonic()
    finished, _ = run([gone.url], jobs, down_timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert [j.status for j in jobs] == ["unreachable"] * 3
    assert jobs[0].error.startswith("no server answered for 0.5 s: ") and gone.url in jobs[0].error
    assert len(finished) == 3


def test_report_and_download_keep_text_outputs_and_saved_names(fakes, tmp_path):
    """Twenty domains overnight: each line says what it saved and what its metrics were."""
    from nada_queue.report import job_record

    server = fakes()
    workflow = dict(WORKFLOW)
    workflow["5"] = {"class_type": "NadaSaveGenerator", "inputs": {"file_name": "dom", "images": ["1", 0]},
                     "_meta": {"title": "Save domain"}}
    workflow["6"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    variants = expand_variants(workflow, sweeps=["1.color=3,4"], sets=["5.file_name=ffhq_sketch"])
    jobs = [Job(variant=v, workflow=workflow, label=v.label()) for v in variants]
    finished, _ = run([server.url], jobs, download_dir=tmp_path / "dl")
    assert all(j.status == "success" for j in jobs)
    for job in jobs:
        color = job.variant.overrides["1.color"]
        rec = job_record(job, "run", "w.json", "sha")
        assert rec["texts"]["6"] == {"class_type": "PreviewAny", "title": None,
                                     "text": [f"directional similarity {color / 10:.2f}"]}
        assert rec["texts"]["5"]["title"] == "Save domain"
        assert rec["saved"] == [{"node": "5", "class_type": "NadaSaveGenerator",
                                 "name": "nada/ffhq_sketch.safetensors", "folder": "models/stylegan"}]
        local = json.loads(open(rec["texts_local"], encoding="utf-8").read())
        assert rec["texts_local"].startswith(str(tmp_path / "dl" / job.label))
        assert local["texts"] == rec["texts"] and local["overrides"] == job.variant.overrides
        json.dumps(rec, allow_nan=False)  # the report line stays valid JSON
