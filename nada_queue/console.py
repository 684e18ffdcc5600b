"""Plain progress lines for ``nada queue`` (one line per event; safe from several threads).

Plain lines rather than progress bars: jobs on several servers advance at once, and lines
survive being piped into a log file.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO
from urllib.parse import urlsplit

from .scheduler import Events, Job


def short_server(url: str | None) -> str:
    if not url:
        return "-"
    parts = urlsplit(url)
    return (parts.netloc or url) + (parts.path or "")


def _number(value: float) -> str:
    """``3.0`` -> ``"3"``, ``0.5`` -> ``"0.5"`` (progress arrives as numbers of either kind)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def outputs_summary(job: Job, limit: int = 4) -> str:
    names = [ref.get("local") or ref["filename"] for refs in job.outputs.values() for ref in refs
             if ref.get("type") != "temp" or ref.get("local")]
    names += [f"{s['folder']}/{s['name']}" for s in job.saved]  # what saving nodes wrote on the server
    if not names:
        return ""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" (+{more} more)" if more > 0 else "")


class Console(Events):
    """Writes ``[v003 host:port] text`` lines to ``stream``; ``verbose`` adds queued/running/progress."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = True):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream, flush=True)

    def job(self, job: Job, text: str) -> None:
        if self.verbose:
            self.line(f"[{job.label} {short_server(job.server)}] {text}")

    def progress(self, job: Job, node_id: str, value: float, maximum: float) -> None:
        if self.verbose:
            node = job.workflow.get(node_id)
            cls = node.get("class_type", "?") if isinstance(node, dict) else "?"
            pct = f" {100.0 * value / maximum:3.0f}%" if maximum else ""
            self.line(f"[{job.label} {short_server(job.server)}] node {node_id} ({cls}) "
                      f"{_number(value)}/{_number(maximum)}{pct}")

    def server(self, url: str, text: str) -> None:
        self.line(f"[server {short_server(url)}] {text}")

    def note(self, text: str) -> None:
        self.line(text)

    def final(self, job: Job) -> None:
        """The line every finished variant gets, verbose or not."""
        head = f"[{job.label} {short_server(job.server)}] {job.status}"
        if job.status == "success":
            took = f" in {job.run_seconds:.1f} s" if job.run_seconds is not None else ""
            files = outputs_summary(job)
            self.line(head + took + (f": {files}" if files else ""))
        else:
            self.line(head + (f": {job.error}" if job.error else ""))
