"""The one schema-checking layer between ComfyUI's answers and the scheduler.

Every HTTP JSON body and every websocket text message goes through a function here before the
scheduler looks at it. Parsing is :func:`nada_core.json_text.parse_json` (bounded depth, UTF-8
checked, one-line errors); the shape checks below turn anything unexpected (a list where an
object belongs, a prompt id that is an object, a progress value that is text) into one
:class:`BadAnswer` line that names the route and what was wrong. Nothing else in the queue
client indexes into server data, so no ``KeyError``/``TypeError``/``AttributeError`` can reach a
worker thread from a hostile answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from nada_core.json_text import parse_json
from .errors import BadAnswer

_FIX = "is it a ComfyUI server (of version 0.3 or newer)?"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def parse_body(raw: bytes, what: str) -> Any:
    """JSON body ``raw`` of the answer ``what`` (e.g. ``"http://h:8188/queue"``); empty -> ``None``."""
    if not raw.strip():
        return None
    return parse_json(raw, f"{what} answered", _FIX, error=BadAnswer)


def need(value: Any, kind: type, what: str) -> Any:
    """``value`` when it is a ``kind`` (``dict``, ``list`` or ``str``), else :class:`BadAnswer`."""
    if not isinstance(value, kind):
        raise BadAnswer(f"{what} is {_kind(value)}, expected {_kind(kind())}; {_FIX}")
    return value


def prompt_id_of(data: Any, what: str) -> str:
    """``POST /prompt`` (200): ``{"prompt_id": "...", "number": n, "node_errors": {}}`` -> the id."""
    data = need(data, dict, f"{what} answer")
    pid = data.get("prompt_id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip() or len(str(pid)) > 200:
        raise BadAnswer(f"{what} answer has no usable prompt_id (got {_kind(pid)}); {_FIX}")
    return str(pid)


def rejection_of(data: Any) -> tuple[Any, dict[str, Any]]:
    """``POST /prompt`` (400) body -> ``(error, node_errors)``; any shape is accepted and shown as text,
    because a rejection is already the answer (the variant ends ``invalid``)."""
    if not isinstance(data, dict):
        return (str(data)[:300] if data is not None else "prompt rejected"), {}
    node_errors = data.get("node_errors")
    clean: dict[str, Any] = {}
    if isinstance(node_errors, dict):
        for node_id, info in list(node_errors.items())[:50]:
            if not isinstance(info, dict):
                continue
            errors = info.get("errors") if isinstance(info.get("errors"), list) else []
            clean[str(node_id)] = {"class_type": str(info.get("class_type", "?"))[:100],
                                   "errors": [e for e in errors[:20] if isinstance(e, dict)]}
    error = data.get("error")
    if not isinstance(error, (dict, str)) and error is not None:
        error = str(error)[:300]
    return error, clean


def history_entry_of(data: Any, prompt_id: str, what: str) -> dict[str, Any] | None:
    """``GET /history/{id}`` -> the entry of ``prompt_id`` (``None``: not finished yet).

    The entry's ``outputs`` must be an object of objects and ``status`` an object whose
    ``messages`` is a list; the returned entry holds only checked fields."""
    if data is None:
        return None
    data = need(data, dict, f"{what} answer")
    if prompt_id not in data:
        return None
    entry = need(data[prompt_id], dict, f"{what} entry of prompt {prompt_id}")
    outputs = entry.get("outputs", {})
    need(outputs, dict, f"{what} outputs of prompt {prompt_id}")
    for node_id, out in outputs.items():
        need(out, dict, f"{what} outputs of node {str(node_id)[:40]}")
    status = entry.get("status", {})
    status = {} if status is None else need(status, dict, f"{what} status of prompt {prompt_id}")
    messages = status.get("messages", [])
    messages = [] if messages is None else need(messages, list, f"{what} status messages of prompt {prompt_id}")
    status_str = status.get("status_str")
    if status_str is not None:
        need(status_str, str, f"{what} status_str of prompt {prompt_id}")
    completed = status.get("completed")
    return {"outputs": outputs,
            "status": {"status_str": status_str, "completed": completed if isinstance(completed, bool) else None,
                       "messages": [m for m in messages if isinstance(m, list) and len(m) == 2
                                    and isinstance(m[0], str)]}}


@dataclass
class QueueState:
    """Prompt ids running and pending on a server (and who queued them)."""

    running: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    client_of: dict[str, str | None] = field(default_factory=dict)


def queue_state_of(data: Any, what: str) -> QueueState:
    """``GET /queue`` -> :class:`QueueState`. Items are ``[number, prompt_id, prompt, extra, outputs]``."""
    data = need({} if data is None else data, dict, f"{what} answer")
    state = QueueState()
    for name, target in (("queue_running", state.running), ("queue_pending", state.pending)):
        items = data.get(name)
        items = [] if items is None else need(items, list, f"{what} {name}")
        for item in items:
            item = need(item, list, f"{what} item of {name}")
            if len(item) < 2 or isinstance(item[1], bool) or not isinstance(item[1], (str, int)):
                raise BadAnswer(f"{what} item of {name} has no prompt id; {_FIX}")
            pid = str(item[1])
            target.append(pid)
            extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
            client = extra.get("client_id")
            state.client_of[pid] = client if isinstance(client, str) else None
    return state


# ---------------------------------------------------------------------------- websocket events
FOLLOWED = ("execution_start", "executing", "progress", "execution_success", "execution_error",
            "execution_interrupted", "execution_cached", "executed")


@dataclass
class Event:
    """One checked websocket event about a prompt: ``kind``, ``prompt_id``, and per kind
    ``node`` (``None`` = "executing" with no node: the prompt is done) or ``value``/``maximum``."""

    kind: str
    prompt_id: str
    node: str | None = None
    value: float = 0.0
    maximum: float = 0.0


class BadEvent(BadAnswer):
    """A websocket event about a known prompt with a wrong shape; ``prompt_id`` names that prompt."""

    def __init__(self, message: str, prompt_id: str):
        super().__init__(message)
        self.prompt_id = prompt_id


def _number(value: Any, what: str, prompt_id: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadEvent(f"{what} is {_kind(value)}, expected a finite number", prompt_id)
    return float(value)


def event_of(text: str, what: str, known: set[str] | dict[str, Any]) -> Event | None:
    """Check one websocket text message. Returns an :class:`Event` about a prompt in ``known``,
    ``None`` for messages we do not follow (``status``, other clients' prompts, extensions' types).

    Raises :class:`BadAnswer` for a message that is not a JSON object with a string ``type``
    (the connection does not speak ComfyUI's protocol) and :class:`BadEvent` for a followed event
    about a known prompt whose fields have the wrong types."""
    message = parse_json(text, f"{what} sent a message that", _FIX, expect=dict, error=BadAnswer)
    kind = message.get("type")
    if not isinstance(kind, str):
        raise BadAnswer(f"{what} sent a message whose type is {_kind(kind)}, expected a string; {_FIX}")
    if kind not in FOLLOWED:
        return None
    data = message.get("data")
    if not isinstance(data, dict):
        return None  # cannot be about one of our prompts
    pid = data.get("prompt_id")
    if not isinstance(pid, (str, int)) or isinstance(pid, bool) or str(pid) not in known:
        return None
    pid = str(pid)
    if kind == "executing":
        node = data.get("node")
        if node is not None and (isinstance(node, bool) or not isinstance(node, (str, int))):
            raise BadEvent(f"{what} sent an 'executing' event whose node is {_kind(node)}", pid)
        return Event(kind, pid, node=None if node is None else str(node))
    if kind == "progress":
        node = data.get("node")
        value = _number(data.get("value"), f"{what} progress value", pid)
        maximum = _number(data.get("max"), f"{what} progress max", pid)
        return Event(kind, pid, node=None if node is None else str(node)[:40], value=value, maximum=maximum)
    return Event(kind, pid)
