"""``nada queue``: run many variants of one ComfyUI workflow on one or many ComfyUI servers."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from ..errors import InputError

NAME = "queue"
HELP = "queue variants of a ComfyUI workflow (sweeps, tables) on one or more ComfyUI servers"

EPILOG = """\
examples:
  nada queue --workflow sketch_api.json --sweep 3.seed=0-7 --download out/
  nada queue --workflow render.png --sweep "Domain.text=pencil sketch,oil painting" \\
             --sweep 3.seed=0-3 --server gpu1:8188 --server gpu2:8188 --report runs.jsonl
  nada queue --workflow w.json --table variants.csv --dry-run
  nada queue --resume runs.jsonl                 # re-queue what did not succeed

NODE is a node id, a unique node title (_meta.title) or a class type used by one node.
Values are typed like the workflow's current value of that input. Sweep values: v1,v2,...,
integer ranges 0-7, or a JSON list '["a, b", "c"]' for text containing commas.
Ctrl-C (or SIGTERM) removes this run's prompts from the servers' queues and interrupts a running
one only if it is ours; the report still gets a line for every variant, so --resume redoes them.
Every request has a time limit (--request-timeout) and answers have size caps; environment
variables NADA_QUEUE_TIMEOUT (one socket read), NADA_QUEUE_DEADLINE, NADA_QUEUE_DOWNLOAD_DEADLINE,
NADA_QUEUE_MAX_JSON_BYTES, NADA_QUEUE_MAX_DOWNLOAD_BYTES, NADA_QUEUE_MAX_WS_MESSAGE change them.
Exit status: 0 all variants succeeded, 1 some did not, 2 bad input,
130 cancelled by Ctrl-C, 143 by SIGTERM.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    what = parser.add_argument_group("what to run")
    what.add_argument("--workflow", metavar="FILE",
                      help="API-format workflow .json (Workflow -> Export (API)) or a PNG saved by ComfyUI")
    what.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                      help="override an input in every variant (repeatable)")
    what.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=V1,V2,...",
                      help="one variant per value; several sweeps form their product (repeatable)")
    what.add_argument("--table", metavar="FILE",
                      help="one variant per row: .csv with NODE.INPUT columns, .jsonl or .json list of objects")
    what.add_argument("--resume", metavar="REPORT",
                      help="skip variants that succeeded in this report; without --set/--sweep/--table, "
                           "re-queue the report's unfinished variants")
    what.add_argument("--dry-run", action="store_true", help="list the variants and exit; contacts no server")

    where = parser.add_argument_group("where to run")
    where.add_argument("--server", action="append", default=[], metavar="URL",
                       help="ComfyUI server (repeatable; default http://127.0.0.1:8188)")
    where.add_argument("--max-in-flight", type=int, default=2, metavar="N",
                       help="prompts queued at once per server (default 2: one running, one waiting)")
    where.add_argument("--down-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="fail the remaining variants when no server answered for this long (default 60)")
    where.add_argument("--no-websocket", action="store_true",
                       help="follow jobs by polling their history only (for proxies that block websockets)")
    where.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS",
                       help="history polling period without a websocket (default 1)")
    where.add_argument("--request-timeout", type=float, default=None, metavar="SECONDS",
                       help="longest time one API request may take, answer included (default 120; "
                            "downloads have their own limit, NADA_QUEUE_DOWNLOAD_DEADLINE)")

    out = parser.add_argument_group("results")
    out.add_argument("--download", metavar="DIR", help="download each variant's output files into DIR")
    out.add_argument("--download-layout", choices=("folders", "prefix"), default="folders",
                     help="DIR/v003/name.png (folders, default) or DIR/v003_name.png (prefix)")
    out.add_argument("--include-previews", action="store_true",
                     help="also download temporary preview images (Preview Image nodes)")
    out.add_argument("--report", metavar="FILE",
                     help="JSONL report, one line per variant (default: the --resume report, else "
                          "DIR/queue-report.jsonl with --download, else nada-queue-<time>.jsonl)")
    out.add_argument("--quiet", action="store_true", help="print only each variant's final line and the summary")


