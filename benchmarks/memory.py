"""What one finished call and one stream in flight cost in memory.

    python benchmarks/memory.py

Per finished call: the state a run keeps after the call ended (the exact-percentile
samples in ``SampleStore``, ``array('d')``, 8 bytes per sample; the record itself is
streamed to ``requests.jsonl`` and dropped), measured with tracemalloc over 20,000
calls of 50 deltas. Per stream in flight: see the KB/stream column of
``benchmarks/generator.py`` (RSS growth over N open streams, transport and user included).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.measure import CallMeasurement
from harness.core.stream_events import (
    ContentBlockDelta,
    ContentBlockStart,
    MessageDelta,
    MessageStart,
    MessageStop,
    Usage,
)
from harness.core.summary import SampleStore

CALLS = 20_000
DELTAS = 50


def one_call(t: float) -> CallMeasurement:
    m = CallMeasurement(scenario="bench", model="m", stream=True)
    m.event(MessageStart("msg", "m", Usage(10, 1)), t)
    m.event(ContentBlockStart(0, "text"), t)
    for i in range(DELTAS):
        m.event(ContentBlockDelta(0, "text_delta", "w"), t + 0.1 + 0.02 * i)
    m.event(MessageDelta("end_turn", Usage(None, DELTAS)), t + 1.1)
    m.event(MessageStop(), t + 1.1)
    return m


def main() -> int:
    store = SampleStore()
    in_flight = [one_call(0.0) for _ in range(1000)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    more = [one_call(0.0) for _ in range(1000)]
    per_measurement = (tracemalloc.get_traced_memory()[0] - base) / len(more)
    del more, in_flight
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(CALLS):
        store.add(one_call(float(i)).finish(t=float(i) + 1.2))
    gc.collect()
    per_call = (tracemalloc.get_traced_memory()[0] - base) / CALLS
    tracemalloc.stop()
    print(f"measurement state of one call in flight ({DELTAS} deltas received): {per_measurement:,.0f} bytes")
    print(f"kept per finished call ({DELTAS} deltas, exact percentiles): {per_call:,.0f} bytes")
    print(f"-> 1 million finished calls keep ~{per_call * 1e6 / 2**20:,.0f} MB of samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
