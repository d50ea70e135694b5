"""Anthropic's stream events, typed: one :class:`ServerSentEvent` in, one typed event out.

:func:`parse_event` turns one :class:`~harness.core.sse.ServerSentEvent` into a typed stream
event (:class:`MessageStart`, :class:`ContentBlockDelta`, …). Unknown event types give
``None`` so a newer server stays readable; malformed JSON or a known event missing its
required fields raises :class:`~harness.core.errors.ProtocolError`. Both transports (the
SDK one converts the SDK's objects into these types) feed the same
:class:`~harness.core.measure.CallMeasurement`, so records cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.core.errors import ProtocolError
from harness.core.sse import ServerSentEvent, SSEDecoder

__all__ = [
    "CONTENT_DELTA_TYPES",
    "ContentBlockDelta",
    "ContentBlockStart",
    "ContentBlockStop",
    "MessageDelta",
    "MessageStart",
    "MessageStop",
    "Ping",
    "StreamError",
    "StreamEvent",
    "Usage",
    "iter_stream_events",
    "parse_event",
    "usage_from",
]

# Deltas whose payload is content the model generated; a signature_delta is not.
CONTENT_DELTA_TYPES = frozenset({"text_delta", "thinking_delta", "input_json_delta"})


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