def run(args: argparse.Namespace) -> int:
    from nada_queue.comfy_client import DEFAULT_SERVER, normalize_server_url
    from nada_queue.report import read_report, select_for_resume, variants_from_report
    from nada_queue.variants import expand_variants, load_table
    from nada_queue.workflow_io import load_workflow, workflow_sha256

    if args.max_in_flight < 1:
        raise InputError("--max-in-flight must be at least 1")
    if args.down_timeout <= 0 or args.poll_interval <= 0:
        raise InputError("--down-timeout and --poll-interval must be positive")
    if args.request_timeout is not None and not args.request_timeout > 0:
        raise InputError("--request-timeout must be positive")

    records = read_report(args.resume) if args.resume else []
    workflow_path = args.workflow
    if workflow_path is None:
        recorded = [r.get("workflow") for r in records if r.get("workflow")]
        if not recorded:
            raise InputError("no workflow given; pass --workflow FILE (an API-format .json or a ComfyUI PNG)")
        workflow_path = recorded[-1]
    workflow = load_workflow(workflow_path)
    sha = workflow_sha256(workflow)

    from_args = bool(args.set or args.sweep or args.table)
    if args.resume and not from_args:
        variants = variants_from_report(records)
        _check_report_variants(variants, workflow)
    else:
        rows = load_table(args.table) if args.table else None
        variants = expand_variants(workflow, args.set, args.sweep, rows,
                                   table_name=Path(args.table).name if args.table else "table")
    # label width from the whole batch, so a resumed variant keeps its folder name (v007, not v07)
    width = max(3, len(str(max((v.index for v in variants), default=0))))
    skipped = []
    if args.resume:
        if any(r.get("workflow_sha256") not in (None, sha) for r in records):
            print("warning: the workflow differs from the one in the report; matching variants by overrides only",
                  file=sys.stderr)
        variants, skipped = select_for_resume(variants, records)

    servers = list(dict.fromkeys(normalize_server_url(s) for s in (args.server or [DEFAULT_SERVER])))

    if args.dry_run:
        return _print_dry_run(variants, skipped, width, servers, workflow_path)
    if not variants:
        print(f"nothing to do: all {len(skipped)} variant(s) already succeeded in {args.resume}")
        return 0
    return _run_batch(args, workflow, workflow_path, sha, variants, skipped, width, servers)


def _check_report_variants(variants, workflow) -> None:
    from nada_queue.variants import split_key

    for v in variants:
        for key in v.overrides:
            node_id, name = split_key(key)
            if node_id not in workflow or name not in workflow[node_id].get("inputs", {}):
                raise InputError(f"the report overrides {key}, which this workflow lacks; pass the workflow "
                                 "used for that report with --workflow")


def _print_dry_run(variants, skipped, width, servers, workflow_path) -> int:
    print(f"workflow {workflow_path}: {len(variants)} variant(s) to queue on {', '.join(servers)}")
    if skipped:
        print(f"({len(skipped)} variant(s) already succeeded and are skipped)")
    for v in variants:
        print(f"  {v.label(width)}  {v.describe()}")
    return 0


def _default_report_path(args) -> Path:
    if args.report:
        return Path(args.report)
    if args.resume:
        return Path(args.resume)
    if args.download:
        return Path(args.download) / "queue-report.jsonl"
    return Path(f"nada-queue-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")


def _run_batch(args, workflow, workflow_path, sha, variants, skipped, width, servers) -> int:
    from nada_queue.comfy_client import Limits
    from nada_queue.console import Console
    from nada_queue.report import ReportWriter, job_record
    from nada_queue.scheduler import BatchRunner, Job, RunOptions

    limits = Limits.from_env(deadline=args.request_timeout)  # bad NADA_QUEUE_* values: exit 2 before any work
    report_path = _default_report_path(args)
    console = Console(verbose=not args.quiet)
    jobs = [Job(variant=v, workflow=workflow, label=v.label(width)) for v in variants]
    options = RunOptions(max_in_flight=args.max_in_flight, down_timeout=args.down_timeout,
                         poll_interval=args.poll_interval, use_websocket=not args.no_websocket,
                         download_dir=Path(args.download) if args.download else None,
                         download_layout=args.download_layout, include_previews=args.include_previews,
                         limits=limits)
    workflow_abs = str(Path(workflow_path).resolve())
    head = f"queueing {len(jobs)} variant(s) on {len(servers)} server(s); report: {report_path}"
    console.line(head + (f" ({len(skipped)} already done)" if skipped else ""))

    run_id = f"nada-queue-{uuid.uuid4().hex}"  # the client id of this run on every server
    written: set[int] = set()  # id() of the jobs that have their report line
    started = time.monotonic()
    with ReportWriter(report_path) as report, _signals_cancel() as signals:

        def on_final(job) -> None:
            report.write(job_record(job, run_id, workflow_abs, sha))
            written.add(id(job))
            console.final(job)

        try:
            runner = BatchRunner(servers, jobs, options, events=console, on_final=on_final, run_id=run_id)
            runner.run()
        except KeyboardInterrupt:
            signals.cancelling = True  # further signals must not cut the lines below short
            _report_the_rest(jobs, written, on_final, signals.name)
            _summary(console, jobs, time.monotonic() - started, report_path, args)
            console.line(f"cancelled ({signals.name or 'Ctrl-C'})")
            return 143 if signals.name == "SIGTERM" else 130
        finally:
            signals.cancelling = True
            _report_the_rest(jobs, written, on_final, signals.name)  # a crash still leaves a line each
    _summary(console, jobs, time.monotonic() - started, report_path, args)
    return 0 if all(j.status == "success" for j in jobs) else 1


def _report_the_rest(jobs, written: set[int], on_final, signal_name: str | None) -> None:
    """Write a line for every job that has none yet: its status if final, else ``interrupted``."""
    from nada_queue.scheduler import FINAL

    why = f"the run was stopped by {signal_name}" if signal_name else "the run stopped"
    for job in jobs:
        if id(job) in written:
            continue
        if job.status not in FINAL:
            job.status, job.error = "interrupted", f"{why} before it finished; re-run it with --resume"
        try:
            on_final(job)
        except Exception as err:  # e.g. the disk is full: say so, keep trying the others
            print(f"error: could not write the report line of {job.label}: {err}", file=sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``) cancels like Ctrl-C: a background job ignores SIGINT."""


class _Signals:
    """SIGINT/SIGTERM: the first one cancels the run (raises KeyboardInterrupt in the main thread);
    later ones, while cancelling, only say that the clean-up is under way."""

    def __init__(self):
        self.name: str | None = None
        self.cancelling = False

    def handler(self, signum, frame):
        if self.name is not None or self.cancelling:
            print("still cancelling: removing this run's prompts and writing the report", file=sys.stderr)
            return
        self.name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def _signals_cancel():
    signals = _Signals()
    if threading.current_thread() is not threading.main_thread():
        yield signals  # signal handlers can only be set from the main thread
        return
    previous = {sig: signal.signal(sig, signals.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield signals
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _summary(console, jobs, seconds: float, report_path: Path, args) -> None:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    console.line(f"{len(jobs)} variant(s) in {seconds:.1f} s: {parts}; report: {report_path}")
    failed = [j for j in jobs if j.status != "success"]
    if failed:
        console.line(f"re-queue the {len(failed)} unfinished variant(s) with: {resume_command(args, report_path)}")


def resume_command(args, report_path: Path) -> str:
    """The command that re-queues this run's unfinished variants on the same servers, with the same
    downloads, runnable as printed (see :func:`~nada_core.commands.common.command_line`)."""
    from .common import command_line

    parts: list[object] = ["queue", "--resume", Path(report_path).resolve()]
    for server in args.server or []:
        parts += ["--server", server]
    if args.download:
        parts += ["--download", Path(args.download).resolve()]
        if args.download_layout != "folders":
            parts += ["--download-layout", args.download_layout]
        if args.include_previews:
            parts.append("--include-previews")
    if args.max_in_flight != 2:
        parts += ["--max-in-flight", args.max_in_flight]
    if args.no_websocket:
        parts.append("--no-websocket")
    return command_line(*parts)
