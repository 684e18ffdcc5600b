"""A batch's jobs and their shared pool, the run options and the event sink of the scheduler."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .comfy_client import Limits
from .variants import Variant
from .workflow_io import Workflow

FINAL = frozenset({"success", "error", "invalid", "cancelled", "unreachable"})


def one_line(text: object, limit: int = 500) -> str:
    """``text`` on one line (whitespace collapsed) and at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + " ..."


class Backoff:
    """Bounded exponential delays: ``first``, twice that, ... up to ``cap``; :meth:`reset` starts over."""

    def __init__(self, first: float, cap: float):
        self.first, self.cap = first, max(first, cap)
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


@dataclass
class Job:
    """One variant's journey; mutated only by the worker holding it (or by the pool under its lock)."""

    variant: Variant
    workflow: Workflow  # the shared base workflow; the prompt is built when queued (saves memory)
    label: str
    status: str = "pending"  # pending -> queued -> running -> one of FINAL
    server: str | None = None
    prompt_id: str | None = None
    error: str | None = None
    attempts: int = 0
    strikes: int = 0  # requests about this job the server failed to answer (timeouts, drops)
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    run_seconds: float | None = None
    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    texts: dict[str, dict[str, Any]] = field(default_factory=dict)  # node id -> {class_type, title, text}
    saved: list[dict[str, Any]] = field(default_factory=list)  # files saving nodes wrote on the server
    texts_local: str | None = None  # the texts' file under --download
    # worker bookkeeping
    next_check: float = 0.0
    finishing: bool = False
    after_reconnect: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def reset_for_requeue(self) -> None:
        self.status, self.server, self.prompt_id = "pending", None, None
        self.queued_at = self.started_at = self.finished_at = self.run_seconds = None
        self.finishing = self.after_reconnect = False


class Events:
    """What the scheduler tells the user; the default says nothing (tests, ``--quiet``)."""

    def job(self, job: Job, text: str) -> None: ...

    def progress(self, job: Job, node_id: str, value: float, maximum: float) -> None: ...

    def server(self, url: str, text: str) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class RunOptions:
    max_in_flight: int = 2
    use_websocket: bool = True         # False: follow prompts by polling /history only
    down_timeout: float = 60.0         # all servers down this long -> remaining jobs fail
    poll_interval: float = 1.0         # history polling without a websocket
    safety_check_interval: float = 10.0  # history check of each prompt even with a websocket
    max_attempts: int = 3              # times one job may be lost with a dying server
    max_backoff: float = 10.0
    min_backoff: float = 0.25
    cancel_timeout: float = 15.0       # Ctrl-C: how long to wait for the workers to stop
    limits: Limits | None = None       # request timeouts and size caps (None: Limits.from_env())
    download_dir: Path | None = None
    download_layout: str = "folders"
    include_previews: bool = False


class JobPool:
    """Jobs not yet handed to a server, plus the count of finished ones. Thread-safe."""

    def __init__(self, jobs: Iterable[Job], on_final: Callable[[Job], None]):
        self.jobs = list(jobs)
        self._pending = deque(self.jobs)
        self._lock = threading.Lock()
        self._final_lock = threading.Lock()
        self._on_final = on_final
        self._n_final = 0

    def take(self) -> Job | None:
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def give_back(self, jobs: list[Job]) -> None:
        """Return jobs to the front of the queue, in their order."""
        with self._lock:
            for job in reversed(jobs):
                self._pending.appendleft(job)

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def all_final(self) -> bool:
        with self._lock:
            return self._n_final >= len(self.jobs)

    def finish(self, job: Job, status: str, error: str | None = None) -> None:
        assert status in FINAL, status
        with self._lock:
            if job.final:
                return
            job.status, job.error = status, error
            if job.finished_at is None and job.queued_at is not None:
                job.finished_at = time.time()
            self._n_final += 1
        with self._final_lock:  # one report line / console line at a time
            self._on_final(job)

    def fail_pending(self, status: str, message: str) -> list[Job]:
        with self._lock:
            jobs = list(self._pending)
            self._pending.clear()
        for job in jobs:
            self.finish(job, status, message)
        return jobs
