"""CPU per content delta of decoding Bedrock's event stream beside the first-party SSE stream, on bytes.

    python benchmarks/eventstream.py

One call of 50 text deltas, as each platform puts it on the wire (the event-stream bytes are the
simulator's, padding field included), fed one event per read as the network delivers them; no network
and no event loop. Rows, in µs per delta (the call's whole decoding divided by its deltas):

* SSE to typed events: the fast transport's :class:`harness.sse.StreamEventDecoder`, and the generic
  :func:`harness.sse.iter_stream_events`;
* event stream to frames (CRCs checked) and to each event's JSON: :mod:`harness.core.eventstream`;
* event stream to typed events: :class:`harness.core.eventstream.BedrockEventDecoder`;
* for reference, botocore's ``EventStreamBuffer`` to frames, which the SDK's Bedrock client uses.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.eventstream import BedrockEventDecoder, EventStreamDecoder, bedrock_event
from harness.core.stream_decoder import StreamEventDecoder
from harness.core.stream_events import iter_stream_events
from harness.simulator.eventstream import chunk_frame

DELTAS = 50
REPEAT = 5
NUMBER = 200


def call_events() -> list[dict[str, Any]]:
    usage = {"input_tokens": 12, "output_tokens": 1}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": usage}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " word"}}
    return [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *[delta] * DELTAS,
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": DELTAS}},
        {"type": "message_stop"},
    ]


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def per_delta_us(step: Callable[[], int]) -> float:
    """The best of REPEAT timings of ``step`` (one call), in µs per delta."""
    best = min(timeit.repeat(step, number=NUMBER, repeat=REPEAT))
    return 1e6 * best / NUMBER / DELTAS


def main() -> int:
    events = call_events()
    sse_chunks = [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), _json(e)) for e in events]
    es_chunks = [chunk_frame(_json(e), i) for i, e in enumerate(events)]
    n = len(events)

    def sse_fast() -> int:
        decoder = StreamEventDecoder()
        return sum(len(decoder.feed(c)) for c in sse_chunks)

    def sse_generic() -> int:
        return sum(1 for _ in iter_stream_events(sse_chunks))

    def es_frames() -> int:
        decoder = EventStreamDecoder()
        return sum(len(decoder.feed(c)) for c in es_chunks)

    def es_json() -> int:
        decoder = EventStreamDecoder()
        return sum(1 for c in es_chunks for f in decoder.feed(c) if bedrock_event(f) is not None)

    def es_typed() -> int:
        decoder = BedrockEventDecoder()
        return sum(len(decoder.feed(c)) for c in es_chunks)

    rows: list[tuple[str, Callable[[], int]]] = [
        ("SSE -> typed events, StreamEventDecoder (fast transport)", sse_fast),
        ("SSE -> typed events, iter_stream_events (generic)", sse_generic),
        ("event stream -> frames, EventStreamDecoder", es_frames),
        ("event stream -> event JSON, + bedrock_event", es_json),
        ("event stream -> typed events, BedrockEventDecoder", es_typed),
    ]
    try:
        from botocore.eventstream import EventStreamBuffer

        def botocore_frames() -> int:
            buffer = EventStreamBuffer()
            count = 0
            for c in es_chunks:
                buffer.add_data(c)
                count += sum(1 for _ in buffer)
            return count

        rows.append(("event stream -> frames, botocore EventStreamBuffer (SDK)", botocore_frames))
    except ImportError:  # botocore comes with anthropic[bedrock]; the rest needs only the harness
        pass
    for _, step in rows:
        assert step() == n, step
    sse_bytes, es_bytes = sum(map(len, sse_chunks)), sum(map(len, es_chunks))
    print(
        f"one call of {DELTAS} deltas ({n} events, one per read; SSE {sse_bytes} B, event stream {es_bytes} B), "
        f"best of {REPEAT} x {NUMBER}; µs per delta"
    )
    for name, step in rows:
        print(f"  {name:<60} {per_delta_us(step):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
