"""Pure parser for Anthropic's streaming format: bytes in, typed events out, no network.

Two layers, as in the SSE spec and the anthropic SDK:

* :class:`SSEDecoder` turns arbitrary chunks of bytes into :class:`ServerSentEvent`
  (``event:``/``data:`` fields). It copes with events split across reads, CR, LF and
  CRLF line ends, multi-line ``data:``, comments and fields without a value.
* :func:`parse_event` turns one :class:`ServerSentEvent` into a typed stream event
  (:class:`MessageStart`, :class:`ContentBlockDelta`, …). Unknown event types give
  ``None`` so a newer server stays readable; malformed JSON or a known event missing
  its required fields raises :class:`~harness.errors.ProtocolError`.

Both transports (the SDK one converts the SDK's objects into these types) feed the
same :class:`~harness.measure.CallMeasurement`, so records cannot drift apart.

:class:`StreamEventDecoder` is the raw-HTTP transport's hot path: bytes straight to typed
events, with a shortcut for the one event that is sent tens of thousands of times a
second (a compact ``content_block_delta`` without escapes). Anything else, and any CR
line end, goes through :class:`SSEDecoder` and :func:`parse_event`, so each event keeps
one definition and the two paths give equal events for equal bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.errors import ProtocolError

__all__ = [
    "CONTENT_DELTA_TYPES",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "Ping",
    "SSEDecoder",
    "ServerSentEvent",
    "StreamError",
    "StreamEvent",
    "StreamEventDecoder",
    "Usage",
    "iter_stream_events",
    "parse_event",
]

# Deltas whose payload is content the model generated; a signature_delta is not.
CONTENT_DELTA_TYPES = frozenset({"text_delta", "thinking_delta", "input_json_delta"})

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


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the server reports them; ``None`` where the server sent none."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class MessageStart:
    message_id: str | None
    model: str | None
    usage: Usage
    type: str = "message_start"


@dataclass(frozen=True, slots=True)
class ContentBlockStart:
    index: int
    block_type: str
    type: str = "content_block_start"


@dataclass(slots=True)
class ContentBlockDelta:
    """A delta; ``payload`` is its text, thinking, partial JSON or signature.

    Not frozen, unlike the other events: tens of thousands are built a second, and a
    frozen dataclass's ``__init__`` costs three times as much. Treat it as immutable.
    """

    index: int
    delta_type: str
    payload: str
    type: str = "content_block_delta"


@dataclass(frozen=True, slots=True)
class ContentBlockStop:
    index: int
    type: str = "content_block_stop"


@dataclass(frozen=True, slots=True)
class MessageDelta:
    """``usage`` is cumulative, as the Messages API sends it."""

    stop_reason: str | None
    usage: Usage
    type: str = "message_delta"


@dataclass(frozen=True, slots=True)
class MessageStop:
    type: str = "message_stop"


@dataclass(frozen=True, slots=True)
class Ping:
    type: str = "ping"


@dataclass(frozen=True, slots=True)
class StreamError:
    """A mid-stream ``event: error``; ``error_type`` is e.g. ``overloaded_error``."""

    error_type: str
    message: str
    type: str = "error"


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | StreamError
)

_DELTA_PAYLOAD_FIELD = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
    "signature_delta": "signature",
    "citations_delta": "citation",
}


def usage_from(obj: Any) -> Usage:
    """Read a ``usage`` mapping; missing or non-integer counts become ``None``."""
    if not isinstance(obj, dict):
        return Usage()

    def count(key: str) -> int | None:
        value = obj.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Usage(
        count("input_tokens"),
        count("output_tokens"),
        count("cache_creation_input_tokens"),
        count("cache_read_input_tokens"),
    )


def _require(obj: dict[str, Any], key: str, kind: type, event: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise ProtocolError(f"{event} event without a valid {key!r}")
    return value


def parse_event(sse: ServerSentEvent) -> StreamEvent | None:
    """Type one SSE event; ``None`` for event types this parser does not know."""
    name = sse.event
    if name == "ping":
        return Ping()
    if name is None or name not in _KNOWN:
        return None
    try:
        data = json.loads(sse.data) if sse.data else {}
    except ValueError:
        raise ProtocolError(f"{name} event with invalid JSON data") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{name} event data is not a JSON object")
    if name == "content_block_delta":
        delta = _require(data, "delta", dict, name)
        delta_type = _require(delta, "type", str, name)
        payload = delta.get(_DELTA_PAYLOAD_FIELD.get(delta_type, ""), "")
        return ContentBlockDelta(
            _require(data, "index", int, name), delta_type, payload if isinstance(payload, str) else ""
        )
    if name == "message_start":
        message = _require(data, "message", dict, name)
        return MessageStart(message.get("id"), message.get("model"), usage_from(message.get("usage")))
    if name == "content_block_start":
        block = _require(data, "content_block", dict, name)
        return ContentBlockStart(_require(data, "index", int, name), _require(block, "type", str, name))
    if name == "content_block_stop":
        return ContentBlockStop(_require(data, "index", int, name))
    if name == "message_delta":
        delta = _require(data, "delta", dict, name)
        return MessageDelta(delta.get("stop_reason"), usage_from(data.get("usage")))
    if name == "message_stop":
        return MessageStop()
    error = data.get("error")
    if not isinstance(error, dict):
        return StreamError("unknown_error", sse.data[:200])
    return StreamError(str(error.get("type") or "unknown_error"), str(error.get("message") or ""))


_KNOWN = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    }
)


def iter_stream_events(chunks: Iterable[bytes]) -> Iterator[StreamEvent]:
    """Typed events from an iterable of byte chunks, in order; unknown types skipped."""
    decoder = SSEDecoder()
    for chunk in chunks:
        for sse in decoder.feed(chunk):
            event = parse_event(sse)
            if event is not None:
                yield event
    for sse in decoder.flush():
        event = parse_event(sse)
        if event is not None:
            yield event


# The exact compact form the Messages API sends for a content delta whose payload has no
# JSON escapes. Such a payload's bytes are its text, so the shortcut below gives the event
# json.loads would; any other shape (whitespace, key order, escapes, other fields) misses
# the pattern and takes the full parser.
# A content block index as compact JSON writes it.
_INDEX = rb"0|[1-9][0-9]{0,8}"
# A JSON string's content without escapes: no quote, backslash or control character.
_PLAIN_PAYLOAD = re.compile(rb'[^"\\\x00-\x1f]*')
_COMPACT_DELTA = re.compile(
    rb'\{"type":"content_block_delta","index":(' + _INDEX + rb'),"delta":\{"type":"'
    rb'(text_delta","text|thinking_delta","thinking|input_json_delta","partial_json|signature_delta","signature)'
    rb'":"(' + _PLAIN_PAYLOAD.pattern + rb')"\}\}'
)
_DELTA_EVENT = b"content_block_delta"
# Whole events as the API sends them, compact: what the line loop below would turn into
# exactly the same typed event, matched in one step when no event is half-read. Deltas are
# most of a stream; the framing events (ping, block start/stop, message_stop) are six of
# the ~56 events of a 50-token call, and json.loads made them a fifth of its per-call cost.
_COMPACT_EVENT = re.compile(
    rb"event: (?:"
    + _DELTA_EVENT
    + b"\ndata: "
    + _COMPACT_DELTA.pattern
    + rb'|(?P<ping>ping)\ndata: \{"type":"ping"\}'
    + rb'|content_block_start\ndata: \{"type":"content_block_start","index":(?P<start>'
    + _INDEX
    + rb")"
    + rb',"content_block":\{"type":"(?P<block>text)","text":""\}\}'
    + rb'|content_block_stop\ndata: \{"type":"content_block_stop","index":(?P<stop>'
    + _INDEX
    + rb")\}"
    + rb'|(?P<message_stop>message_stop)\ndata: \{"type":"message_stop"\}'
    # Any other one-line event (message_start, message_delta, a delta with escapes, …):
    # typed as the line loop would type it, but without splitting the read into lines.
    + rb"|(?P<name>[^\r\n]*)\ndata: (?P<data>[^\r\n]*)"
    + rb")\n\n"
)


class StreamEventDecoder:
    """Bytes in, typed stream events out: :class:`SSEDecoder` + :func:`parse_event`, leaner.

    A read of whole one-line events is typed one regular expression match per event (the
    framing and compact deltas without ``json.loads``); a read that is one more delta of
    the block before it is matched by one pattern made from that delta's prefix
    (:attr:`repeat`). Anything else is split into lines on LF with one ``bytes.split``
    per chunk. The first CR seen hands
    the decoder's state to a :class:`SSEDecoder` for the rest of the stream, which is
    rare enough (the API ends lines with LF) not to need a fast path of its own.
    """

    __slots__ = ("_buffer", "_data", "_delta_index", "_event", "_generic", "_max_line", "delta_type", "repeat")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = b""
        self._event: bytes | None = None
        self._data: list[bytes] = []
        self._generic: SSEDecoder | None = None
        self._max_line = max_line_bytes
        # Set only while the decoder sits between events after a compact delta: the matcher
        # (a compiled pattern's fullmatch, C code) of a chunk that is exactly one more delta
        # of the same block with a non-empty payload without escapes, and its (index, type).
        # Most deltas of a stream arrive one per read like that; a reader that checks
        # ``repeat(chunk)`` (and that the chunk is valid UTF-8: ``isascii()``, or decoding
        # it) knows the event without building it, and :meth:`feed` types it without the
        # event regex.
        self.repeat: Callable[[bytes | bytearray], re.Match[bytes] | None] | None = None
        self._delta_index = 0
        #: The delta type of the chunks :attr:`repeat` matches.
        self.delta_type = ""

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Consume ``chunk``; return the typed events it completed (unknown types skipped)."""
        repeat = self.repeat
        if repeat is not None:
            match = repeat(chunk)
            if match is not None:
                return [ContentBlockDelta(self._delta_index, self.delta_type, _utf8(match[1]))]
        self.repeat = None
        if self._generic is not None or b"\r" in chunk:
            return self._typed_all(self._to_generic().feed(chunk))
        if self._buffer:
            chunk, self._buffer = self._buffer + chunk, b""
        out: list[StreamEvent] = []
        if self._event is None and not self._data:
            # Most reads hold nothing but whole compact events: one regex match each.
            match = _COMPACT_EVENT.match(chunk)
            if match is not None:
                while match is not None:
                    last = match
                    event = _compact_event(match)
                    if event is not None:
                        out.append(event)
                    match = _COMPACT_EVENT.match(chunk, last.end())
                end = last.end()
                if end == len(chunk):
                    if last.lastgroup is None and type(event) is ContentBlockDelta:
                        self.repeat = _repeat_matcher(chunk[last.start() : last.start(3)])
                        self._delta_index, self.delta_type = event.index, event.delta_type
                    return out
                chunk = chunk[end:]
        lines = chunk.split(b"\n")
        self._buffer = lines.pop()
        if len(self._buffer) > self._max_line:
            raise ProtocolError(f"SSE line longer than {self._max_line} bytes")
        for line in lines:
            if not line:
                if self._data or self._event is not None:
                    event = self._dispatch()
                    if event is not None:
                        out.append(event)
            elif line.startswith(b"data:"):
                self._data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                _check_utf8(line)
                self._event = line[7:] if line[6:7] == b" " else line[6:]
            elif line == b"data":
                self._data.append(b"")
            elif line == b"event":
                self._event = b""
            else:
                _check_utf8(line)  # comments, "id", "retry" and unknown fields carry nothing we use
        return out

    def flush(self) -> list[StreamEvent]:
        """End of stream: a trailing line without its newline still counts, a half event does not."""
        if self._generic is None and not self._buffer and self._event is None and not self._data:
            return []  # between events: nothing to hand over (a half-built one must still be checked)
        return self._typed_all(self._to_generic().flush())

    def _dispatch(self) -> StreamEvent | None:
        name, data = self._event, self._data
        self._event, self._data = None, []
        return _typed_event(name, data[0] if len(data) == 1 else b"\n".join(data))

    def _to_generic(self) -> SSEDecoder:
        generic = self._generic
        if generic is None:
            self.repeat = None
            # Hand over the half-read line and the half-built event, decoded as SSEDecoder keeps them.
            generic = self._generic = SSEDecoder(self._max_line)
            generic._buffer = self._buffer
            try:
                generic._event = None if self._event is None else self._event.decode("utf-8")
                generic._data = [d.decode("utf-8") for d in self._data]
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"SSE line is not valid UTF-8: {exc.reason}") from None
            self._buffer, self._event, self._data = b"", None, []
        return generic

    @staticmethod
    def _typed_all(events: list[ServerSentEvent]) -> list[StreamEvent]:
        return [e for e in map(parse_event, events) if e is not None]


