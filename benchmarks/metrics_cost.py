"""What live metrics cost: CPU per observed call, and CPU per Prometheus scrape.

    python benchmarks/metrics_cost.py

Run with gevent's monkey-patching, as under Locust (the lock is gevent's). Per call:
:meth:`LiveMetrics.observe` for a successful streamed call of 50 and of 500 tokens (its
inter-token gaps are samples too) and for a failed call, against the same work done with
``prometheus_client``'s own ``Counter``/``Histogram`` children (looked up once, cached).
Per scrape: :meth:`LiveMetrics.render` with 10 scenarios x 2 models x 6 outcomes and every
run-state gauge, as CPU time (``time.process_time``) per scrape, and the longest the gevent
loop waited meanwhile (how late a token read could be stamped because of a scrape), by a
probe and as the scrape's longest work between two of its pauses; then the same for one
scenario and one model, a run of ``ShortChat``.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gevent  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402

from harness.core.measure import CallRecord, Outcome  # noqa: E402
from harness.outputs.live_counts import GAP_BUCKETS, LATENCY_BUCKETS  # noqa: E402
from harness.outputs.metrics import LiveMetrics, LiveSources  # noqa: E402

SCENARIOS = [f"scenario_{i}" for i in range(10)]
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
OUTCOMES = ["ok", "http_429", "http_529", "timeout", "stream_overloaded_error", "cancelled"]


def record(i: int, tokens: int, outcome: str = "ok") -> CallRecord:
    r = CallRecord(
        call_id=str(i),
        scenario=SCENARIOS[i % len(SCENARIOS)],
        model=MODELS[i % len(MODELS)],
        stream=True,
        outcome=Outcome.parse(outcome),
        input_tokens=120,
        output_tokens=tokens,
    )
    if outcome == "ok":
        r.ttft_s, r.first_text_s, r.completion_s = 0.3 + (i % 7) * 0.01, 0.31, 1.0 + (i % 5) * 0.1
        r.tpot_s = 0.02
        r.itl_s = [0.01 + (j % 9) * 0.002 for j in range(tokens - 1)]
    return r


class ClientChildren:
    """The same metrics with prometheus_client's Counter/Histogram, children cached per series."""

    def __init__(self) -> None:
        reg = CollectorRegistry()
        self.requests = Counter("llm_requests", "", ["scenario", "model", "outcome"], registry=reg)
        self.tokens = Counter("llm_output_tokens", "", ["scenario", "model"], registry=reg)
        self.ttft = Histogram("llm_ttft_seconds", "", ["scenario", "model"], buckets=LATENCY_BUCKETS, registry=reg)
        self.completion = Histogram("llm_completion", "", ["scenario", "model"], buckets=LATENCY_BUCKETS, registry=reg)
        self.itl = Histogram("llm_itl_seconds", "", ["scenario", "model"], buckets=GAP_BUCKETS, registry=reg)
        self.children: dict[tuple[str, str, str], tuple[Counter, Counter, Histogram, Histogram, Histogram]] = {}

    def observe(self, r: CallRecord) -> None:
        key = (r.scenario, r.model, r.outcome)
        c = self.children.get(key)
        if c is None:
            labels = (r.scenario, r.model)
            c = self.children[key] = (
                self.requests.labels(*key),
                self.tokens.labels(*labels),
                self.ttft.labels(*labels),
                self.completion.labels(*labels),
                self.itl.labels(*labels),
            )
        requests, tokens, ttft, completion, itl = c
        requests.inc()
        tokens.inc(r.output_tokens or 0)
        if r.outcome != "ok":
            return
        if r.ttft_s is not None:
            ttft.observe(r.ttft_s)
        completion.observe(r.completion_s)
        for gap in r.itl_s:
            itl.observe(gap)


