"""Synthetic call records for the live-metrics tests: many scenarios, models and outcomes.

Every shape a :class:`~harness.measure.CallRecord` takes: successful streamed calls (with
and without a first text, with one token and so no TPOT, with many gaps), successful
non-streaming calls (no TTFT, no gaps), HTTP and mid-stream errors with partial usage,
timeouts and cancelled calls; values on bucket bounds too.
"""

from __future__ import annotations

import random
from collections import Counter

from harness.core.measure import CallRecord, Outcome
from harness.core.summary import SampleStore

SCENARIOS = ("chat", "rag", "agent", "batch")
MODELS = ("claude-haiku-4-5", "claude-sonnet-4-5")
ERRORS = ("http_429", "http_529", "stream_overloaded_error", "timeout", "connection", "cancelled")


def synthetic_records(n: int, seed: int = 7) -> list[CallRecord]:
    """``n`` records cycling through the (scenario, model) pairs, record shapes and outcomes (all from 288 on)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        model = MODELS[(i // len(SCENARIOS)) % len(MODELS)]
        kind = (i // (len(SCENARIOS) * len(MODELS))) % 6
        r = CallRecord(call_id=f"t-{i}", scenario=scenario, model=model, stream=kind != 1, outcome="ok")
        r.input_tokens = rng.randint(50, 2000)
        r.cache_read_input_tokens = rng.choice((0, 0, 1024))
        if kind == 5:
            r.outcome = Outcome.parse(ERRORS[(i // 48) % len(ERRORS)])
            # A stream cut mid-way has billed tokens and a first token, but no latency sample.
            if r.outcome in ("stream_overloaded_error", "cancelled"):
                r.ttft_s, r.output_tokens, r.itl_s = 0.2, rng.randint(1, 50), [0.01, 0.02]
            r.completion_s = rng.uniform(0.01, 30)
        else:
            tokens = 1 if kind == 2 else rng.randint(2, 300)
            r.output_tokens = tokens
            r.completion_s = rng.choice((0.5, 1.0, 2.0)) if kind == 3 else rng.lognormvariate(0.5, 1.0)
            if r.stream:
                r.ttft_s = rng.choice((0.05, 0.1)) if kind == 3 else rng.lognormvariate(-1.5, 0.8)
                r.first_text_s = None if kind == 4 else r.ttft_s + rng.uniform(0, 0.5)
                r.itl_s = [rng.lognormvariate(-4, 0.7) for _ in range(tokens - 1)]
                if tokens >= 2:
                    r.tpot_s = rng.lognormvariate(-4, 0.5)
        out.append(r)
    return out


def expected_counts(records: list[CallRecord]) -> tuple[Counter[str], dict[str, int]]:
    """(calls per outcome, samples per latency metric) as summary.json counts them."""
    store = SampleStore()
    for r in records:
        store.add(r)
    overall = store.summary(duration_s=1.0)["overall"]
    samples = {m: overall[f"{m}_s"]["count"] for m in ("ttft", "first_text", "completion", "itl", "tpot")}
    return Counter(r.outcome for r in records), samples
