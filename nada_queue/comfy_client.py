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
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlencode, urlsplit

from nada_core.atomic import atomic_path
from nada_core.errors import InputError, NadaError  # noqa: F401
from .answers import (QueueState, history_entry_of, parse_body, prompt_id_of, queue_state_of,  # noqa: F401
                      rejection_of)
from .errors import BadAnswer, ComfyError, Unreachable  # noqa: F401  (re-exported)
from .websocket import WebSocket, WebSocketError

DEFAULT_SERVER = "http://127.0.0.1:8188"


@dataclass(frozen=True)
class Limits:
    """Time and size bounds of every exchange with a server (a hostile one cannot hold us).

    ``timeout``: one socket operation (connect, one read); ``deadline``: one whole API request,
    headers and body, so an answer trickled byte by byte still ends; ``download_deadline``: one
    output file; the byte caps refuse JSON bodies, files and websocket messages beyond them."""

    timeout: float = 30.0
    deadline: float = 120.0
    download_deadline: float = 1800.0
    max_json_bytes: int = 64 << 20
    max_download_bytes: int = 8 << 30
    max_ws_message: int = 64 << 20

    ENV = {"timeout": "NADA_QUEUE_TIMEOUT", "deadline": "NADA_QUEUE_DEADLINE",
           "download_deadline": "NADA_QUEUE_DOWNLOAD_DEADLINE", "max_json_bytes": "NADA_QUEUE_MAX_JSON_BYTES",
           "max_download_bytes": "NADA_QUEUE_MAX_DOWNLOAD_BYTES", "max_ws_message": "NADA_QUEUE_MAX_WS_MESSAGE"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **given: Any) -> "Limits":
        """Defaults, overridden by ``NADA_QUEUE_*`` variables, overridden by ``given`` (not None)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, var in cls.ENV.items():
            text = env.get(var)
            if text is None or not text.strip():
                continue
            kind = int if name.startswith("max_") else float
            try:
                value = kind(text)
            except ValueError:
                raise InputError(f"{var}={text!r} is not a{'n integer' if kind is int else ' number'}; "
                                 "set it to a positive value or unset it") from None
            values[name] = value
        values.update({k: v for k, v in given.items() if v is not None})
        for name, value in values.items():
            if not value > 0:
                raise InputError(f"{cls.ENV[name]} (or its option) must be positive, got {value!r}")
        return cls(**values)


class _Watchdog:
    """Shuts a connection's socket down when ``seconds`` have passed: every blocked read then
    returns at once, however slowly the server trickles its bytes."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.conn, self.seconds, self.fired = conn, seconds, False
        self.sock: socket.socket | None = None  # kept: http.client drops conn.sock for "close" answers
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        sock = self.sock or self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


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
    text = " ".join("; ".join(lines).split())  # one line, whatever the server put in its messages
    return text if len(text) <= 2000 else text[:2000] + " ..."


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


