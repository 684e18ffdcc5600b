"""A minimal websocket client (RFC 6455) on plain sockets: enough to follow ComfyUI's ``/ws``.

Supports the opening handshake (with ``Sec-WebSocket-Accept`` check), text and binary messages
(fragmented or not), answering pings, and the closing handshake. No extensions (we never offer
``permessage-deflate``, so the server sends plain frames). ``wss://`` goes through :mod:`ssl`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
from urllib.parse import urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 64 * 1024 * 1024  # default cap: refuse absurd frames instead of exhausting memory


class WebSocketError(ConnectionError):
    """The handshake failed, the peer broke the protocol, or the connection is gone."""


class WebSocketProtocolError(WebSocketError):
    """The peer sent something RFC 6455 forbids (unknown opcode, oversized or bad frame): it is
    not a websocket server we can follow, so callers stop using websockets with it."""


class WebSocketClosed(WebSocketError):
    """The server closed the connection (``code`` is the close code, if it sent one)."""

    def __init__(self, message: str = "websocket closed", code: int | None = None):
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1((key + _GUID).encode("ascii")).digest()).decode("ascii")


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``mask`` repeated (the same operation unmasks)."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final frame. Clients must mask (``mask`` = 4 random bytes; drawn when ``None``)."""
    mask = os.urandom(4) if mask is None else mask
    n = len(payload)
    head = bytearray([0x80 | opcode])
    if n < 126:
        head.append(0x80 | n)
    elif n < 1 << 16:
        head.append(0x80 | 126)
        head += struct.pack(">H", n)
    else:
        head.append(0x80 | 127)
        head += struct.pack(">Q", n)
    return bytes(head) + mask + mask_payload(payload, mask)


def parse_frame(buf: bytes | bytearray, max_message: int = MAX_MESSAGE) -> tuple[bool, int, bytes, int] | None:
    """Parse one frame at the start of ``buf``: ``(fin, opcode, payload, bytes used)``, or ``None``
    when ``buf`` does not yet hold a whole frame. Raises :class:`WebSocketProtocolError` as soon as
    the header shows a frame we refuse (longer than ``max_message``, reserved bits, unknown
    opcode, a control frame over 125 bytes or fragmented), before its payload is awaited."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    fin, opcode = bool(b0 & 0x80), b0 & 0x0F
    if b0 & 0x70:
        raise WebSocketProtocolError("websocket frame with reserved bits set (no extension was agreed)")
    if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        raise WebSocketProtocolError(f"websocket frame with unknown opcode {opcode}")
    if opcode >= OP_CLOSE and (not fin or (b1 & 0x7F) > 125):
        raise WebSocketProtocolError("websocket control frame that is fragmented or longer than 125 bytes")
    masked, n = bool(b1 & 0x80), b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack(">H", bytes(buf[2:4]))[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack(">Q", bytes(buf[2:10]))[0]
        pos = 10
    if n > max_message:
        raise WebSocketProtocolError(f"websocket frame of {n} bytes is larger than the cap of {max_message}")
    mask = b""
    if masked:
        if len(buf) < pos + 4:
            return None
        mask = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_payload(payload, mask)
    return fin, opcode, payload, pos + n


class WebSocket:
    """A connected client websocket. Not thread-safe except :meth:`close`, which any thread may call."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"", max_message: int = MAX_MESSAGE):
        self._sock = sock
        self.max_message = max_message
        self._buf = bytearray(leftover)
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._closed = False

    # -------------------------------------------------------------- opening
    @classmethod
    def connect(cls, url: str, timeout: float = 10.0, headers: dict[str, str] | None = None,
                max_message: int = MAX_MESSAGE) -> "WebSocket":
        """Open ``ws://host:port/path?query`` (or ``wss://``) and complete the handshake."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise WebSocketError(f"not a websocket URL: {url}")
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise WebSocketError(f"cannot connect to {host}:{port}: {err}") from err
        try:
            if secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            host_header = host if parts.port is None else f"{host}:{port}"
            lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}", "Upgrade: websocket",
                     "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            response = bytearray()
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in response:
                if len(response) > 65536 or time.monotonic() > deadline:
                    raise WebSocketError("websocket handshake: no complete HTTP answer")
                chunk = sock.recv(4096)
                if not chunk:
                    raise WebSocketError("websocket handshake: connection closed by the server")
                response += chunk
            head, _, leftover = bytes(response).partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            fields = status_line.split(" ", 2)
            if len(fields) < 2 or fields[1] != "101":
                raise WebSocketError(f"websocket handshake refused: {status_line.strip()}")
            got = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                got[name.strip().lower()] = value.strip()
            if got.get("sec-websocket-accept") != accept_key(key):
                raise WebSocketError("websocket handshake: wrong Sec-WebSocket-Accept from the server")
        except WebSocketError:
            sock.close()
            raise
        except OSError as err:
            sock.close()
            raise WebSocketError(f"websocket handshake with {host}:{port} failed: {err}") from err
        return cls(sock, leftover, max_message)

    # -------------------------------------------------------------- messages
    def recv(self, timeout: float | None = None) -> str | bytes | None:
        """The next message (``str`` for text, ``bytes`` for binary), or ``None`` after ``timeout``
        seconds without a whole message. Pings are answered on the way. Raises
        :class:`WebSocketClosed` when the connection ends."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            message = self._next_buffered_message()
            if message is not None:
                return message
            if self._closed:
                raise WebSocketClosed()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            except OSError as err:
                self._closed = True
                raise WebSocketClosed(f"websocket connection lost: {err}") from err
            if not chunk:
                self._closed = True
                raise WebSocketClosed("websocket connection closed by the server")
            self._buf += chunk

    def _next_buffered_message(self) -> str | bytes | None:
        while True:
            frame = parse_frame(self._buf, self.max_message)
            if frame is None:
                return None
            fin, opcode, payload, used = frame
            del self._buf[:used]
            if opcode == OP_PING:
                try:
                    self._send(OP_PONG, payload)
                except OSError as err:
                    self._closed = True
                    raise WebSocketClosed(f"websocket connection lost: {err}") from err
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                try:
                    self._send(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                self._closed = True  # our close frame is sent: close() only drops the socket
                self.close()
                raise WebSocketClosed(f"websocket closed by the server (code {code})", code)
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                if opcode != OP_CONT:
                    self._fragments, self._fragment_op = [], opcode
                elif not self._fragment_op:
                    raise WebSocketProtocolError("websocket continuation frame without a start")
                self._fragments.append(payload)
                if sum(len(f) for f in self._fragments) > self.max_message:
                    raise WebSocketProtocolError(f"websocket message larger than the cap of {self.max_message}")
                if fin:
                    data, op = b"".join(self._fragments), self._fragment_op
                    self._fragments, self._fragment_op = [], 0
                    if op != OP_TEXT:
                        return data
                    try:
                        return data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise WebSocketProtocolError("websocket text message that is not UTF-8") from None

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode("utf-8"))

    def _send(self, opcode: int, payload: bytes) -> None:
        if self._closed:
            raise WebSocketClosed()
        self._sock.settimeout(10.0)
        self._sock.sendall(encode_frame(opcode, payload))

    def close(self) -> None:
        """Close the socket (idempotent; safe from another thread)."""
        if self._sock.fileno() == -1:
            return
        if not self._closed:
            self._closed = True
            try:  # polite closing handshake; the server's answer is not awaited
                self._sock.settimeout(1.0)
                self._sock.sendall(encode_frame(OP_CLOSE, struct.pack(">H", 1000)))
            except OSError:
                pass
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed
