"""The JSONL report of a ``nada queue`` run, and what ``--resume`` takes from it.

One JSON object per line and per variant, appended (and flushed to disk) as each variant ends,
so a crash loses at most the line being written. Fields::

    index, label, overrides {"<node id>.<input>": value}, status, error, server, prompt_id,
    attempts, queued_at, started_at, finished_at (ISO-8601 UTC or null), wait_seconds,
    run_seconds, outputs {node id: [{filename, subfolder, type, kind, local?}]},
    texts {node id: {class_type, title, text: [str]}} (what nodes showed as text: metrics,
    Preview Any, saved names), saved [{node, class_type, name, folder}] (files saving nodes wrote
    on the server, e.g. the adapted generator), texts_local (the texts' file under --download),
    run_id, workflow, workflow_sha256

``status`` is one of :data:`STATUSES`; every variant of a run gets a line, also when the run is
stopped by a signal (``cancelled``/``interrupted``), so ``--resume`` finds what to redo. A file may hold several runs (``--resume`` appends); for a
variant the latest line wins, and any ``success`` line marks it done.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from nada_core.errors import InputError
from .variants import Variant, overrides_key

STATUSES = ("success", "error", "invalid", "cancelled", "unreachable", "interrupted")
# "interrupted": the run stopped (signal, crash) before the variant had an outcome; --resume redoes it


def iso_time(t: float | None) -> str | None:
    """Epoch seconds -> ``"2026-05-09T07:35:25.123Z"`` (``None`` stays ``None``)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds_between(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(max(0.0, b - a), 3)


class ReportWriter:
    """Appends one line per finished variant; thread-safe; each line is flushed and fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")
        # A previous run killed mid-line would glue our first record onto its broken tail.
        if self._fh.tell() > 0:
            with open(self.path, "rb") as check:
                check.seek(-1, os.SEEK_END)
                if check.read(1) != b"\n":
                    self._fh.write("\n")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, sort_keys=False, allow_nan=False, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()
            try:
                os.fsync(self._fh.fileno())
            except OSError:  # some file systems refuse fsync; the flush already happened
                pass

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()

    def __enter__(self) -> "ReportWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_report(path: str | os.PathLike, warn=None) -> list[dict[str, Any]]:
    """All records of a report; an unreadable line (e.g. cut by a crash) is skipped with a warning."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"report {str(p)!r} not found; pass the --report file of an earlier run")
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    records = []
    for line_no, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            warn(f"warning: {p.name} line {line_no} is not valid JSON (cut by a crash?); skipped")
            continue
        if isinstance(rec, dict) and isinstance(rec.get("overrides"), dict) and "status" in rec:
            records.append(rec)
        else:
            warn(f"warning: {p.name} line {line_no} is not a variant record; skipped")
    return records


def record_key(record: dict[str, Any]) -> str:
    return overrides_key(record.get("overrides") or {})


def succeeded_keys(records: Iterable[dict[str, Any]]) -> set[str]:
    return {record_key(r) for r in records if r.get("status") == "success"}


def select_for_resume(variants: list[Variant], records: list[dict[str, Any]]) -> tuple[list[Variant], list[Variant]]:
    """Split ``variants`` into (to run, already succeeded), matching them to records by overrides."""
    done = succeeded_keys(records)
    todo = [v for v in variants if v.key not in done]
    skipped = [v for v in variants if v.key in done]
    return todo, skipped


def variants_from_report(records: list[dict[str, Any]]) -> list[Variant]:
    """Every distinct variant named in a report (first index seen), in index order."""
    seen: dict[str, Variant] = {}
    for r in records:
        key = record_key(r)
        if key not in seen:
            index = r.get("index")
            seen[key] = Variant(index=int(index) if isinstance(index, int) else len(seen), overrides=dict(r["overrides"]))
    return sorted(seen.values(), key=lambda v: v.index)


def job_record(job: Any, run_id: str, workflow: str | None, workflow_sha256: str | None) -> dict[str, Any]:
    """The report line of a finished :class:`~nada_queue.scheduler.Job`."""
    wait = seconds_between(job.queued_at, job.started_at)
    run = job.run_seconds if job.run_seconds is not None else seconds_between(job.started_at, job.finished_at)
    return {
        "index": job.variant.index,
        "label": job.label,
        "overrides": job.variant.overrides,
        "status": job.status,
        "error": job.error,
        "server": job.server,
        "prompt_id": job.prompt_id,
        "attempts": job.attempts,
        "queued_at": iso_time(job.queued_at),
        "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at),
        "wait_seconds": wait,
        "run_seconds": None if run is None else round(run, 3),
        "outputs": job.outputs,
        "texts": job.texts,
        "saved": job.saved,
        "texts_local": job.texts_local,
        "run_id": run_id,
        "workflow": workflow,
        "workflow_sha256": workflow_sha256,
    }
