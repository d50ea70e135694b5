"""The fast transport's hot path: bytes straight to typed stream events.

:class:`StreamEventDecoder` is :class:`~harness.core.sse.SSEDecoder` plus
:func:`~harness.core.stream_events.parse_event`, leaner: a shortcut for the one event that
is sent tens of thousands of times a second (a compact ``content_block_delta`` without
escapes) and for the other compact one-line events. Anything else, and any CR line end,
goes through the full parser, so each event keeps one definition and the two paths give
equal events for equal bytes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from harness.core.errors import ProtocolError
from harness.core.sse import MAX_LINE_BYTES, ServerSentEvent, SSEDecoder
from harness.core.stream_events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageStop,
    Ping,
    StreamEvent,
    parse_event,
)

__all__ = ["StreamEventDecoder"]


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
        return typed_event(name, data[0] if len(data) == 1 else b"\n".join(data))

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


def typed_event(name: bytes | None, raw: bytes) -> StreamEvent | None:
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
        return typed_event(match["name"], match["data"])
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
