"""A scripted Messages API server for tests: known timing, known faults, on loopback.

Run as ``python tests/scripted_server.py`` (prints ``listening on http://127.0.0.1:PORT``).
The request's ``model`` picks the script, so one server serves every test case:

* ``timed``        message_start at once, first text delta after 200 ms, then 19 more
                   deltas 10 ms apart; usage.output_tokens = 20; stop_reason end_turn
* ``thinking``     100 ms, 5 thinking deltas 10 ms apart, a signature, 100 ms, then 5 text deltas
* ``http_429`` / ``http_529`` / ``http_500``   an error response (429 with retry-after: 3)
* ``midstream``    3 deltas, then ``event: error`` (overloaded_error)
* ``drop``         3 deltas, then the connection is cut mid-body
* ``malformed``    a content_block_delta whose data is not JSON
* ``bad_utf8``     compact deltas, then one whose payload is not valid UTF-8
* ``no_stop``      a clean end of the body without message_stop
* ``out_of_order`` a content_block_delta before message_start
* ``stall``        message_start, then silence for 5 s
* ``no_usage``     a stream with no usage anywhere
* ``whole``        a non-streaming message after 150 ms
* ``compact``      the API's compact JSON, one delta per chunk: empty, ASCII, non-ASCII and
                   escaped payloads, thinking with a signature, then text in a second block
* ``closing``      3 deltas, then the server closes the kept-alive connection once idle
* ``stray``        3 deltas, then stray bytes on the kept-alive connection once idle
* ``held_KEY``     message_start at once, then held open until ``POST /release/KEY``; then 3 deltas
                   and the end. ``held-cut_KEY``: held the same way, then one delta and the
                   connection cut. Each has its own request-id, and the time (``time.monotonic()``,
                   one clock per host) of its first delta and of its last byte is kept for
                   ``GET /trace/KEY`` (one JSON object per line): the ground truth of a test
                   that stops a run while streams are held open across the stop.
                   ``POST /release/KEY`` answers once every held stream of KEY has been written;
                   ``POST /release/KEY?n=N`` first waits until N streams of KEY are held;
                   ``...&after=S`` answers at once and releases S seconds later.
                   ``held-mid_KEY``: message_start and the first delta at once, then held the
                   same way: a call in flight, past its first token, until released.
                   ``GET /held/KEY`` says how many streams of KEY are held (``{"held": N}``).

``python tests/scripted_server.py --tls CERT KEY`` serves HTTPS with that certificate.
Standard library only: it runs in its own process, outside Locust's gevent patching.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIRST_DELTA_S = 0.200
DELTA_GAP_S = 0.010
DELTAS = 20


def sse(event: str, data: dict[str, Any], *, compact: bool = False) -> bytes:
    """One event; ``compact`` writes its JSON as the API does (no spaces, UTF-8 unescaped)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False) if compact else json.dumps(data)
    return f"event: {event}\ndata: {text}\n\n".encode()


def message_start(model: str, usage: bool = True) -> bytes:
    message: dict[str, Any] = {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if usage:
        message["usage"] = {"input_tokens": 12, "output_tokens": 1}
    return sse("message_start", {"type": "message_start", "message": message})


def block_start(index: int, kind: str = "text") -> bytes:
    block: dict[str, Any] = {"type": kind, "text": ""} if kind == "text" else {"type": kind, "thinking": ""}
    return sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, kind: str, payload: str, *, compact: bool = False) -> bytes:
    field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}[kind]
    return sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: payload}},
        compact=compact,
    )


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(output_tokens: int | None, stop_reason: str = "end_turn") -> bytes:
    body: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
    }
    if output_tokens is not None:
        body["usage"] = {"output_tokens": output_tokens}
    return sse("message_delta", body) + sse("message_stop", {"type": "message_stop"})


