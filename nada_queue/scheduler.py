"""Spread jobs over ComfyUI servers and follow each to its end.

One worker thread per server pulls jobs from a shared pool whenever it has fewer than
``max_in_flight`` prompts queued there, so a slow server simply takes fewer jobs. A worker
follows its prompts over the websocket (``/ws?clientId=<run id>``: ComfyUI sends a client the
events of the prompts it queued) and checks ``/history/{id}`` now and then as a safety net, or
polls it alone when the websocket cannot be opened.

Failures: a validation error (HTTP 400) ends that variant as ``invalid``; a server that stops
answering has its prompts handed back to the pool for the other servers (and deleted from its
queue if it comes back), and is retried with exponential backoff. When every server has been
down for ``down_timeout`` seconds the remaining jobs end as ``unreachable``. :meth:`BatchRunner.cancel`
deletes this run's pending prompts and interrupts a running prompt only when it is ours.

Hostile or broken servers: an answer of the wrong shape (checked in :mod:`.answers`) ends the job
it was about as ``error``; a request about a job that times out or drops counts a strike, and
``max_attempts`` strikes end it as ``unreachable``; a websocket that breaks the protocol is
dropped for history polling; reconnects back off (:class:`~.jobs.Backoff`); a worker thread
that dies ends the jobs it held, so :meth:`BatchRunner.run` always returns.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from typing import Any, Callable

from nada_core.atomic import atomic_write_text
from nada_core.errors import NadaError

from .answers import BadEvent, event_of
from .comfy_client import BadAnswer, ComfyClient, ComfyError, Limits, PromptRejected, Unreachable
from .jobs import FINAL, Backoff, Events, Job, JobPool, RunOptions, one_line  # noqa: F401  (re-exported)
from .outputs import file_refs, local_relpath, saved_files, text_outputs, texts_relpath
from .websocket import WebSocket, WebSocketError, WebSocketProtocolError
from .workflow_io import Workflow


class ServerWorker(threading.Thread):
    """Feeds one server from the pool and follows its prompts.

    Whatever the server answers, the thread cannot die silently: an unforeseen exception ends the
    jobs it holds as ``error`` (see :meth:`run`), and :class:`BatchRunner` checks on it too."""

    def __init__(self, client: ComfyClient, pool: JobPool, run_id: str, options: RunOptions,
                 events: Events, stop: threading.Event):
        super().__init__(name=f"nada-queue {client.url}", daemon=True)
        self.client, self.pool, self.run_id, self.options = client, pool, run_id, options
        self.events, self.stop = events, stop
        self.url = client.url
        self.up = False
        self.down_since: float | None = None  # monotonic time of the first failure in a row
        self.last_error = ""
        self.inflight: dict[str, Job] = {}
        self.taking: Job | None = None  # taken from the pool, not yet in ``inflight``
        self.abandoned: set[str] = set()  # prompt ids given up on while the server was unreachable
        self.ws: WebSocket | None = None
        self.ws_disabled = False  # the websocket broke the protocol: poll for the rest of the run
        self._ws_losses = 0
        self._ws_warned = False
        self._ever_up = False
        self._up_since = 0.0
        self._last_progress: dict[str, float] = {}
        self.crash: BaseException | None = None

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        try:
            self._loop()
        except BaseException as err:  # a bug or an answer nobody foresaw: end our jobs, never hang the run
            self.crash = err
            self.fail_held(f"internal error while following it on {self.url}: {type(err).__name__}: {err}")
        finally:
            try:
                self._close_ws()
            except Exception:
                pass

    def fail_held(self, reason: str) -> None:
        """End every job this worker holds as ``error`` (after a crash; idempotent)."""
        held = list(self.inflight.values()) + ([self.taking] if self.taking is not None else [])
        for job in held:
            self.pool.finish(job, "error", one_line(reason))
        self.inflight.clear()
        self.taking = None

    def _loop(self) -> None:
        backoff = Backoff(self.options.min_backoff, self.options.max_backoff)
        next_attempt = 0.0
        quick = True  # the first reconnect after a good spell is at once: it tells a blip from an outage
        while not self.stop.is_set() and not self.pool.all_final():
            if not self.up:
                now = time.monotonic()
                if now < next_attempt:
                    self.stop.wait(min(0.2, next_attempt - now))
                    continue
                try:
                    self._connect()
                except ComfyError as err:
                    self._went_down(err)
                    next_attempt = time.monotonic() + backoff.next()
                    continue
                self._up_since = time.monotonic()
            try:
                self._fill()
                self._pump(0.25)
                self._poll_due()
            except Unreachable as err:
                self._lost(err)
                # a connection that breaks soon after it was made backs off like a failed one,
                # so a server that accepts and then drops us cannot spin this loop
                if time.monotonic() - self._up_since >= max(1.0, self.options.max_backoff):
                    backoff.reset()
                    quick = True
                    self._ws_losses = 0  # only drops in quick succession make us give up the websocket
                next_attempt = time.monotonic() + (0.0 if quick else backoff.next())
                quick = False
            except ComfyError as err:  # an odd answer about no job in particular; say so and carry on
                self.events.server(self.url, one_line(f"unexpected answer: {err}"))
                self.stop.wait(backoff.next())

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        self.client.system_stats()
        self._close_ws()
        try:
            if self.options.use_websocket and not self.ws_disabled:
                self.ws = self.client.websocket(self.run_id)
        except Unreachable as err:
            self.ws = None
            if not self._ws_warned:
                self._ws_warned = True
                self.events.server(self.url, one_line(f"no websocket ({err}); following jobs by polling their history"))
        was_down = self.down_since is not None or self._ever_up
        self.up, self.down_since, self._ever_up = True, None, True
        if was_down:
            self.events.server(self.url, "connected again")
        if self.abandoned:
            self._drop_abandoned()
        for job in self.inflight.values():  # events may have been missed while away
            job.next_check, job.after_reconnect = 0.0, True

    def _lost(self, err: Exception) -> None:
        """The connection broke: reconnect after a backoff; if that fails, :meth:`_went_down` moves the jobs."""
        self._close_ws()
        self.up = False
        self.last_error = one_line(err)
        self.events.server(self.url, one_line(f"connection lost ({err}); reconnecting"))

    def _went_down(self, err: Exception) -> None:
        self.up = False
        self.last_error = one_line(err)
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.events.server(self.url, one_line(f"unreachable ({err}); retrying with backoff"))
        if self.inflight:
            self._release_inflight(f"{self.url} became unreachable")

    def _release_inflight(self, reason: str) -> None:
        back = []
        for pid, job in list(self.inflight.items()):
            self.abandoned.add(pid)
            if job.attempts >= self.options.max_attempts:
                self.pool.finish(job, "unreachable", f"{reason}; lost {job.attempts} times, giving up")
                continue
            self.events.job(job, f"{reason}; moving it to another server")
            job.reset_for_requeue()
            back.append(job)
        self.inflight.clear()
        self.pool.give_back(back)

    def _drop_abandoned(self) -> None:
        """Remove prompts we re-queued elsewhere from this server, now that it answers again."""
        ids = sorted(self.abandoned)
        try:
            self.client.delete_pending(ids)
            state = self.client.queue()
            for pid in state.running:
                if pid in self.abandoned:
                    self.client.interrupt(pid)
        except BadAnswer as err:  # the server is up; only the clean-up failed
            self.events.server(self.url, one_line(f"could not remove prompts moved elsewhere ({err})"))
        self.abandoned.clear()

    def _close_ws(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def _ws_unusable(self, reason: str) -> None:
        """Stop using the websocket of this server; follow its prompts by polling from now on."""
        self._close_ws()
        self.ws_disabled = True
        self.events.server(self.url, one_line(f"websocket unusable ({reason}); following jobs by polling their history"))
        for job in self.inflight.values():
            job.next_check = min(job.next_check, time.monotonic())

    # ------------------------------------------------------------------ giving up on one job
    def _give_up(self, job: Job, status: str, message: str) -> None:
        """End ``job`` now; its prompt, if any, is removed from the server at the next clean-up."""
        pid = job.prompt_id or ""
        if self.inflight.pop(pid, None) is not None:
            self.abandoned.add(pid)
        self._last_progress.pop(pid, None)
        self.pool.finish(job, status, one_line(message))

    def _strike(self, job: Job, err: Exception) -> bool:
        """Count a request about ``job`` that the server failed; True when the job was given up."""
        job.strikes += 1
        if job.strikes < self.options.max_attempts:
            return False
        self._give_up(job, "unreachable", f"{self.url} failed {job.strikes} requests about it, giving up: {err}")
        return True

    # ------------------------------------------------------------------ jobs
    def _fill(self) -> None:
        while len(self.inflight) < self.options.max_in_flight and not self.stop.is_set():
            job = self.pool.take()
            if job is None:
                return
            self.taking = job
            self._submit(job)
            self.taking = None

    def _submit(self, job: Job) -> None:
        wanted = uuid.uuid4().hex
        try:
            pid = self.client.queue_prompt(job.variant.apply(job.workflow), self.run_id, wanted)
        except PromptRejected as err:
            job.server = self.url
            self.pool.finish(job, "invalid", str(err))
            return
        except Unreachable as err:
            self.abandoned.add(wanted)  # it may have arrived after all
            self.taking = None
            job.strikes += 1
            if job.strikes >= self.options.max_attempts:
                job.server = self.url
                self.pool.finish(job, "unreachable", one_line(
                    f"{self.url} failed {job.strikes} requests about it, giving up: {err}"))
            else:
                self.pool.give_back([job])
            raise
        except ComfyError as err:
            self.abandoned.add(wanted)
            job.server = self.url
            self.pool.finish(job, "error", one_line(err))
            return
        job.attempts += 1
        job.prompt_id, job.server, job.status = pid, self.url, "queued"
        job.queued_at = time.time()
        job.next_check = time.monotonic() + self._check_interval()
        self.inflight[pid] = job
        self.events.job(job, f"queued as {pid}")

    def _check_interval(self) -> float:
        return self.options.safety_check_interval if self.ws is not None else self.options.poll_interval

    def _pump(self, timeout: float) -> None:
        """Handle websocket messages for up to ``timeout`` seconds (or just wait, without one)."""
        if self.ws is None:
            self.stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.ws.recv(max(0.0, remaining))
            except WebSocketProtocolError as err:
                self._ws_unusable(str(err))
                return
            except WebSocketError as err:
                self._close_ws()
                self._ws_losses += 1
                if self._ws_losses >= self.options.max_attempts:  # it keeps breaking: poll instead
                    self._ws_unusable(f"closed {self._ws_losses} times, last: {err}")
                    return
                raise Unreachable(f"websocket of {self.url} closed ({err})") from err
            if message is None:
                return
            if isinstance(message, str):  # binary messages are image previews: not ours to show
                try:
                    if self._on_message(message):
                        return  # a prompt finished: collect it now
                except BadEvent as err:
                    job = self.inflight.get(err.prompt_id)
                    if job is not None:
                        self._give_up(job, "error", f"{self.url} sent a malformed event about it: {err}")
                except BadAnswer as err:
                    self._ws_unusable(str(err))
                    return
            if time.monotonic() >= deadline:
                return

    def _on_message(self, text: str) -> bool:
        """Update a job from one websocket event; True when a job just finished on the server.
        Raises :class:`BadAnswer`/:class:`BadEvent` (from :func:`~.answers.event_of`)."""
        event = event_of(text, f"{self.url} websocket", self.inflight)
        if event is None:
            return False
        job = self.inflight[event.prompt_id]
        kind = event.kind
        if kind == "execution_start":
            self._mark_running(job)
        elif kind == "executing":
            if event.node is None:  # sent after the history entry is written
                job.finishing, job.next_check = True, 0.0
                job.finished_at = job.finished_at or time.time()
                return True
            self._mark_running(job)
        elif kind == "progress":
            now = time.monotonic()
            if now - self._last_progress.get(event.prompt_id, 0.0) >= 1.0 or event.value == event.maximum:
                self._last_progress[event.prompt_id] = now
                self.events.progress(job, event.node or "?", event.value, event.maximum)
        elif kind in ("execution_success", "execution_error", "execution_interrupted"):
            job.finishing, job.next_check = True, time.monotonic() + 0.05
            job.finished_at = time.time()
        return False

    def _mark_running(self, job: Job) -> None:
        if job.status == "queued":
            job.status = "running"
            job.started_at = time.time()
            self.events.job(job, "running")

    def _poll_due(self) -> None:
        now = time.monotonic()
        due = [job for job in self.inflight.values() if job.next_check <= now]
        if not due:
            return
        unfinished = []
        for job in due:
            entry = self._history_of(job)
            if entry is not None:
                self._complete(job, entry)
            elif not job.final:
                unfinished.append(job)
        if not unfinished:
            return
        try:
            state = self.client.queue()
        except BadAnswer as err:  # cannot tell what became of these prompts
            for job in unfinished:
                self._give_up(job, "error", str(err))
            return
        except Unreachable as err:
            for job in unfinished:
                self._strike(job, err)
            raise
        for job in unfinished:
            pid = job.prompt_id or ""
            if pid in state.running:
                self._mark_running(job)
            elif pid not in state.pending:
                # ComfyUI moves a prompt queue -> running -> history under one lock, so a prompt in
                # none of them is gone; look once more in case it finished between our two reads.
                entry = self._history_of(job)
                if entry is not None:
                    self._complete(job, entry)
                elif not job.final:
                    self._vanished(job)
                continue
            job.after_reconnect = False
            job.next_check = time.monotonic() + (0.2 if job.finishing else self._check_interval())

    def _history_of(self, job: Job) -> dict[str, Any] | None:
        """The checked history entry of ``job``'s prompt; a bad answer ends the job (``None``)."""
        try:
            return self.client.history(job.prompt_id or "")
        except BadAnswer as err:
            self._give_up(job, "error", str(err))
            return None
        except Unreachable as err:
            if self._strike(job, err):
                return None
            raise

    def _vanished(self, job: Job) -> None:
        del self.inflight[job.prompt_id or ""]
        if job.after_reconnect and job.attempts < self.options.max_attempts:
            # the server restarted while we were away and forgot its queue
            self.events.job(job, f"{self.url} lost it (restarted?); queueing it again")
            job.reset_for_requeue()
            self.pool.give_back([job])
        elif job.after_reconnect:
            self.pool.finish(job, "unreachable", f"lost {job.attempts} times by restarting servers, giving up")
        else:
            self.pool.finish(job, "cancelled", f"removed from the queue of {self.url} by another client")

    def _complete(self, job: Job, entry: dict[str, Any]) -> None:
        """Finish ``job`` from its history entry (checked by :func:`~.answers.history_entry_of`)."""
        self.inflight.pop(job.prompt_id or "", None)
        self._last_progress.pop(job.prompt_id or "", None)
        status = entry["status"]
        messages = status["messages"]
        stamps = {ev: data.get("timestamp") for ev, data in messages if isinstance(data, dict)}
        job.finished_at = job.finished_at or time.time()
        start_ms = _finite(stamps.get("execution_start"))
        end_ms = next((_finite(stamps[e]) for e in ("execution_success", "execution_error", "execution_interrupted")
                       if _finite(stamps.get(e)) is not None), None)
        if start_ms is not None and end_ms is not None:
            job.run_seconds = min(1e9, max(0.0, (end_ms - start_ms) / 1000.0))  # one clock: the server's
            if job.started_at is None:
                job.started_at = job.finished_at - job.run_seconds
        elif job.started_at is not None:
            job.run_seconds = max(0.0, job.finished_at - job.started_at)
        job.outputs = file_refs(entry["outputs"])
        job.texts = text_outputs(entry["outputs"], job.workflow)
        job.saved = saved_files(job.texts)

        outcome = status["status_str"]
        if any(ev == "execution_interrupted" for ev, _ in messages):
            self.pool.finish(job, "cancelled", f"interrupted on {self.url}")
            return
        if outcome == "error" or (outcome is None and status["completed"] is False):
            self.pool.finish(job, "error", execution_error_text(messages, job.workflow))
            return
        if self.options.download_dir is not None:
            try:
                self._download(job)
            except ComfyError as err:
                self.pool.finish(job, "error", one_line(f"ran, but its outputs could not be downloaded: {err}"))
                if isinstance(err, Unreachable):
                    raise
                return
        self.pool.finish(job, "success")

    def _download(self, job: Job) -> None:
        assert self.options.download_dir is not None
        used: set[str] = set()
        for refs in job.outputs.values():
            for ref in refs:
                if ref["type"] == "temp" and not self.options.include_previews:
                    continue
                rel = local_relpath(ref, job.label, self.options.download_layout)
                stem, dot, ext = rel.rpartition(".")
                n = 1
                while rel in used:  # two nodes wrote the same name: keep both
                    rel = f"{stem}-{n}.{ext}" if dot else f"{ext}-{n}"
                    n += 1
                used.add(rel)
                dest = self.options.download_dir / rel
                self.client.download(ref, dest)
                ref["local"] = str(dest)
        if job.texts:  # metrics and saved names next to the images, to tell variants apart
            dest = self.options.download_dir / texts_relpath(job.label, self.options.download_layout)
            body = {"label": job.label, "overrides": job.variant.overrides, "texts": job.texts, "saved": job.saved}
            try:
                atomic_write_text(dest, json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n")
            except (NadaError, OSError) as err:  # the local disk, not the server
                raise ComfyError(f"cannot write {dest}: {err}") from None
            job.texts_local = str(dest)

    # ------------------------------------------------------------------ cancellation
    def cancel_own(self) -> None:
        """Called after the thread stopped: take back every prompt this run queued here.
        Every job it held ends (``cancelled``, or ``success`` when it made it before Ctrl-C)."""
        ids = list(self.inflight)
        running: set[str] = set()
        try:
            targets = ids + sorted(self.abandoned - set(ids))
            if targets:
                self.client.delete_pending(targets)
                state = self.client.queue()
                for pid in state.running:
                    if pid in targets:  # only ever interrupt our own prompt
                        running.add(pid)
                        self.client.interrupt(pid)
        except ComfyError as err:
            self.events.server(self.url, one_line(f"could not cancel this run's prompts ({err})"))
        for pid in ids:
            job = self.inflight.get(pid)
            if job is None:
                continue
            try:
                entry = self.client.history(pid)
                if entry is not None and entry["status"]["status_str"] == "success":
                    self._complete(job, entry)  # it made it before Ctrl-C: keep the result
                    continue
            except ComfyError:
                pass
            self.inflight.pop(pid, None)
            how = "interrupted while running" if pid in running else "removed from the server queue"
            self.pool.finish(job, "cancelled", f"cancelled by the user; {how}")
        if self.taking is not None:  # stopped while queueing it: it may have reached the server
            self.pool.finish(self.taking, "cancelled", f"cancelled by the user while it was being queued on {self.url}")


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def execution_error_text(messages: list, prompt: Workflow) -> str:
    """``node 3 (ImageBlur): RuntimeError: ...`` from a history entry's status messages (one line)."""
    for event, data in messages:
        if event == "execution_error" and isinstance(data, dict):
            node = str(data.get("node_id", "?"))
            known = prompt.get(node)
            cls = data.get("node_type") or (known.get("class_type", "?") if isinstance(known, dict) else "?")
            kind = data.get("exception_type") or "error"
            text = str(data.get("exception_message") or "").strip()
            return one_line(f"node {node} ({cls}): {kind}: {text}", 2000)
    return "the prompt failed on the server (no error message in its history)"


class BatchRunner:
    """Runs ``jobs`` on ``servers``; :meth:`run` returns when every job has a final status."""

    def __init__(self, servers: list[str], jobs: list[Job], options: RunOptions, events: Events | None = None,
                 on_final: Callable[[Job], None] | None = None, run_id: str | None = None):
        self.run_id = run_id or f"nada-queue-{uuid.uuid4().hex}"
        self.options = options
        self.events = events or Events()
        self.pool = JobPool(jobs, on_final or (lambda job: None))
        self.stop = threading.Event()
        limits = options.limits or Limits.from_env()
        self.workers = [ServerWorker(ComfyClient(url, limits), self.pool, self.run_id, options, self.events,
                                     self.stop) for url in servers]

    def run(self) -> list[Job]:
        """Process all jobs. On Ctrl-C, cancels this run's prompts and re-raises KeyboardInterrupt."""
        try:
            for worker in self.workers:
                worker.start()
            while not self.pool.all_final():
                time.sleep(0.1)
                self._check_all_down()
                self._check_workers()
        except KeyboardInterrupt:
            self.cancel()
            raise
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=10.0)
        return self.pool.jobs

    def _check_workers(self) -> None:
        """A worker that died leaves no job behind: its jobs end ``error``; with none alive, all do."""
        dead = [w for w in self.workers if w.ident is not None and not w.is_alive()]
        for worker in dead:
            if worker.inflight or worker.taking is not None:
                worker.fail_held(f"the worker following {worker.url} stopped: {worker.crash!r}")
        if len(dead) == len(self.workers) and not self.pool.all_final():
            why = "; ".join(one_line(f"{w.url}: {w.crash!r}", 200) for w in dead if w.crash is not None)
            for job in self.pool.jobs:
                self.pool.finish(job, "error", one_line(f"no server worker left to run it ({why or 'all stopped'})"))

    def _check_all_down(self) -> None:
        downs = [w.down_since for w in self.workers]
        if not downs or any(d is None for d in downs):
            return
        waited = time.monotonic() - max(d for d in downs if d is not None)
        if waited < self.options.down_timeout:
            return
        why = "; ".join(w.last_error or f"{w.url} is unreachable" for w in self.workers)
        failed = self.pool.fail_pending(
            "unreachable", f"no server answered for {self.options.down_timeout:g} s: {why}")
        if failed:
            self.events.note(f"no server reachable for {self.options.down_timeout:g} s; "
                             f"{len(failed)} variant(s) not run")

    def cancel(self) -> None:
        """Stop the workers, delete this run's queued prompts, interrupt ours if running.
        Afterwards every job is final (a job nobody could account for ends ``cancelled``)."""
        self.stop.set()
        self.events.note("cancelling: removing this run's prompts from the servers")
        deadline = time.monotonic() + self.options.cancel_timeout
        for worker in self.workers:
            worker.join(timeout=max(0.1, deadline - time.monotonic()))
        for worker in self.workers:
            try:
                worker.cancel_own()
            except Exception as err:  # never leave the other servers' prompts behind
                self.events.server(worker.url, one_line(f"could not cancel this run's prompts ({err!r})"))
        self.pool.fail_pending("cancelled", "not queued: the run was cancelled")
        for job in self.pool.jobs:
            self.pool.finish(job, "cancelled", "cancelled by the user before it finished")
