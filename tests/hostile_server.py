"""A hostile Messages API server for tests: broken and malicious streams, on loopback.

Run as ``python tests/hostile_server.py`` (prints ``listening on http://127.0.0.1:PORT``);
``--tls CERT KEY`` serves HTTPS with that certificate.
The request's ``model`` picks the behaviour; every response is bounded in size and time,
so the process never needs killing to finish a test:

* ``ok``               a correct short stream (the control)
* ``garbage``          200 text/event-stream, then 64 KiB of seeded random bytes
* ``truncated_utf8``   a delta whose data ends in half a UTF-8 character
* ``huge_line``        message_start, then one line of 64 MiB without a newline
* ``huge_event``       message_start, then 64 MiB of short ``data:`` lines and no blank line
* ``out_of_order``     content_block_delta before message_start
* ``no_stop``          a clean end of the body without message_stop
* ``never_close``      the whole stream, then the connection held open (no last chunk) for 20 s
* ``trickle``          message_start, then a ping every 50 ms for 20 s, never any content
* ``html``             200 text/html, a proxy's error page
* ``json_body``        200 application/json, a whole message although a stream was asked for
* ``gzip_undeclared``  a correct stream gzip'd, without content-encoding
* ``gzip_declared``    a correct stream gzip'd, with content-encoding: gzip (a legal response)
* ``gzip_bomb``        content-encoding: gzip, 256 MiB of ``x`` compressed, sent in 1 KiB chunks
* ``slow_headers``     the status line only after 20 s
* ``reset``            the connection closed before any response
* ``echo_key``         401 whose error message echoes the API key back (x-api-key or Bearer)

Standard library only: it runs in its own process, outside Locust's gevent patching.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import socket
import ssl
import sys
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MIB = 1024 * 1024
HOLD_S = 20.0


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def message_start() -> bytes:
    message = {"id": "msg_h", "type": "message", "role": "assistant", "model": "m", "content": []}
    return sse("message_start", {"type": "message_start", "message": {**message, "usage": {"input_tokens": 5}}})


def block_start() -> bytes:
    return sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )


def text_delta(text: str) -> bytes:
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def message_end() -> bytes:
    return (
        sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        + sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        )
        + sse("message_stop", {"type": "message_stop"})
    )


def good_stream() -> bytes:
    return message_start() + block_start() + text_delta("a") + text_delta("b") + text_delta("c") + message_end()


_bomb: list[bytes] = []


def gzip_bomb() -> bytes:
    """256 MiB of ``x`` after a message_start, gzip'd to about 250 KiB; built once."""
    if not _bomb:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
        parts = [compressor.compress(message_start() + b"data: ")]
        block = b"x" * MIB
        parts += [compressor.compress(block) for _ in range(256)]
        parts.append(compressor.flush())
        _bomb.append(b"".join(parts))
    return _bomb[0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        # A client that gives up on a hostile stream closes the connection: not an error here.
        with contextlib.suppress(ConnectionError, OSError):
            super().handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        model = str(body.get("model", ""))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            getattr(self, f"case_{model}", self.case_ok)()

    # -- helpers -------------------------------------------------------------------

    def start(self, content_type: str = "text/event-stream", extra: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def whole(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream_of(self, piece: bytes, total: int) -> None:
        sent = 0
        while sent < total:
            self.chunk(piece)
            sent += len(piece)

    # -- cases -----------------------------------------------------------------------

    def case_ok(self) -> None:
        self.start()
        self.chunk(good_stream())
        self.end()

    def case_garbage(self) -> None:
        self.start()
        self.chunk(random.Random(7).randbytes(64 * 1024))
        self.end()

    def case_truncated_utf8(self) -> None:
        self.start()
        self.chunk(message_start() + block_start())
        self.chunk(b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":')
        self.chunk(b'{"type":"text_delta","text":"\xe2\x82')
        self.end()

    def case_huge_line(self) -> None:
        self.start()
        self.chunk(message_start() + block_start() + b"data: ")
        self.stream_of(b"x" * (64 * 1024), 64 * MIB)
        self.end()

    def case_huge_event(self) -> None:
        self.start()
        self.chunk(message_start() + block_start() + b"event: content_block_delta\n")
        self.stream_of(b"data: x\n" * 8192, 64 * MIB)
        self.end()

    def case_out_of_order(self) -> None:
        self.start()
        self.chunk(text_delta("early") + message_start() + block_start() + message_end())
        self.end()

    def case_no_stop(self) -> None:
        self.start()
        self.chunk(message_start() + block_start() + text_delta("a"))
        self.end()

    def case_never_close(self) -> None:
        self.start()
        self.chunk(good_stream())
        time.sleep(HOLD_S)

    def case_trickle(self) -> None:
        self.start()
        self.chunk(message_start() + block_start())
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
            self.chunk(sse("ping", {"type": "ping"}))
        self.end()

    def case_html(self) -> None:
        self.whole(200, "text/html", b"<html><body><h1>Upstream is having a moment</h1></body></html>")

    def case_json_body(self) -> None:
        message = {
            "id": "msg_j",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 1},
        }
        self.whole(200, "application/json", json.dumps(message).encode())

    def case_gzip_undeclared(self) -> None:
        self.start()
        self.chunk(gzip.compress(good_stream()))
        self.end()

    def case_gzip_declared(self) -> None:
        self.start(extra={"content-encoding": "gzip"})
        self.chunk(gzip.compress(good_stream()))
        self.end()

    def case_gzip_bomb(self) -> None:
        self.start(extra={"content-encoding": "gzip"})
        bomb = gzip_bomb()
        for i in range(0, len(bomb), 1024):
            self.chunk(bomb[i : i + 1024])
        self.end()

    def case_slow_headers(self) -> None:
        time.sleep(HOLD_S)
        self.case_ok()

    def case_reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close_connection = True
        self.connection.close()

    def case_echo_key(self) -> None:
        # The SDK sends the key as x-api-key or as Authorization: Bearer; echo whichever came.
        key = self.headers.get("x-api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
        error = {"type": "authentication_error", "message": f"invalid x-api-key: {key}"}
        self.whole(401, "application/json", json.dumps({"type": "error", "error": error}).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The default backlog of 5 resets connections when a test's users all connect at once.
    request_queue_size = 128


def main() -> None:
    gzip_bomb()  # about a second, once, before the first client can time out waiting for it
    server = Server(("127.0.0.1", 0), Handler)
    scheme = "http"
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":  # --tls CERT KEY: serve HTTPS with that certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print(f"listening on {scheme}://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