_PING, _MESSAGE_STOP = Ping(), MessageStop()


def _typed_event(name: bytes | None, raw: bytes) -> StreamEvent | None:
    """One event from its ``event`` field and its joined ``data``; ``None`` if its type is unknown."""
    if name == _DELTA_EVENT:
        match = _COMPACT_DELTA.fullmatch(raw)
        if match is not None:
            return _compact_delta(match)
    try:
        sse = ServerSentEvent(None if name is None else name.decode("utf-8"), raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"SSE line is not valid UTF-8: {exc.reason}") from None
    return parse_event(sse)


@functools.lru_cache(maxsize=64)
def _repeat_matcher(prefix: bytes) -> Callable[[bytes | bytearray], re.Match[bytes] | None]:
    # One pattern per delta prefix (index, type): a handful per process, compiled once.
    return re.compile(re.escape(prefix) + b"(" + _PLAIN_PAYLOAD.pattern[:-1] + b'+)"}}\n\n').fullmatch


def _compact_event(match: re.Match[bytes]) -> StreamEvent | None:
    last = match.lastgroup
    if last is None:
        return _compact_delta(match)
    if last == "data":
        return _typed_event(match["name"], match["data"])
    if last == "ping":
        return _PING
    if last == "block":
        return ContentBlockStart(int(match["start"]), "text")
    if last == "stop":
        return ContentBlockStop(int(match["stop"]))
    return _MESSAGE_STOP


def _compact_delta(match: re.Match[bytes]) -> ContentBlockDelta:
    index, kind, payload = match.groups()[:3]
    return ContentBlockDelta(int(index), _DELTA_KINDS[kind], _utf8(payload))


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"SSE line is not valid UTF-8: {exc.reason}") from None


# The delta type of each alternative of _COMPACT_DELTA's second group.
_DELTA_KINDS = {
    b'text_delta","text': "text_delta",
    b'thinking_delta","thinking': "thinking_delta",
    b'input_json_delta","partial_json': "input_json_delta",
    b'signature_delta","signature': "signature_delta",
}


def _check_utf8(line: bytes) -> None:
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"SSE line is not valid UTF-8: {exc.reason}") from None
