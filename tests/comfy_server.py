"""Start real ComfyUI servers on free loopback ports for tests.

ComfyUI is found through ``COMFYUI_ROOT`` (default ``~/ComfyUI``; see tests/comfy_env.py) and run with this interpreter.
Every server gets its own base directory (output, input, temp, user, custom_nodes) and an
in-memory database, so nothing is written into the ComfyUI checkout. Custom node packs (e.g.
this repository, to queue our own nodes) can be loaded by passing their folders.

    servers = start_servers(2, tmp_dir)        # started concurrently
    url = servers[0].url                       # http://127.0.0.1:<port>
    servers[0].kill()                          # SIGKILL, for failure tests
    stop_servers(servers)
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

from tests.comfy_env import comfy_root, unavailable_reason

__all__ = ["ComfyServer", "ServerStartError", "comfy_root", "free_port", "start_servers", "stop_servers",
           "unavailable_reason"]

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    pass


class ComfyServer:
    """One ComfyUI process listening on ``127.0.0.1:<port>``."""

    def __init__(self, workdir: Path, root: Path | None = None, custom_nodes: Sequence[Path] = (),
                 extra_args: Sequence[str] = (), threads: int = 1):
        self.root = Path(root or comfy_root())
        self.workdir = Path(workdir)
        self.custom_nodes = [Path(p).resolve() for p in custom_nodes]
        self.extra_args = list(extra_args)
        self.threads = threads
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "comfyui.log"
        self.output_dir = self.workdir / "output"
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        for name in ("output", "input", "temp", "user", "custom_nodes"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        # A returning user: without this the front end opens its Templates dialog over the canvas on
        # first load (whenever it gets round to it), which covers and shifts what the browser tests measure.
        settings = self.workdir / "user" / "default" / "comfy.settings.json"
        if not settings.exists():
            settings.parent.mkdir(parents=True, exist_ok=True)
            settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}), encoding="utf-8")
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.workdir),
               "--output-directory", str(self.output_dir), "--input-directory", str(self.workdir / "input"),
               "--temp-directory", str(self.workdir / "temp"), "--user-directory", str(self.workdir / "user"),
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes"]
        if self.custom_nodes:
            for pack in self.custom_nodes:  # ComfyUI loads every folder in <base>/custom_nodes
                link = self.workdir / "custom_nodes" / pack.name
                if not link.exists():
                    link.symlink_to(pack, target_is_directory=True)
        else:
            cmd.append("--disable-all-custom-nodes")
        return cmd + self.extra_args

    def start(self) -> "ComfyServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # 2 shared cores: one thread per server keeps tests from fighting over them.
        env.update({k: str(self.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
        self._t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        atexit.register(self.stop)  # never leave a server behind, even if a fixture's teardown is skipped
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 120.0) -> "ComfyServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise ServerStartError(f"ComfyUI exited with code {self.proc.returncode if self.proc else '?'}:\n"
                                       + self.log_tail())
            try:
                self.get("/system_stats", timeout=2.0)
                self.started_in = time.monotonic() - self._t0
                return self
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.25)
        raise ServerStartError(f"ComfyUI did not answer within {timeout:.0f} s:\n" + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -------------------------------------------------------------- tiny HTTP helpers for tests
    def get(self, path: str, timeout: float = 10.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: Any, timeout: float = 30.0) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """(running prompt ids, pending prompt ids)."""
        q = self.get("/queue")
        return [i[1] for i in q["queue_running"]], [i[1] for i in q["queue_pending"]]

    def history(self, prompt_id: str) -> dict | None:
        return self.get(f"/history/{prompt_id}").get(prompt_id)

    def wait_for(self, predicate, timeout: float = 60.0, every: float = 0.1, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise TimeoutError(f"{what} not met within {timeout:.0f} s; server log:\n{self.log_tail(15)}")

    # -------------------------------------------------------------- stopping
    def kill(self) -> None:
        """SIGKILL: the server vanishes without a goodbye."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_servers(count: int, base_dir: Path, custom_nodes: Sequence[Path] = (), timeout: float = 120.0,
                  **kw) -> list[ComfyServer]:
    """Start ``count`` servers at once (start-up is mostly imports, so overlapping saves time)."""
    servers = [ComfyServer(Path(base_dir) / f"comfy{i}", custom_nodes=custom_nodes, **kw).start()
               for i in range(count)]
    try:
        for s in servers:
            s.wait_ready(timeout)
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers: Iterable[ComfyServer]) -> None:
    for s in servers:
        s.stop()
