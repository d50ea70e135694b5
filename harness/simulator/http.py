"""Minimal HTTP/1.1 wire handling for the simulator: parse one request, encode response heads and chunks.

Hand-written instead of http.server because the simulator needs asyncio, keep-alive and chunked streaming
with thousands of concurrent connections on one thread; it only has to understand what HTTP clients such as
httpx (used by the anthropic SDK) and the benchmark's raw sockets send: a request line, headers and an
optional Content-Length body (pipelined requests are parsed and served in order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Generous but bounded: a client that sends an endless header block must not exhaust memory.
MAX_HEAD_BYTES = 64 * 1024

REASONS: dict[int, str] = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Request Entity Too Large",
    424: "Failed Dependency",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


class HttpError(Exception):
    """A request that cannot be parsed as HTTP; the connection is answered (if possible) and closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Request:
    method: str
    path: str
    version: str
    # Header names are lower-cased; a repeated header keeps its last value (none we read may repeat).
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # Set when the body is larger than the caller's limit: it was drained, not stored.
    body_too_large: bool = False
    # The query string as sent (without "?"), percent-encoding kept: a SigV4 signature covers it.
    query: str = ""

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


class RequestParser:
    """Incremental (push) parser: feed it bytes as they arrive, get back the requests they complete.

    A push parser rather than asyncio.StreamReader so a connection needs no reader task or coroutine of
    its own: with thousands of open streams every per-connection object counts, not least for the
    garbage collector's pauses. A body larger than `max_body` is skipped as it arrives (the connection
    stays usable and the client gets a 413 instead of a reset) and flagged with `body_too_large`.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._buf = bytearray()
        self._req: Request | None = None  # head parsed, body incomplete
        self._need = 0  # body bytes still expected for self._req

    def feed(self, data: bytes) -> list[Request]:
        self._buf += data
        done: list[Request] = []
        while True:
            req = self._req
            if req is None:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD_BYTES:
                        raise HttpError(431, "request head too large")
                    return done
                head = bytes(self._buf[:end])
                del self._buf[: end + 4]
                if not head.strip():
                    continue  # stray empty lines before a request line (RFC 9112 section 2.2)
                req = self._req = _parse_head(head)
                self._need = _content_length(req)
                req.body_too_large = self._need > self.max_body
            if req.body_too_large:
                skip = min(self._need, len(self._buf))
                del self._buf[:skip]
                self._need -= skip
            elif len(self._buf) >= self._need:
                req.body = bytes(self._buf[: self._need])
                del self._buf[: self._need]
                self._need = 0
            if self._need:
                return done
            done.append(req)
            self._req = None


def _parse_head(head: bytes) -> Request:
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    return Request(method=method.upper(), path=path, version=version, headers=headers, query=query)


def _content_length(req: Request) -> int:
    if "transfer-encoding" in req.headers:
        # Clients of this API send JSON with a Content-Length; chunked uploads are not worth a decoder.
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    try:
        length = int(req.headers.get("content-length", "0") or "0")
    except ValueError as exc:
        raise HttpError(400, "bad content-length") from exc
    if length < 0:
        raise HttpError(400, "bad content-length")
    return length


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Status line and header block, ready to write."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(payload: bytes) -> bytes:
    """One chunk of a `Transfer-Encoding: chunked` body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


LAST_CHUNK = b"0\r\n\r\n"