class Held:
    """Streams held open per key until released, and their send times (the ground truth)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.released: set[str] = set()
        self.pending: dict[str, int] = {}
        self.trace: dict[str, list[dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    def hold(self, key: str) -> None:
        with self.lock:
            self.pending[key] = self.pending.get(key, 0) + 1
            self.lock.notify_all()
            self.lock.wait_for(lambda: key in self.released, timeout=60)

    def done(self, key: str, row: dict[str, Any] | None) -> None:
        """A held stream ended: written to its end (``row``, its send times), or its client went away (None)."""
        with self.lock:
            if row is not None:
                self.trace.setdefault(key, []).append(row)
            self.pending[key] -= 1
            self.lock.notify_all()

    def held(self, key: str) -> int:
        with self.lock:
            return self.pending.get(key, 0)

    def release(self, key: str, held: int = 0) -> int:
        with self.lock:
            self.lock.wait_for(lambda: self.pending.get(key, 0) >= held, timeout=30)
            self.released.add(key)
            self.lock.notify_all()
            self.lock.wait_for(lambda: not self.pending.get(key), timeout=30)
            return len(self.trace.get(key, []))


HELD = Held()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path.startswith("/held/"):
            return self.json(200, {"held": HELD.held(self.path[len("/held/") :])})
        if not self.path.startswith("/trace/"):
            return self.error(404)
        with HELD.lock:
            rows = list(HELD.trace.get(self.path[len("/trace/") :], []))
        data = "".join(json.dumps(row) + "\n" for row in rows).encode()
        self.send_response(200)
        self.send_header("content-type", "application/x-ndjson")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        if self.path.startswith("/release/"):
            key, _, query = self.path[len("/release/") :].partition("?")
            args = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            held = int(args.get("n", 0))
            if "after" in args:  # answer now; release once N are held and AFTER more seconds have passed
                after = float(args["after"])
                threading.Thread(target=lambda: (time.sleep(after), HELD.release(key, held)), daemon=True).start()
                return self.json(200, {"released": "later"})
            return self.json(200, {"released": HELD.release(key, held)})
        body = json.loads(self.rfile.read(length) or b"{}")
        model = str(body.get("model", ""))
        if model.startswith(("held_", "held-cut_", "held-mid_")):
            return self.held(model)
        if model.startswith("http_"):
            return self.error(int(model[5:]))
        if model == "whole":
            time.sleep(0.150)
            return self.json(
                200,
                {
                    "id": "msg_whole",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": "hello there"}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 7},
                },
            )
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_{model}")
        if model == "api_headers":
            # The real API's kind of head: rate-limit headers in mixed case, a reset time,
            # a header with an empty value, and a retry-after on a success.
            self.send_header("Anthropic-RateLimit-Requests-Limit", "50")
            self.send_header("anthropic-ratelimit-requests-remaining", "49")
            self.send_header("anthropic-ratelimit-requests-reset", "2026-11-30T00:00:01Z")
            self.send_header("ANTHROPIC-RATELIMIT-OUTPUT-TOKENS-REMAINING", "7999")
            self.send_header("X-Empty", "")
            self.send_header("Retry-After", "2")
        self.end_headers()
        getattr(self, f"script_{model}", self.script_timed)(model)

    def held(self, model: str) -> None:
        kind, key = model.split("_", 1)
        request_id = f"req_{kind}_{next(HELD.ids)}"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", request_id)
        self.end_headers()
        self.chunk(message_start(model) + block_start(0) + sse("ping", {"type": "ping"}))
        row: dict[str, Any] = {"request_id": request_id}
        if kind == "held-mid":
            row["t_first_delta"] = time.monotonic()
            self.chunk(delta(0, "text_delta", "w0 "))
        HELD.hold(key)
        try:
            if kind != "held-mid":
                row["t_first_delta"] = time.monotonic()
                self.chunk(delta(0, "text_delta", "w0 "))
            if kind == "held-cut":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
            else:
                for i in (1, 2):
                    self.chunk(delta(0, "text_delta", f"w{i} "))
                # Stamped as it is sent, like the first delta: a client's t_end is message_stop's
                # arrival, and a server preempted after the write would stamp it late.
                row["t_end"] = time.monotonic()
                self.chunk(block_stop(0) + message_end(3))
                self.end()
            if kind == "held-cut":
                row["t_end"] = time.monotonic()
        except ConnectionError:  # the client went away (a run stopped while it was held)
            self.close_connection = True
            HELD.done(key, None)
            return
        HELD.done(key, row)

    def chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def error(self, status: int) -> None:
        kind = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}.get(status, "api_error")
        headers = {"retry-after": "3"} if status == 429 else {}
        self.json(status, {"type": "error", "error": {"type": kind, "message": f"scripted {status}"}}, headers)

    def json(self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{status}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def text_deltas(self, index: int, count: int, first_after: float, gap: float) -> None:
        time.sleep(first_after)
        for i in range(count):
            if i:
                time.sleep(gap)
            self.chunk(delta(index, "text_delta", f"w{i} "))

    def script_timed(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0) + sse("ping", {"type": "ping"}))
        self.text_deltas(0, DELTAS, FIRST_DELTA_S, DELTA_GAP_S)
        self.chunk(block_stop(0) + message_end(DELTAS))
        self.end()

    def script_thinking(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0, "thinking"))
        time.sleep(0.100)
        for i in range(5):
            self.chunk(delta(0, "thinking_delta", f"t{i} "))
            time.sleep(DELTA_GAP_S)
        self.chunk(delta(0, "signature_delta", "sig") + block_stop(0) + block_start(1))
        self.text_deltas(1, 5, 0.100, DELTA_GAP_S)
        self.chunk(block_stop(1) + message_end(10))
        self.end()

    def script_midstream(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        self.text_deltas(0, 3, 0.01, 0.01)
        self.chunk(sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        self.end()

    def script_drop(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        self.text_deltas(0, 3, 0.01, 0.01)
        self.wfile.write(b"40\r\nevent: content_block_delta\n")  # a chunk cut short
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def script_malformed(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        self.chunk(b"event: content_block_delta\ndata: {not json\n\n")
        self.chunk(block_stop(0) + message_end(1))
        self.end()

    def script_bad_utf8(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        good = delta(0, "text_delta", "ok", compact=True)
        for payload in (b"ok", b"ok", b"\xff\xfe"):
            self.chunk(good.replace(b'"ok"', b'"%s"' % payload))
            time.sleep(DELTA_GAP_S)
        self.chunk(block_stop(0) + message_end(3))
        self.end()

    def script_no_stop(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        self.text_deltas(0, 3, 0.01, 0.01)
        self.end()

    def script_out_of_order(self, model: str) -> None:
        self.chunk(delta(0, "text_delta", "early") + message_start(model))
        self.chunk(block_stop(0) + message_end(1))
        self.end()

    def script_stall(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0))
        time.sleep(5)
        self.end()

    def script_compact(self, model: str) -> None:
        self.chunk(message_start(model) + block_start(0, "thinking"))
        time.sleep(0.100)
        for payload in ["", "t0 ", "t1 ", "", "t2 "]:
            self.chunk(delta(0, "thinking_delta", payload, compact=True))
            time.sleep(DELTA_GAP_S)
        self.chunk(delta(0, "signature_delta", "sig", compact=True))
        self.chunk(delta(0, "signature_delta", "sig2", compact=True))
        self.chunk(block_stop(0) + block_start(1))
        time.sleep(0.100)
        for payload in ["", "w0 ", "w1 ", "déjà ", "w2 ", 'say "hi" ', "w3 ", "🙂", "w4"]:
            self.chunk(delta(1, "text_delta", payload, compact=True))
            time.sleep(DELTA_GAP_S)
        self.chunk(block_stop(1) + message_end(15))
        self.end()

    def script_closing(self, model: str) -> None:
        self.script_no_usage(model)
        self.close_connection = True  # without a Connection: close header: the client pools it

    def script_stray(self, model: str) -> None:
        self.script_no_usage(model)
        time.sleep(0.02)  # after the response has been read, while the connection sits in the pool
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")  # not part of any response
        self.wfile.flush()

    def script_no_usage(self, model: str) -> None:
        self.chunk(message_start(model, usage=False) + block_start(0))
        self.text_deltas(0, 3, 0.01, 0.01)
        self.chunk(block_stop(0) + message_end(None))
        self.end()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # tests open tens of connections at once; the default backlog of 5 drops their SYNs

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away (a stopped run) is no error of the server's; anything else
        # is printed as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
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
