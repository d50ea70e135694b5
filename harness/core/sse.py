"""Server-sent events, the wire layer: bytes in, ``event:``/``data:`` fields out, no network.

:class:`SSEDecoder` turns arbitrary chunks of bytes into :class:`ServerSentEvent`. It copes
with events split across reads, CR, LF and CRLF line ends, multi-line ``data:``, comments
and fields without a value, and refuses a line longer than :data:`MAX_LINE_BYTES`. What
the events mean is :mod:`harness.core.stream_events`'.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import ProtocolError

__all__ = ["MAX_LINE_BYTES", "SSEDecoder", "ServerSentEvent"]

# A single SSE line (or event) longer than this is not a real Messages API event; refusing
# it keeps memory bounded when a broken server streams garbage without newlines.
MAX_LINE_BYTES = 8 * 1024 * 1024
_LINE_OVERHEAD = 64


@dataclass(slots=True)
class ServerSentEvent:
    """One event of the text/event-stream format, before JSON decoding.

    Not frozen, for the reason :class:`ContentBlockDelta` is not: one is built per event.
    """

    event: str | None
    data: str
    id: str | None = None


class SSEDecoder:
    """Incremental SSE decoder; feed it chunks, it returns the events each completes."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = b""
        # Pieces of a line still without its end, joined once it ends: linear, not quadratic.
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._max_line = max_line_bytes
        self._event: str | None = None
        self._data: list[str] = []
        self._event_size = 0
        self._id: str | None = None
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return every event it completed, in order."""
        if self._pending_cr and chunk.startswith(b"\n"):
            # The CR that ended the previous chunk and this LF are one CRLF line end.
            chunk = chunk[1:]
        self._pending_cr = False
        if (self._buffer or self._parts) and b"\n" not in chunk and b"\r" not in chunk:
            self._parts.append(chunk)
            self._parts_size += len(chunk)
            if len(self._buffer) + self._parts_size > self._max_line:
                raise ProtocolError(f"SSE line longer than {self._max_line} bytes")
            return []
        if self._parts:
            chunk = b"".join([*self._parts, chunk])
            self._parts, self._parts_size = [], 0
        buf = self._buffer + chunk if self._buffer else chunk
        out: list[ServerSentEvent] = []
        if b"\r" not in buf:
            # LF line ends only, as the API sends them: one split instead of a search per line.
            lines = buf.split(b"\n")
            self._buffer = lines.pop()
            if len(self._buffer) > self._max_line:
                raise ProtocolError(f"SSE line longer than {self._max_line} bytes")
            for line in lines:
                self._line(line, out)
            return out
        start = 0
        size = len(buf)
        while start < size:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf != -1 else size)
            if cr != -1:
                end, nxt = cr, cr + 1
                if nxt < size and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == size:
                    self._pending_cr = True
            elif lf != -1:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(buf[start:end], out)
            start = nxt
        self._buffer = buf[start:]
        if len(self._buffer) > self._max_line:
            raise ProtocolError(f"SSE line longer than {self._max_line} bytes")
        return out

    def flush(self) -> list[ServerSentEvent]:
        """End of stream: a trailing line without its newline still counts, a half event does not."""
        out: list[ServerSentEvent] = []
        rest = b"".join([self._buffer, *self._parts])
        self._buffer, self._parts, self._parts_size = b"", [], 0
        if rest:
            self._line(rest, out)
        self._event, self._data, self._id, self._event_size = None, [], None, 0
        return out

    def _line(self, raw: bytes, out: list[ServerSentEvent]) -> None:
        if not raw:
            if self._data or self._event is not None:
                out.append(ServerSentEvent(self._event, "\n".join(self._data), self._id))
            self._event, self._data, self._event_size = None, [], 0
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"SSE line is not valid UTF-8: {exc.reason}") from None
        if line.startswith(":"):
            return
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            # Each line also costs a list slot and a str header: count them, so a flood of
            # short data lines without a blank line is bounded like one long line.
            self._event_size += len(value) + _LINE_OVERHEAD
            if self._event_size > self._max_line:
                raise ProtocolError(f"SSE event larger than {self._max_line} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        # "retry" and unknown fields are ignored, as the SSE spec says.