def per_call_us(observe: Callable[[CallRecord], None], records: list[CallRecord], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for r in records:
            observe(r)
        best = min(best, time.perf_counter() - t0)
    return best / len(records) * 1e6


def scrape_stalls_ms(work: Callable[[], object], scrapes: int) -> tuple[float, float]:
    """How long the gevent loop waited during each of ``scrapes`` runs of ``work``: (median, max) of each run's longest.

    A probe greenlet asks to wake every 1 ms; its overshoot is the wait. On a shared
    machine the max includes time the OS gave the CPU to others; the median does not.
    """
    wakes: list[tuple[float, float]] = []
    done = False

    def probe() -> None:
        while not done:
            t0 = time.perf_counter()
            gevent.sleep(0.001)
            t1 = time.perf_counter()
            wakes.append((t1, t1 - t0 - 0.001))

    prober = gevent.spawn(probe)
    gevent.sleep(0.01)
    windows = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        work()
        gevent.sleep(0.003)  # the probe's wake after the scrape falls in this window
        windows.append((t0, time.perf_counter()))
    done = True
    prober.join()
    worst = [max((stall for t, stall in wakes if start < t <= end), default=0.0) * 1e3 for start, end in windows]
    return statistics.median(worst), max(worst)


def longest_slices_ms(metrics: LiveMetrics, scrapes: int) -> list[float]:
    """Per scrape, its longest stretch of work between two of its pauses (how long the loop waited at most).

    Timed from the scrape's side in thread CPU time, between its own ``time.sleep`` calls,
    so unlike the probe of :func:`scrape_stalls_ms` the machine's other load does not add to it.
    """
    from harness.outputs import metrics as module

    marks: list[float] = []

    class Clock:
        def sleep(self, seconds: float) -> None:
            marks.append(time.thread_time())
            time.sleep(seconds)
            marks.append(time.thread_time())

        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

    module.time = Clock()  # type: ignore[assignment]
    try:
        out = []
        for _ in range(scrapes):
            marks.clear()
            start = time.thread_time()
            metrics.render()
            points = [start, *marks, time.thread_time()]
            out.append(1e3 * max(points[k + 1] - points[k] for k in range(0, len(points) - 1, 2)))
        return out
    finally:
        module.time = time


def one_series() -> LiveMetrics:
    """A run of one scenario and one model (ShortChat at 300 streams): 300 calls counted, every run-state gauge."""
    metrics = LiveMetrics(
        LiveSources(
            in_flight=lambda: {"ShortChat": 300},
            users=lambda: 300,
            ratelimit_remaining=lambda: {"requests": 4000, "input_tokens": 300000, "output_tokens": 80000},
            cost_usd=lambda: 1.5,
            loop_lag_s=lambda: {"local": 0.002},
            cpu_ratio=lambda: {"local": 0.45},
            generator_bound=lambda: False,
        )
    )
    for i in range(300):
        r = record(i, 50, OUTCOMES[i % 2])
        r.scenario, r.model = "ShortChat", MODELS[0]
        metrics.observe(r)
    return metrics


def main() -> int:
    n = 2000
    cases = {
        "ok, 50 tokens": [record(i, 50) for i in range(n)],
        "ok, 500 tokens": [record(i, 500) for i in range(n)],
        "failed (http_429)": [record(i, 0, "http_429") for i in range(n)],
    }
    print(f"{'per call':<20} {'LiveMetrics.observe':>20} {'prometheus_client children':>28}")
    for name, records in cases.items():
        ours = per_call_us(LiveMetrics().observe, records)
        theirs = per_call_us(ClientChildren().observe, records)
        print(f"{name:<20} {ours:>17.2f} µs {theirs:>25.2f} µs")
    del cases
    # As the harness does at test start (harness/runtime.py): no full collection of the setup's objects mid-run.
    gc.collect()
    gc.freeze()

    sources = LiveSources(
        in_flight=lambda: dict.fromkeys(SCENARIOS, 30),
        users=lambda: 300,
        stage=lambda: "step-2",
        ratelimit_remaining=lambda: {"requests": 4000, "input_tokens": 300000, "output_tokens": 80000},
        cost_usd=lambda: 12.5,
        loop_lag_s=lambda: {"local": 0.002},
        cpu_ratio=lambda: {"local": 0.45},
        generator_bound=lambda: False,
    )
    metrics = LiveMetrics(sources)
    i = 0
    for s in SCENARIOS:
        for m in MODELS:
            for outcome in OUTCOMES:
                r = record(i, 200, outcome)
                r.scenario, r.model = s, m
                metrics.observe(r)
                i += 1
    scrapes = 200
    body, _ = metrics.render()
    t0 = time.process_time()
    for _ in range(scrapes):
        metrics.render()
    cpu_ms = (time.process_time() - t0) / scrapes * 1e3
    series = len(SCENARIOS) * len(MODELS)
    lines = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    print(
        f"\nscrape: {len(SCENARIOS)} scenarios x {len(MODELS)} models x {len(OUTCOMES)} outcomes"
        f" ({series} histogram series, {lines} samples, {len(body) / 1024:.0f} KB): {cpu_ms:.2f} ms CPU per scrape"
    )
    median, worst = scrape_stalls_ms(metrics.render, scrapes=50)
    print(f"longest loop stall during a scrape: median {median:.1f} ms, max {worst:.1f} ms over 50 scrapes")
    # Samples waiting to be binned are binned by the scrape: the cost of 15 s at 300 calls/s of 200 tokens.
    for j in range(300 * 15):
        metrics.observe(record(j, 200))
    t0 = time.process_time()
    metrics.render()
    print(f"scrape after 4,500 calls of 200 tokens since the last one: {(time.process_time() - t0) * 1e3:.2f} ms CPU")
    slices = sorted(longest_slices_ms(metrics, 50))
    print(f"longest work between two of a scrape's pauses: median {slices[25]:.2f} ms, max {slices[-1]:.2f} ms")

    single = one_series()
    t0 = time.process_time()
    for _ in range(scrapes):
        single.render()
    cpu_ms = (time.process_time() - t0) / scrapes * 1e3
    slices = sorted(longest_slices_ms(single, 50))
    print(
        f"\nscrape: one scenario x one model (a ShortChat run): {cpu_ms:.2f} ms CPU per scrape; longest work"
        f" between two of its pauses: median {slices[25]:.2f} ms, max {slices[-1]:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
