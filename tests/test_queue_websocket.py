"""The minimal websocket client against a scripted loopback server (no ComfyUI needed)."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from nada_queue.websocket import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WebSocket,
                                       WebSocketClosed, WebSocketError, accept_key, encode_frame, mask_payload,
                                       parse_frame)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked server->client frame, built independently of the client's encoder."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack(">H", n)
    else:
        head += bytes([127]) + struct.pack(">Q", n)
    return head + payload


def test_accept_key_matches_rfc6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_masked_frames_round_trip(n):
    payload = bytes((i * 7) % 256 for i in range(n))
    mask = b"\x01\x80\xfe\x33"
    frame = encode_frame(OP_TEXT, payload, mask=mask)
    assert frame[1] & 0x80  # client frames are masked
    if n:
        body = frame[-n:]
        assert body == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    fin, op, got, used = parse_frame(frame + b"extra")
    assert (fin, op, got, used) == (True, OP_TEXT, payload, len(frame))
    assert parse_frame(frame[:-1] if n else frame[:1]) is None  # incomplete -> wait for more
    assert mask_payload(mask_payload(payload, mask), mask) == payload


class ScriptedServer:
    """Accepts one client, answers the handshake (optionally wrongly), then runs ``script(conn)``."""

    def __init__(self, script, accept=None, status="101 Switching Protocols", same_packet=b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.script, self.accept, self.status, self.same_packet = script, accept, status, same_packet
        self.request = b""
        self.received: list[tuple[int, bytes]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            key = [line.split(":", 1)[1].strip() for line in self.request.decode().split("\r\n")
                   if line.lower().startswith("sec-websocket-key")][0]
            accept = self.accept if self.accept is not None else accept_key(key)
            conn.sendall(f"HTTP/1.1 {self.status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode() + self.same_packet)
            self.script(conn, self)
        self.sock.close()

    def read_client_frame(self, conn) -> tuple[int, bytes]:
        buf = b""
        while True:
            frame = parse_frame(buf)
            if frame:
                self.received.append((frame[1], frame[2]))
                return frame[1], frame[2]
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError("client went away")
            buf += chunk


def test_messages_pings_fragments_and_close():
    done = threading.Event()

    def script(conn, srv):
        conn.sendall(server_frame(OP_TEXT, b'{"type": "status"}'))
        assert srv.read_client_frame(conn) == (OP_PONG, b"hi")
        conn.sendall(server_frame(OP_TEXT, "caf".encode(), fin=False) + server_frame(OP_CONT, "\u00e9!".encode()))
        conn.sendall(server_frame(OP_BINARY, b"\x00\x01" * 40000))
        done.wait(5)
        conn.sendall(server_frame(OP_CLOSE, struct.pack(">H", 1001)))
        srv.read_client_frame(conn)  # the client answers the close

    # a ping glued to the handshake answer must not be lost
    srv = ScriptedServer(script, same_packet=server_frame(OP_PING, b"hi"))
    ws = WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws?clientId=abc", timeout=5)
    assert b"GET /ws?clientId=abc HTTP/1.1" in srv.request and b"Sec-WebSocket-Version: 13" in srv.request
    assert ws.recv(5) == '{"type": "status"}'
    assert ws.recv(5) == "caf\u00e9!"
    assert ws.recv(5) == b"\x00\x01" * 40000
    assert ws.recv(0.05) is None  # nothing more yet: a timeout, not an error
    done.set()
    with pytest.raises(WebSocketClosed) as err:
        ws.recv(5)
    assert err.value.code == 1001 and ws.closed
    srv.thread.join(5)
    assert srv.received[-1][0] == OP_CLOSE


def test_connection_drop_is_reported():
    srv = ScriptedServer(lambda conn, srv: conn.sendall(server_frame(OP_TEXT, b"x")))
    ws = WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws", timeout=5)
    assert ws.recv(5) == "x"
    with pytest.raises(WebSocketClosed):
        ws.recv(5)


def test_bad_handshakes_are_refused():
    srv = ScriptedServer(lambda conn, srv: None, accept="wrong")
    with pytest.raises(WebSocketError, match="Sec-WebSocket-Accept"):
        WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws", timeout=5)
    srv = ScriptedServer(lambda conn, srv: None, status="404 Not Found")
    with pytest.raises(WebSocketError, match="refused: HTTP/1.1 404"):
        WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws", timeout=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WebSocketError, match="cannot connect"):
        WebSocket.connect(f"ws://127.0.0.1:{port}/ws", timeout=2)
    with pytest.raises(WebSocketError, match="not a websocket URL"):
        WebSocket.connect("http://127.0.0.1/ws")


@pytest.mark.parametrize("frame,match", [
    (bytes([0x83, 0]), "unknown opcode 3"),
    (bytes([0x8B, 0]), "unknown opcode 11"),
    (bytes([0xC1, 0]), "reserved bits"),
    (bytes([0x09, 0]), "control frame"),  # a fragmented ping
    (bytes([0x89, 126, 0, 200]), "control frame"),  # a ping longer than 125 bytes
    (bytes([0x82, 127]) + struct.pack(">Q", 1 << 63), "larger than the cap"),
    (bytes([0x82, 126]) + struct.pack(">H", 1001), "1001 bytes is larger than the cap of 1000"),
])
def test_refused_frames_are_protocol_errors_before_their_payload(frame, match):
    from nada_queue.websocket import WebSocketProtocolError

    with pytest.raises(WebSocketProtocolError, match=match):
        parse_frame(frame, max_message=1000)  # the header alone is enough to refuse it
    assert parse_frame(bytes([0x82, 126]) + struct.pack(">H", 1000), max_message=1000) is None  # at the cap: wait


def test_invalid_utf8_text_and_fragment_overflow_are_refused():
    from nada_queue.websocket import WebSocketProtocolError

    def script(conn, srv):
        conn.sendall(server_frame(OP_TEXT, b"\xff\xfe"))
        srv.read_client_frame(conn)

    srv = ScriptedServer(script)
    ws = WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws", timeout=5)
    with pytest.raises(WebSocketProtocolError, match="not UTF-8"):
        ws.recv(5)
    ws.close()

    def script2(conn, srv):
        conn.sendall(server_frame(OP_BINARY, b"a" * 600, fin=False) + server_frame(OP_CONT, b"b" * 600))
        srv.read_client_frame(conn)

    srv = ScriptedServer(script2)
    ws = WebSocket.connect(f"ws://127.0.0.1:{srv.port}/ws", timeout=5, max_message=1000)
    with pytest.raises(WebSocketProtocolError, match="larger than the cap of 1000"):
        ws.recv(5)
    ws.close()
