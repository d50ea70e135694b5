"""What the SDK transport adds per stream event to the anthropic SDK's own work, on bytes.

    python benchmarks/sdk_overhead.py

``benchmarks/generator.py`` compares the SDK transport with the bare SDK loop end to end,
but there the two read at different times: the bare loop falls behind at load (its
stamps are late) and then handles several deltas per wake-up of the event loop, which
costs less per delta than reading each one as it arrives. This script times, with no
network and no event loop, each step one 50-delta call's events take on either path:

* the SSE decoding: the SDK's own decoder against the harness's bounded one
  (:class:`harness.transports.sdk.BoundedSSEDecoder`), which replaces it;
* the SDK building its typed event from the JSON (both paths);
* what only the harness does: converting that event to the harness's type and
  feeding it to the shared measurement.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anthropic._models import construct_type
from anthropic._streaming import SSEDecoder
from anthropic.types import RawMessageStreamEvent

from harness.core.measure import CallMeasurement
from harness.transports.sdk import BoundedSSEDecoder, convert_event

DELTAS = 50
REPEAT = 5


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def call_chunks() -> list[bytes]:
    """One call as the API streams it, one event per read."""
    usage = {"input_tokens": 12, "output_tokens": 1}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [], "usage": usage}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " word"}}
    return [
        _event({"type": "message_start", "message": message}),
        _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _event({"type": "ping"}),
        *[_event(delta)] * DELTAS,
        _event({"type": "content_block_stop", "index": 0}),
        _event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": DELTAS}}),
        _event({"type": "message_stop"}),
    ]


def per_event_us(step: Callable[[], int], events: int) -> float:
    """The best of REPEAT timings of ``step`` (one call's events), in µs per event."""
    number = 200
    best = min(timeit.repeat(step, number=number, repeat=REPEAT))
    return 1e6 * best / number / events


def main() -> int:
    chunks = call_chunks()
    datas = [json.loads(c.split(b"data: ", 1)[1]) for c in chunks]
    sdk_events = [construct_type(type_=RawMessageStreamEvent, value=d) for d in datas]
    n = len(chunks)

    def count(events: Iterator[Any]) -> int:
        return sum(1 for _ in events)

    def sdk_decoder() -> int:
        return count(SSEDecoder().iter_bytes(iter(chunks)))

    def harness_decoder() -> int:
        return count(BoundedSSEDecoder().iter_bytes(iter(chunks)))

    def sdk_typing() -> int:
        return count(construct_type(type_=RawMessageStreamEvent, value=d) for d in datas)

    def harness_measuring() -> int:
        measurement = CallMeasurement(scenario="bench", model="m", stream=True)
        for i, sdk_event in enumerate(sdk_events):
            event = convert_event(sdk_event)
            if event is not None:
                measurement.event(event, float(i))
        return n

    assert sdk_decoder() == harness_decoder() == n
    rows = [
        ("SSE decoding, the SDK's decoder", per_event_us(sdk_decoder, n)),
        ("SSE decoding, the harness's bounded decoder (replaces it)", per_event_us(harness_decoder, n)),
        ("typed event from JSON, the SDK (both paths)", per_event_us(sdk_typing, n)),
        ("conversion + measurement, the harness only", per_event_us(harness_measuring, n)),
    ]
    print(f"one call of {DELTAS} deltas ({n} events), best of {REPEAT}; µs per event")
    for name, us in rows:
        print(f"  {name:<60} {us:6.2f}")
    added = rows[1][1] - rows[0][1] + rows[3][1]
    own = rows[0][1] + rows[2][1]
    print(
        f"  the harness adds {added:.2f} µs per event to these steps' {own:.2f} ({100 * added / own:+.0f} %); "
        "the whole SDK path (httpx, sockets, event loop) costs ~90-200 µs per delta (benchmarks/generator.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
