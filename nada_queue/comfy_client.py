"""ComfyUI's HTTP API, wrapped with the standard library (``http.client``).

Routes used (ComfyUI >= 0.3; ``prompt_id`` in ``POST /prompt`` and targeted interrupts need 0.4+,
older servers ignore those fields and we fall back gracefully):

- ``GET /system_stats`` (liveness), ``POST /prompt`` -> ``{prompt_id, number, node_errors}`` or
  400 ``{error, node_errors}``, ``GET /history/{id}``, ``GET /queue``, ``POST /queue {"delete": [...]}``,
  ``POST /interrupt {"prompt_id": ...}``, ``GET /view?filename&subfolder&type``, ``/ws?clientId=``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from nada_core.atomic import atomic_path
from nada_core.errors import NadaError
from .websocket import WebSocket, WebSocketError

DEFAULT_SERVER = "http://127.0.0.1:8188"


class ComfyError(NadaError):
    """The server answered, but not with what we asked for (HTTP error, bad JSON)."""


class Unreachable(ComfyError):
    """The server could not be reached (refused, reset, timed out, gateway error)."""


class PromptRejected(ComfyError):
    """``POST /prompt`` answered 400: the workflow failed ComfyUI's validation."""

    def __init__(self, error: Any, node_errors: dict[str, Any] | None):
        self.error = error
        self.node_errors = node_errors or {}
        super().__init__(format_rejection(error, self.node_errors))


def format_rejection(error: Any, node_errors: dict[str, Any]) -> str:
    """One line per failing node: ``node 3 (EmptyImage): Value -5 smaller than min of 1: width``."""
    lines = []
    for node_id, info in (node_errors or {}).items():
        info = info if isinstance(info, dict) else {}
        cls = info.get("class_type", "?")
        for err in info.get("errors") or [{}]:
            msg = str(err.get("message") or "invalid")
            details = str(err.get("details") or "")
            lines.append(f"node {node_id} ({cls}): {msg}" + (f": {details}" if details else ""))
    if not lines:
        if isinstance(error, dict):
            msg = str(error.get("message") or "prompt rejected")
            details = str(error.get("details") or "")
            lines.append(msg + (f": {details}" if details else ""))
        else:
            lines.append(str(error or "prompt rejected"))
    return "; ".join(lines)


