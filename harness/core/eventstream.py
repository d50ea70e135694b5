"""Pure decoder of AWS event-stream framing, the body of Bedrock's InvokeModelWithResponseStream.

A frame (all integers big-endian)::

    total length u32 | headers length u32 | prelude CRC32 u32 | headers | payload | message CRC32 u32

The prelude CRC covers the first 8 bytes; the message CRC covers everything before it. A header is
``name length u8 | name | type u8 | value``, the value typed as below. Bedrock sends each Anthropic stream
event as an ``:event-type chunk`` frame whose JSON payload is ``{"bytes": base64(<event JSON>)}`` (plus
padding fields), and a failure mid-stream as an ``:message-type exception`` frame.

:class:`EventStreamDecoder` takes arbitrary chunks of bytes and returns the whole frames they complete,
checking both CRCs (a mismatch, or a frame that does not add up, is a
:class:`~harness.errors.ProtocolError`). It sits on the fast transport's hot path, so it works on
memoryviews with ``struct`` and ``zlib.crc32`` and never loops per byte in Python; a frame's header block,
the same bytes for every chunk frame of a stream, is parsed once and then looked up.
:func:`bedrock_event` turns one frame into the event's JSON bytes or a typed
:class:`~harness.sse.StreamError`; :class:`BedrockEventDecoder` goes from bytes to the same typed events
as :class:`~harness.sse.StreamEventDecoder` gives for the first-party SSE stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from harness.core.errors import ProtocolError

# The SSE path's typing of one event, compact-delta shortcut included: one definition of each event.
from harness.core.stream_decoder import typed_event
from harness.core.stream_events import StreamError, StreamEvent

__all__ = [
    "BedrockEventDecoder",
    "EventStreamDecoder",
    "Frame",
    "HeaderValue",
    "bedrock_event",
]

HeaderValue = bool | int | bytes | str
"""bool (types 0, 1), int (2-5 and 8, a timestamp in ms), bytes (6, 9 a UUID's 16 bytes) or str (7)."""

PRELUDE = 12
# The limits botocore enforces: a larger frame is garbage, not a Bedrock event.
MAX_HEADERS = 128 * 1024
MAX_PAYLOAD = 24 * 1024 * 1024
# Distinct header blocks remembered; a stream has a handful (chunk, exception, error).
_HEADER_CACHE_SIZE = 256

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
# Fixed-size header values: type -> (struct, size). Timestamps (8) are int64 milliseconds, as in botocore.
_FIXED: dict[int, tuple[struct.Struct, int]] = {
    2: (struct.Struct(">b"), 1),
    3: (struct.Struct(">h"), 2),
    4: (struct.Struct(">i"), 4),
    5: (struct.Struct(">q"), 8),
    8: (struct.Struct(">q"), 8),
}


@dataclass(slots=True)
class Frame:
    """One event-stream message. ``headers`` is read-only: frames with equal header bytes share it."""

    headers: Mapping[str, HeaderValue]
    payload: bytes


class EventStreamDecoder:
    """Incremental decoder: :meth:`feed` chunks as they arrive, get back the frames each completes."""

    __slots__ = ("_buf", "_headers", "_need")

    def __init__(self) -> None:
        self._buf = bytearray()  # the start of a frame not yet complete
        self._need = PRELUDE  # bytes that frame needs before it can be decoded (known once its prelude is)
        self._headers: dict[bytes, Mapping[str, HeaderValue]] = {}

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete (0 between frames)."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``chunk``; return every frame it completed, in order."""
        buf = self._buf
        if not buf:
            # The common case, a read of whole frames: decoded from the chunk itself. Slices of bytes,
            # not of a memoryview: for frames of a few hundred bytes the copy costs less than the view.
            data = chunk if type(chunk) is bytes else bytes(chunk)
            frames, used = self._frames(data)
            if used < len(data):
                buf += memoryview(data)[used:]
            return frames
        buf += chunk
        if len(buf) < self._need:
            return []  # one copy per completed frame below, however many reads it took
        frames, used = self._frames(bytes(buf))
        del buf[:used]
        return frames

    def end(self) -> None:
        """The body ended: a frame cut short is a broken stream."""
        if self._buf:
            raise ProtocolError(f"event stream ended inside a frame ({len(self._buf)} bytes left)")

    def _frames(self, data: bytes) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        size = len(data)
        pos = 0
        crc32, unpack, u32 = zlib.crc32, _PRELUDE.unpack_from, _U32.unpack_from
        cache = self._headers
        while True:
            if size - pos < PRELUDE:
                self._need = PRELUDE
                break
            total, headers_len, prelude_crc = unpack(data, pos)
            if crc32(data[pos : pos + 8]) != prelude_crc:
                raise ProtocolError("event stream prelude CRC mismatch")
            if total < PRELUDE + 4 + headers_len:
                raise ProtocolError(f"event stream frame of {total} bytes cannot hold {headers_len} header bytes")
            if headers_len > MAX_HEADERS or total - headers_len - PRELUDE - 4 > MAX_PAYLOAD:
                raise ProtocolError(f"event stream frame of {total} bytes is over the size limits")
            end = pos + total
            if end > size:
                self._need = total
                break
            if crc32(data[pos + 8 : end - 4], prelude_crc) != u32(data, end - 4)[0]:
                raise ProtocolError("event stream message CRC mismatch")
            start = pos + PRELUDE
            payload_at = start + headers_len
            raw = data[start:payload_at]
            headers = cache.get(raw)
            if headers is None:
                headers = MappingProxyType(_parse_headers(raw))
                if len(cache) < _HEADER_CACHE_SIZE:
                    cache[raw] = headers
            frames.append(Frame(headers, data[payload_at : end - 4]))
            pos = end
        return frames, pos


def _parse_headers(raw: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, size = 0, len(raw)
    try:
        while pos < size:
            n = raw[pos]
            name = raw[pos + 1 : pos + 1 + n].decode("utf-8")
            pos += 1 + n
            kind = raw[pos]
            pos += 1
            value: HeaderValue
            if kind == 0 or kind == 1:
                value = kind == 0
            elif kind == 6 or kind == 7:
                length = _U16.unpack_from(raw, pos)[0]
                pos += 2
                value = raw[pos : pos + length]
                pos += length
                if kind == 7:
                    value = value.decode("utf-8")
            elif kind == 9:
                value = raw[pos : pos + 16]
                pos += 16
            elif kind in _FIXED:
                fmt, width = _FIXED[kind]
                value = fmt.unpack_from(raw, pos)[0]
                pos += width
            else:
                raise ProtocolError(f"event stream header {name!r} has unknown type {kind}")
            if name in headers:
                raise ProtocolError(f"event stream header {name!r} repeated")
            headers[name] = value
    except (IndexError, struct.error):
        raise ProtocolError("event stream header block is truncated") from None
    except UnicodeDecodeError:
        raise ProtocolError("event stream header is not valid UTF-8") from None
    if pos != size:
        raise ProtocolError("event stream header block is truncated")
    return headers


# The payload Bedrock sends: {"bytes":"<base64>"} first, possibly followed by padding fields ("p").
_CHUNK_PAYLOAD = re.compile(rb'\{"bytes":"([A-Za-z0-9+/]*={0,2})"')


def bedrock_event(frame: Frame) -> bytes | StreamError | None:
    """The Anthropic event JSON a Bedrock frame carries, the failure it reports, or None (not an event).

    ``:message-type event`` with ``:event-type chunk`` gives the base64-decoded ``bytes`` of its payload;
    ``exception`` gives ``StreamError(<:exception-type>, <payload message>)``, e.g. ``throttlingException``;
    ``error`` gives ``StreamError(<:error-code>, <:error-message>)``. Anything else malformed raises
    :class:`~harness.errors.ProtocolError`.
    """
    headers = frame.headers
    kind = headers.get(":message-type")
    if kind == "event":
        if headers.get(":event-type") != "chunk":
            return None  # e.g. an initial-response: carries no Anthropic event
        payload = frame.payload
        match = _CHUNK_PAYLOAD.match(payload)
        try:
            if match is not None:
                # The pattern admitted only the base64 alphabet: a bad length is all that is left to catch.
                return binascii.a2b_base64(match[1])
            try:
                field = json.loads(payload).get("bytes")
            except (ValueError, AttributeError):
                raise ProtocolError("Bedrock chunk payload is not a JSON object") from None
            if not isinstance(field, str):
                raise ProtocolError("Bedrock chunk payload has no 'bytes' string")
            return base64.b64decode(field, validate=True)
        except ValueError:  # binascii.Error, or a non-ASCII str
            raise ProtocolError("Bedrock chunk 'bytes' is not valid base64") from None
    if kind == "exception":
        return StreamError(str(headers.get(":exception-type") or "unknown_exception"), _message(frame.payload))
    if kind == "error":
        return StreamError(str(headers.get(":error-code") or "unknown_error"), str(headers.get(":error-message", "")))
    raise ProtocolError(f"event stream frame with :message-type {kind!r}")


def _message(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        return str(body.get("message") or body.get("Message") or "")
    return ""


# The compact form every Anthropic event has: its type first.
_EVENT_TYPE = re.compile(rb'\{"type":"([a-z_]{1,40})"')


class BedrockEventDecoder:
    """Bedrock stream bytes in, the typed events of :mod:`harness.sse` out.

    Each event's JSON is typed as the first-party SSE event of the same type and data would be
    (``harness.sse``'s own typing, compact-delta shortcut included), so one definition of each event
    serves both platforms; an exception frame is a :class:`~harness.sse.StreamError`.
    """

    __slots__ = ("_frames",)

    def __init__(self) -> None:
        self._frames = EventStreamDecoder()

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[StreamEvent]:
        """Consume ``chunk``; return the typed events it completed (unknown types skipped)."""
        out: list[StreamEvent] = []
        for frame in self._frames.feed(chunk):
            event = bedrock_event(frame)
            if isinstance(event, StreamError):
                out.append(event)
            elif event is not None:
                match = _EVENT_TYPE.match(event)
                typed = typed_event(match[1], event) if match is not None else _typed(event)
                if typed is not None:
                    out.append(typed)
        return out

    def end(self) -> None:
        """The body ended: a frame cut short is a broken stream."""
        self._frames.end()


def _typed(raw: bytes) -> StreamEvent | None:
    """An event JSON not in compact form (pretty-printed, or its type not first)."""
    try:
        data = json.loads(raw)
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise ProtocolError("Bedrock chunk is not a JSON event") from None
    name = data.get("type") if isinstance(data, dict) else None
    if not isinstance(name, str):
        raise ProtocolError("Bedrock chunk event has no 'type'")
    return typed_event(name.encode("utf-8"), raw)
