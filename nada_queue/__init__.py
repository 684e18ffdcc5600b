"""Batch queueing of ComfyUI workflows: ``nada queue``.

A pure client of ComfyUI's HTTP/websocket API (standard library only):

- :mod:`.workflow_io` reads an API-format workflow from JSON or from a PNG saved by ComfyUI.
- :mod:`.variants` expands ``--set``/``--sweep``/``--table`` into variants (typed overrides).
- :mod:`.websocket` is a minimal websocket client; :mod:`.comfy_client` wraps ComfyUI's routes,
  each request bounded in time (a total deadline, not just socket timeouts) and size.
- :mod:`.answers` checks the shape of every server answer and websocket event (one layer).
- :mod:`.jobs` holds the jobs, their pool and the run options; :mod:`.errors` the error classes.
- :mod:`.scheduler` spreads jobs over servers and follows them to completion.
- :mod:`.report` writes the JSONL report and selects what ``--resume`` re-queues.
- :mod:`.outputs` lists a job's output files and downloads them.

Nothing here imports torch or ComfyUI.
"""
