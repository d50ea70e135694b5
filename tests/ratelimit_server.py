"""A loopback Messages API that sends ``anthropic-ratelimit-*`` headers, for the headroom tests.

Run as ``python tests/ratelimit_server.py`` (prints ``listening on http://127.0.0.1:PORT``).
The n-th request (from 1) gets ``requests-remaining: 100 - n`` of a limit of 100, and
``output-tokens-remaining: 10000 - 20 n`` of 10000; the stream is the scripted server's
``timed`` one, cut to 5 deltas. A request whose model is ``http_429`` gets a 429 with the
same headers, as the API sends them. Standard library only, in its own process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from scripted_server import Server, block_start, block_stop, delta, message_end, message_start

_count = itertools.count(1)
_lock = threading.Lock()


def ratelimit_headers(n: int) -> dict[str, str]:
    return {
        "anthropic-ratelimit-requests-limit": "100",
        "anthropic-ratelimit-requests-remaining": str(100 - n),
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": str(10000 - 20 * n),
        "anthropic-ratelimit-output-tokens-reset": "2030-01-01T00:00:00Z",
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
        model = str(body.get("model", ""))
        with _lock:
            n = next(_count)
        headers = ratelimit_headers(n)
        if model == "http_429":
            data = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
            self.send_response(429)
            headers.update({"content-type": "application/json", "content-length": str(len(data))})
            self._headers(headers)
            self.wfile.write(data.encode())
            return
        self.send_response(200)
        self._headers({**headers, "content-type": "text/event-stream", "transfer-encoding": "chunked"})
        self._chunk(message_start(model) + block_start(0))
        for i in range(5):
            time.sleep(0.01)
            self._chunk(delta(0, "text_delta", f"w{i} "))
        self._chunk(block_stop(0) + message_end(5))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _headers(self, headers: dict[str, str]) -> None:
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def main() -> None:
    server = Server(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    sys.exit(main())
