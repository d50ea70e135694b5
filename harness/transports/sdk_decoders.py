"""The SDK clients' stream decoders replaced by the harness's bounded ones.

:class:`BoundedSSEDecoder` (first-party and Vertex SSE) and :class:`BoundedEventStreamDecoder`
(Bedrock's AWS event stream) are what the SDK's ``_make_sse_decoder`` seam returns in the
harness's client subclasses (:mod:`harness.transports.sdk`, :mod:`harness.transports.sdk_platforms`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

from harness.transports._compat import import_http_stack

import_http_stack()

from anthropic._streaming import ServerSentEvent as SDKServerSentEvent

from harness.core.errors import ProtocolError
from harness.core.eventstream import EventStreamDecoder, bedrock_event
from harness.core.sse import SSEDecoder
from harness.core.stream_events import StreamError

__all__ = ["BoundedEventStreamDecoder", "BoundedSSEDecoder"]


class BoundedSSEDecoder:
    """The SDK's SSE decoder replaced by :class:`harness.core.sse.SSEDecoder`.

    The SDK's own decoder grows one ``bytes`` by ``+=`` until a blank line, so a hostile
    stream of many megabytes without one costs unbounded memory and quadratic time; this
    one is linear and refuses a line or an event over ``MAX_LINE_BYTES`` (a ProtocolError).
    """

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[SDKServerSentEvent]:
        decoder = SSEDecoder()
        for chunk in iterator:
            for sse in decoder.feed(chunk):
                yield SDKServerSentEvent(event=sse.event, data=sse.data, id=sse.id)
        for sse in decoder.flush():
            yield SDKServerSentEvent(event=sse.event, data=sse.data, id=sse.id)

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[SDKServerSentEvent]:
        decoder = SSEDecoder()
        async for chunk in iterator:
            for sse in decoder.feed(chunk):
                yield SDKServerSentEvent(event=sse.event, data=sse.data, id=sse.id)
        for sse in decoder.flush():
            yield SDKServerSentEvent(event=sse.event, data=sse.data, id=sse.id)


class BoundedEventStreamDecoder:
    """The Bedrock client's event-stream decoder replaced by :mod:`harness.core.eventstream`'s.

    Each chunk frame becomes the SDK's ``ServerSentEvent`` of its event's type, as the SDK's
    own ``AWSEventStreamDecoder`` gives it; an exception frame becomes ``event: error`` with
    ``{"type": "error", "error": {"type": <exception>, "message": ...}}``, which the SDK
    raises as a status-200 APIStatusError. Both CRCs are checked and a frame's size is
    bounded: a broken frame is a ProtocolError.
    """

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[SDKServerSentEvent]:
        decoder = EventStreamDecoder()
        for chunk in iterator:
            for frame in decoder.feed(chunk):
                sse = _frame_event(bedrock_event(frame))
                if sse is not None:
                    yield sse
        decoder.end()

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[SDKServerSentEvent]:
        decoder = EventStreamDecoder()
        async for chunk in iterator:
            for frame in decoder.feed(chunk):
                sse = _frame_event(bedrock_event(frame))
                if sse is not None:
                    yield sse
        decoder.end()


def _frame_event(event: bytes | StreamError | None) -> SDKServerSentEvent | None:
    if event is None:
        return None
    if isinstance(event, StreamError):
        body = {"type": "error", "error": {"type": event.error_type, "message": event.message}}
        return SDKServerSentEvent(event="error", data=json.dumps(body))
    try:
        text = event.decode("utf-8")
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        raise ProtocolError("Bedrock chunk is not a JSON event") from None
    if not isinstance(kind, str):
        raise ProtocolError("Bedrock chunk event has no 'type'")
    return SDKServerSentEvent(event=kind, data=text)
