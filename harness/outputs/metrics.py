"""Live metrics of a run in the Prometheus format: the calls so far and the run's state, at any time.

:class:`LiveMetrics` is :class:`~harness.outputs.live_counts.LiveCounts` (every finished
call counted once, :meth:`~harness.outputs.live_counts.LiveCounts.observe`) plus the run's
state read from :class:`LiveSources` callables at each scrape, exposed on its own
``prometheus_client`` :class:`~prometheus_client.CollectorRegistry` for a ``/metrics``
route (:meth:`LiveMetrics.render`) or a standalone endpoint (:class:`MetricsServer`).
The names, types and labels are a contract (docs/live-metrics.md). Between scrapes nothing
runs; a scrape builds the families from one snapshot and lets the gevent loop run between
them.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from harness.core.errors import ConfigError
from harness.outputs.live_counts import HISTOGRAMS, LiveCounts

__all__ = [
    "GAUGES",
    "REQUESTS_DOC",
    "TOKEN_COUNTERS",
    "GaugeSpec",
    "LiveMetrics",
    "LiveSources",
    "MetricsServer",
    "Reading",
    "remaining_by_dimension",
]

log = logging.getLogger(__name__)

# A scrape's pause between metric families: long enough for gevent's loop to poll the sockets
# and run due timers (sleep(0) only runs greenlets already ready, not the reads waiting).
_PAUSE_S = 0.0001

# (name without _total, help) of the per-call counters, in SeriesState.tokens order.
TOKEN_COUNTERS: tuple[tuple[str, str], ...] = (
    ("llm_input_tokens", "Input tokens reported by the server's usage, every call."),
    ("llm_output_tokens", "Output tokens reported by the server's usage, every call."),
    ("llm_cache_read_input_tokens", "Input tokens read from the prompt cache, every call."),
)
REQUESTS_DOC = "Finished calls by outcome (ok, an error class, or cancelled), each call once."


@dataclass(frozen=True, slots=True)
class LiveSources:
    """Where the run's state is read from, at each scrape; a ``None`` source is not exposed.

    Each callable must be cheap and must not block: it runs inside the scrape.
    """

    in_flight: Callable[[], Mapping[str, int]] | None = None  # scenario -> calls in flight
    users: Callable[[], int] | None = None
    stage: Callable[[], str | None] | None = None  # the current load stage's label
    ratelimit_remaining: Callable[[], Mapping[str, int]] | None = None  # dimension -> remaining
    cost_usd: Callable[[], float | None] | None = None  # spent so far in the run
    loop_lag_s: Callable[[], Mapping[str, float]] | None = None  # process -> last second's max lag
    cpu_ratio: Callable[[], Mapping[str, float]] | None = None  # process -> share of one core
    generator_bound: Callable[[], bool | None] | None = None


@dataclass(frozen=True, slots=True)
class GaugeSpec:
    """One run-state metric: the :class:`LiveSources` field it is read from, its name and label."""

    source: str  # the LiveSources field
    name: str
    label: str | None
    doc: str
    counter: bool = False


GAUGES: tuple[GaugeSpec, ...] = (
    GaugeSpec("in_flight", "llm_in_flight", "scenario", "Calls in flight."),
    GaugeSpec("users", "llm_users", None, "Locust users running."),
    GaugeSpec("stage", "llm_stage_info", "stage", "The current load stage (value 1)."),
    GaugeSpec("ratelimit_remaining", "llm_ratelimit_remaining", "dimension", "Last anthropic-ratelimit-*-remaining."),
    GaugeSpec("cost_usd", "llm_cost_usd", None, "Estimated spend of the run so far, USD.", counter=True),
    GaugeSpec("loop_lag_s", "llm_generator_loop_lag_seconds", "process", "Generator loop lag, last second's max."),
    GaugeSpec("cpu_ratio", "llm_generator_cpu_ratio", "process", "Generator CPU use, share of one core."),
    GaugeSpec("generator_bound", "llm_generator_bound", None, "1 if the generator is too busy to trust its figures."),
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One run-state metric as read now: label value -> value (``""`` if it has no label)."""

    name: str
    doc: str
    label: str | None
    values: Mapping[str, float]
    counter: bool = False


class LiveMetrics(LiveCounts):
    """The run's live metrics on their own registry: :meth:`observe` each call, scrape any time."""

    def __init__(self, sources: LiveSources | None = None) -> None:
        super().__init__()
        self.sources = sources or LiveSources()
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def read(self, spec: GaugeSpec) -> Reading | None:
        """One run-state metric read from its source now; ``None`` if it has none or the source failed."""
        source = getattr(self.sources, spec.source)
        if source is None:
            return None
        try:
            values = _values(spec, source())
        except Exception as exc:  # a scrape must not fail for one figure
            log.warning("metrics: cannot read %s: %s", spec.name, exc)
            return None
        return Reading(spec.name, spec.doc, spec.label, values, spec.counter)

    def readings(self) -> list[Reading]:
        """Every run-state metric that has a source, read now."""
        return [r for r in map(self.read, GAUGES) if r is not None]

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of a scrape, for a ``/metrics`` route: always the text format, uncompressed.

        Prometheus asks for OpenMetrics first and gzip, but the OpenMetrics encoder costs
        1.5x the CPU (30 ms instead of 20 for 20 series) and gzip 5 ms more in one piece,
        on the loop that stamps tokens; the text format is what every scraper takes.
        """
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


def _values(spec: GaugeSpec, value: Any) -> dict[str, float]:
    if spec.label is None:
        return {} if value is None else {"": float(value)}
    if spec.source == "stage":
        return {str(value): 1.0} if value else {}
    return {str(k): float(v) for k, v in value.items() if v is not None}


def remaining_by_dimension(latest: Mapping[str, int]) -> dict[str, int]:
    """``{"requests": 49, ...}`` from :class:`~harness.ratelimits.RateLimitTracker`'s ``last`` values."""
    suffix = "_remaining"
    return {name[: -len(suffix)]: value for name, value in latest.items() if name.endswith(suffix)}


class _Collector(Collector):
    """Builds the metric families from a snapshot at each scrape; nothing runs between scrapes."""

    def __init__(self, metrics: LiveMetrics) -> None:
        self._metrics = metrics
        self._le = [[*(floatToGoString(b) for b in spec.buckets), "+Inf"] for spec in HISTOGRAMS]

    def describe(self) -> Iterator[Metric]:
        # The names only (no samples), so that the registry can refuse a clash without a scrape.
        yield CounterMetricFamily("llm_requests", REQUESTS_DOC, labels=["scenario", "model", "outcome"])
        for name, doc in TOKEN_COUNTERS:
            yield CounterMetricFamily(name, doc, labels=["scenario", "model"])
        for spec in HISTOGRAMS:
            yield HistogramMetricFamily(spec.name, spec.doc, labels=["scenario", "model"])
        for g in GAUGES:
            family = CounterMetricFamily if g.counter else GaugeMetricFamily
            yield family(g.name, g.doc, labels=[g.label] if g.label else [])

    def collect(self) -> Iterator[Metric]:
        # Between families (each one is formatted as soon as it is yielded), time.sleep(_PAUSE_S)
        # lets the loop run: gevent's when Locust has patched it, the GIL to other threads
        # otherwise. A scrape of 20 series costs ~20 ms of CPU; in one piece that would delay
        # every token read meanwhile by as much (benchmarks/metrics_cost.py).
        snap = self._metrics.snapshot()
        requests = CounterMetricFamily("llm_requests", REQUESTS_DOC, labels=["scenario", "model", "outcome"])
        for s in snap.series:
            for outcome, n in s.outcomes.items():
                requests.add_metric([s.scenario, s.model, outcome], n)
        yield requests
        for i, (name, doc) in enumerate(TOKEN_COUNTERS):
            tokens = CounterMetricFamily(name, doc, labels=["scenario", "model"])
            for s in snap.series:
                tokens.add_metric([s.scenario, s.model], s.tokens[i])
            yield tokens
        time.sleep(_PAUSE_S)
        for i, (spec, le) in enumerate(zip(HISTOGRAMS, self._le, strict=True)):
            hist = HistogramMetricFamily(spec.name, spec.doc, labels=["scenario", "model"])
            for s in snap.series:
                h = s.histograms[i]
                hist.add_metric([s.scenario, s.model], list(zip(le, np.cumsum(h.counts).tolist(), strict=True)), h.sum)
            yield hist
            time.sleep(_PAUSE_S)
        for reading in self._metrics.readings():
            labels = [reading.label] if reading.label else []
            family = (CounterMetricFamily if reading.counter else GaugeMetricFamily)(
                reading.name, reading.doc, labels=labels
            )
            for label_value, value in reading.values.items():
                family.add_metric([label_value] if reading.label else [], value)
            yield family


class _Sent:
    """A WSGI body that calls ``done`` once the server has written it (WSGI servers close it then)."""

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]) -> None:
        self._body = body
        self._done = done

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        self._done()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape is noise in the run's log


class MetricsServer:
    """``GET /metrics`` on its own port for headless runs: ``prometheus_client``'s WSGI app and server.

    Its threads are greenlets once gevent has patched the process (Locust does at import),
    so scrapes are served on the run's own loop, between calls' reads. It answers in the
    text format, uncompressed, whatever the scraper asks (see :meth:`LiveMetrics.render`).
    """

    def __init__(self, metrics: LiveMetrics, port: int, host: str = "127.0.0.1") -> None:
        app = make_wsgi_app(metrics.registry, disable_compression=True)
        self.last_served: float | None = None  # time.monotonic() when the last scrape's answer was sent

        def text_format(environ: dict[str, Any], start_response: Any) -> Any:
            environ.pop("HTTP_ACCEPT", None)
            began = time.monotonic()
            return _Sent(app(environ, start_response), lambda: setattr(self, "last_served", began))

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self._httpd = make_server(host, port, text_format, Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror}); choose a free port"
            ) from None
        self.host = host
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def served_since(self, t: float) -> bool:
        """Whether a scrape that began at ``t`` (``time.monotonic()``) or later has been answered."""
        return self.last_served is not None and self.last_served >= t

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
