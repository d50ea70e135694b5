"""Minimal HTTP/1.1 wire handling for the simulator: parse one request, encode response heads and chunks.

Hand-written instead of http.server because the simulator needs asyncio, keep-alive and chunked streaming
with hundreds of concurrent connections on one thread; it only has to understand what HTTP clients such as
httpx (used by the anthropic SDK) and the benchmark's raw sockets send: a request line, headers and an
optional Content-Length body.
"""

from __future__ import annotations

import asyncio
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
    411: "Length Required",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
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

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


async def read_request(reader: asyncio.StreamReader, max_body: int) -> Request | None:
    """Read one request from `reader`; None on a clean EOF between requests.

    A body longer than `max_body` is read and discarded (so the connection stays usable and the client gets
    its 413 instead of a reset) and flagged with `body_too_large`.
    """
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "request head too large") from exc
    lines = head[:-4].decode("latin-1").split("\r\n")
    # Tolerate stray empty lines before a request line (RFC 9112 section 2.2).
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return None
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
    req = Request(method=method.upper(), path=target.split("?", 1)[0], version=version, headers=headers)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        req.body, req.body_too_large = await _read_chunked(reader, max_body)
        return req
    length_text = headers.get("content-length", "0") or "0"
    try:
        length = int(length_text)
    except ValueError as exc:
        raise HttpError(400, "bad content-length") from exc
    if length < 0:
        raise HttpError(400, "bad content-length")
    try:
        if length > max_body:
            remaining = length
            while remaining:
                chunk = await reader.read(min(remaining, 1 << 16))
                if not chunk:
                    raise HttpError(400, "incomplete body")
                remaining -= len(chunk)
            req.body_too_large = True
        elif length:
            req.body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise HttpError(400, "incomplete body") from exc
    return req


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            data = await reader.readexactly(size + 2)
            total += size
            if total <= max_body:
                parts.append(data[:-2])
    except (asyncio.IncompleteReadError, ValueError) as exc:
        raise HttpError(400, "bad chunked body") from exc
    return (b"" if total > max_body else b"".join(parts)), total > max_body


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """Status line and header block, ready to write."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(payload: bytes) -> bytes:
    """One chunk of a `Transfer-Encoding: chunked` body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


LAST_CHUNK = b"0\r\n\r\n"