def normalize_server_url(url: str) -> str:
    """``"host:8188"`` -> ``"http://host:8188"``; no trailing slash. Only http/https."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NadaError(f"server {url!r} is not an http(s) URL; use e.g. {DEFAULT_SERVER}")
    try:
        parts.port
    except ValueError:
        raise NadaError(f"server {url!r} has a bad port number") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass
class QueueState:
    """Prompt ids running and pending on a server (and who queued them)."""

    running: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    client_of: dict[str, str | None] = field(default_factory=dict)


class ComfyClient:
    """Blocking client of one ComfyUI server. Each call opens its own connection, so one client
    may be used from several threads."""

    def __init__(self, url: str, timeout: float = 30.0, connect_timeout: float = 5.0):
        self.url = normalize_server_url(url)
        parts = urlsplit(self.url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"ComfyClient({self.url!r})"

    # -------------------------------------------------------------- plumbing
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=timeout)

    def _open(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        """Send a request; return ``(connection, response)`` (caller reads and closes)."""
        conn = self._connection(self.connect_timeout)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        try:
            conn.connect()
            conn.sock.settimeout(timeout or self.timeout)
            conn.request(method, self.prefix + path, body=data, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            raise Unreachable(f"{self.url} is unreachable ({_describe(err)})") from err
        if response.status in (502, 503, 504):
            conn.close()
            raise Unreachable(f"{self.url} answered HTTP {response.status} (server down behind a proxy?)")
        return conn, response

    def _request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, bytes]:
        conn, response = self._open(method, path, body, timeout)
        try:
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as err:
            raise Unreachable(f"{self.url} dropped the connection ({_describe(err)})") from err
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: Any = None, ok=(200,), timeout: float | None = None) -> Any:
        status, raw = self._request(method, path, body, timeout)
        if status not in ok:
            raise ComfyError(f"{self.url}{path} answered HTTP {status}: {raw[:200].decode('utf-8', 'replace')}")
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError:
            raise ComfyError(f"{self.url}{path} answered something that is not JSON") from None

    # -------------------------------------------------------------- routes
    def system_stats(self) -> dict[str, Any]:
        """Server facts; also our liveness probe."""
        return self._json("GET", "/system_stats", timeout=10.0)

    def queue_prompt(self, prompt: dict[str, Any], client_id: str, prompt_id: str | None = None) -> str:
        """Queue ``prompt``; return its prompt id. Raises :class:`PromptRejected` on validation errors."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        status, raw = self._request("POST", "/prompt", body, timeout=max(self.timeout, 60.0))
        try:
            answer = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            answer = {}
        if status == 400:
            raise PromptRejected(answer.get("error"), answer.get("node_errors"))
        if status != 200 or not isinstance(answer, dict) or "prompt_id" not in answer:
            text = raw[:300].decode("utf-8", "replace")
            raise ComfyError(f"{self.url}/prompt answered HTTP {status}: {text}")
        return str(answer["prompt_id"])

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of a finished prompt (``outputs``, ``status``), or ``None`` if not finished."""
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}")
        if isinstance(data, dict):
            entry = data.get(prompt_id)
            return entry if isinstance(entry, dict) else None
        return None

    def queue(self) -> QueueState:
        data = self._json("GET", "/queue") or {}
        state = QueueState()
        for name, target in (("queue_running", state.running), ("queue_pending", state.pending)):
            for item in data.get(name) or []:
                # item: [number, prompt_id, prompt, extra_data, outputs_to_execute]
                if isinstance(item, list) and len(item) >= 2:
                    pid = str(item[1])
                    target.append(pid)
                    extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
                    state.client_of[pid] = extra.get("client_id")
        return state

    def delete_pending(self, prompt_ids: list[str]) -> None:
        """Remove these prompts from the pending queue (running ones are not affected)."""
        if prompt_ids:
            self._request("POST", "/queue", {"delete": list(prompt_ids)}, timeout=10.0)

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running (servers >= 0.4 check the id themselves)."""
        self._request("POST", "/interrupt", {"prompt_id": prompt_id}, timeout=10.0)

    def download(self, ref: dict[str, Any], dest: str | os.PathLike) -> Path:
        """Fetch an output file (``{"filename", "subfolder", "type"}``) atomically into ``dest``."""
        query = urlencode({"filename": ref.get("filename", ""), "subfolder": ref.get("subfolder", "") or "",
                           "type": ref.get("type", "output") or "output"})
        conn, response = self._open("GET", f"/view?{query}", timeout=120.0)
        name = ref.get("filename")
        try:
            if response.status != 200:
                raise ComfyError(f"{self.url} could not send {name!r} (HTTP {response.status})")
            try:
                with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                    while True:
                        try:
                            chunk = response.read(1 << 20)
                        except (OSError, http.client.HTTPException) as err:
                            raise Unreachable(f"download of {name!r} from {self.url} failed ({_describe(err)})") from err
                        if not chunk:
                            break
                        fh.write(chunk)
            except OSError as err:  # local disk problem, not the server's
                raise ComfyError(f"cannot write {str(dest)!r}: {err}") from err
        finally:
            conn.close()
        return Path(dest)

    def websocket(self, client_id: str, timeout: float = 10.0) -> WebSocket:
        """Open ``/ws?clientId=...``; raises :class:`Unreachable` when that fails."""
        scheme = "wss" if self.secure else "ws"
        url = f"{scheme}://{self.host}:{self.port}{self.prefix}/ws?{urlencode({'clientId': client_id})}"
        try:
            return WebSocket.connect(url, timeout=timeout)
        except WebSocketError as err:
            raise Unreachable(f"{self.url} websocket: {err}") from err


def _describe(err: BaseException) -> str:
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    text = str(err) or type(err).__name__
    return text
