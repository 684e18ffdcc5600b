"""Batch queueing of ComfyUI workflows: ``nada queue``.

A pure client of ComfyUI's HTTP/websocket API (standard library only):

- :mod:`.workflow_io` reads an API-format workflow from JSON or from a PNG saved by ComfyUI.
- :mod:`.variants` expands ``--set``/``--sweep``/``--table`` into variants (typed overrides).
- :mod:`.websocket` is a minimal websocket client; :mod:`.comfy_client` wraps ComfyUI's routes.
- :mod:`.scheduler` spreads jobs over servers and follows them to completion.
- :mod:`.report` writes the JSONL report and selects what ``--resume`` re-queues.
- :mod:`.outputs` lists a job's output files and downloads them.

Nothing here imports torch or ComfyUI.
"""