class ComfyClient:
    """Blocking client of one ComfyUI server. Each call opens its own connection, so one client
    may be used from several threads. Every call is bounded by :class:`Limits` in time and size."""

    def __init__(self, url: str, limits: Limits | None = None):
        self.url = normalize_server_url(url)
        parts = urlsplit(self.url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path
        self.limits = limits or Limits()

    def __repr__(self) -> str:
        return f"ComfyClient({self.url!r})"

    # -------------------------------------------------------------- plumbing
    def _open(self, method: str, path: str, body: Any = None, deadline: float | None = None):
        """Send a request; return ``(connection, response, watchdog)`` (caller reads, then closes
        the connection and cancels the watchdog)."""
        deadline = deadline or self.limits.deadline
        cls = http.client.HTTPSConnection if self.secure else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=min(self.limits.timeout, deadline))
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        watchdog = _Watchdog(conn, deadline)
        try:
            conn.connect()
            watchdog.sock = conn.sock
            if watchdog.fired:  # connected just as the deadline passed
                raise TimeoutError()
            conn.request(method, self.prefix + path, body=data, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as err:
            conn.close()
            watchdog.cancel()
            raise Unreachable(f"{self.url} is unreachable ({self._why(err, watchdog)})") from err
        if response.status in (502, 503, 504):
            conn.close()
            watchdog.cancel()
            raise Unreachable(f"{self.url} answered HTTP {response.status} (server down behind a proxy?)")
        return conn, response, watchdog

    def _why(self, err: BaseException, watchdog: _Watchdog) -> str:
        if watchdog.fired:
            return (f"no whole answer within {watchdog.seconds:g} s; raise {Limits.ENV['deadline']} "
                    "if the server is just slow")
        return _describe(err)

    def _announced_size(self, response: http.client.HTTPResponse, path: str, cap: int, var: str) -> None:
        text = response.getheader("Content-Length")
        if text is None:
            return
        try:
            size = int(text)
        except ValueError:
            raise BadAnswer(f"{self.url}{path} answered a bad Content-Length {text[:40]!r}") from None
        if size > cap:
            raise BadAnswer(f"{self.url}{path} announced {size} bytes, more than the cap of {cap}; "
                            f"raise {var} if that is expected")

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        """``(status, body)``; the body is capped at ``limits.max_json_bytes``."""
        cap, var = self.limits.max_json_bytes, Limits.ENV["max_json_bytes"]
        conn, response, watchdog = self._open(method, path, body)
        try:
            self._announced_size(response, path, cap, var)
            chunks, size = [], 0
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                size += len(chunk)
                if size > cap:
                    raise BadAnswer(f"{self.url}{path} sent more than {cap} bytes; raise {var} if that is expected")
                chunks.append(chunk)
            _check_complete(response, size)
            if watchdog.fired:  # the shutdown can look like a clean end of a chunked body
                raise Unreachable(f"{self.url}{path}: {self._why(TimeoutError(), watchdog)}")
            return response.status, b"".join(chunks)
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise Unreachable(f"{self.url}{path} dropped the connection ({self._why(err, watchdog)})") from err
        finally:
            conn.close()
            watchdog.cancel()

    def _json(self, method: str, path: str, body: Any = None, ok=(200,)) -> Any:
        status, raw = self._request(method, path, body)
        if status not in ok:
            text = raw[:200].decode("utf-8", "replace").replace("\n", " ")
            raise ComfyError(f"{self.url}{path} answered HTTP {status}: {text}")
        return parse_body(raw, f"{self.url}{path}")

    # -------------------------------------------------------------- routes
    def system_stats(self) -> Any:
        """Server facts; also our liveness probe (any JSON answer counts as alive)."""
        return self._json("GET", "/system_stats")

    def queue_prompt(self, prompt: dict[str, Any], client_id: str, prompt_id: str | None = None) -> str:
        """Queue ``prompt``; return its prompt id. Raises :class:`PromptRejected` on validation errors."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id}
        if prompt_id:
            body["prompt_id"] = prompt_id
        status, raw = self._request("POST", "/prompt", body)
        what = f"{self.url}/prompt"
        if status == 400:
            try:
                answer = parse_body(raw, what)
            except BadAnswer:
                answer = raw[:300].decode("utf-8", "replace")
            raise PromptRejected(*rejection_of(answer))
        if status != 200:
            text = raw[:300].decode("utf-8", "replace").replace("\n", " ")
            raise ComfyError(f"{what} answered HTTP {status}: {text}")
        return prompt_id_of(parse_body(raw, what), what)

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The checked history entry of a finished prompt (``outputs``, ``status``), or ``None``."""
        path = f"/history/{quote(prompt_id, safe='')}"
        return history_entry_of(self._json("GET", path), prompt_id, f"{self.url}{path}")

    def queue(self) -> QueueState:
        return queue_state_of(self._json("GET", "/queue"), f"{self.url}/queue")

    def delete_pending(self, prompt_ids: list[str]) -> None:
        """Remove these prompts from the pending queue (running ones are not affected)."""
        if prompt_ids:
            self._request("POST", "/queue", {"delete": list(prompt_ids)})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running (servers >= 0.4 check the id themselves)."""
        self._request("POST", "/interrupt", {"prompt_id": prompt_id})

    def download(self, ref: dict[str, Any], dest: str | os.PathLike) -> Path:
        """Stream an output file (``{"filename", "subfolder", "type"}``) atomically into ``dest``,
        refusing more than ``limits.max_download_bytes`` and more than ``download_deadline`` s."""
        query = urlencode({"filename": ref.get("filename", ""), "subfolder": ref.get("subfolder", "") or "",
                           "type": ref.get("type", "output") or "output"})
        path = f"/view?{query}"
        cap, var = self.limits.max_download_bytes, Limits.ENV["max_download_bytes"]
        conn, response, watchdog = self._open("GET", path, deadline=self.limits.download_deadline)
        name = ref.get("filename")
        try:
            if response.status != 200:
                raise ComfyError(f"{self.url} could not send {name!r} (HTTP {response.status})")
            self._announced_size(response, "/view", cap, var)
            try:
                with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
                    size = 0
                    while True:
                        try:
                            chunk = response.read(1 << 20)
                        except (OSError, http.client.HTTPException, ValueError) as err:
                            raise Unreachable(f"download of {name!r} from {self.url} failed "
                                              f"({self._why(err, watchdog)})") from err
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > cap:
                            raise BadAnswer(f"{self.url} sent more than {cap} bytes for {name!r}; "
                                            f"raise {var} if that is expected")
                        fh.write(chunk)
                    try:
                        _check_complete(response, size)
                    except http.client.IncompleteRead as err:
                        raise Unreachable(f"download of {name!r} from {self.url} failed "
                                          f"({self._why(err, watchdog)})") from err
                    if watchdog.fired:  # the shutdown can look like a clean end of a chunked body
                        raise Unreachable(f"download of {name!r} from {self.url} failed "
                                          f"({self._why(TimeoutError(), watchdog)})")
            except OSError as err:  # local disk problem, not the server's
                raise ComfyError(f"cannot write {str(dest)!r}: {err}") from err
        finally:
            conn.close()
            watchdog.cancel()
        return Path(dest)

    def websocket(self, client_id: str) -> WebSocket:
        """Open ``/ws?clientId=...``; raises :class:`Unreachable` when that fails."""
        scheme = "wss" if self.secure else "ws"
        url = f"{scheme}://{self.host}:{self.port}{self.prefix}/ws?{urlencode({'clientId': client_id})}"
        try:
            return WebSocket.connect(url, timeout=min(self.limits.timeout, self.limits.deadline),
                                     max_message=self.limits.max_ws_message)
        except WebSocketError as err:
            raise Unreachable(f"{self.url} websocket: {err}") from err


def _check_complete(response: http.client.HTTPResponse, size: int) -> None:
    """http.client's ``read(n)`` ends quietly when a body stops short of its Content-Length."""
    if response.length:  # bytes still announced but never sent
        raise http.client.IncompleteRead(b"", response.length)


def _describe(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        return f"the answer ended {err.expected} bytes short of its Content-Length"
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    text = str(err) or type(err).__name__
    return text
