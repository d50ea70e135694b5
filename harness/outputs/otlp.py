"""OpenTelemetry push of the live metrics (``--otlp-endpoint``), for collectors that do not scrape.

The same figures as the Prometheus endpoint, under the same names, labels and bucket
bounds, sent over OTLP/HTTP (protobuf) by the OpenTelemetry SDK: a ``MeterProvider`` whose
``PeriodicExportingMetricReader`` pushes every ``interval_s``. Counters and run-state
gauges are observable instruments that read :class:`~harness.outputs.metrics.LiveMetrics`
at each export, so a call costs nothing more than its ``observe``. The SDK has no
observable histogram and recording each sample through it costs ~5 µs (thousands per call
of inter-token gaps), so the exporter adds the histograms, built from the same snapshot the
Prometheus endpoint renders, to each batch the reader hands it. All cumulative, from the
run's start; a histogram with no sample yet is left out.

Headers (e.g. an authorization token) come from ``OTEL_EXPORTER_OTLP_HEADERS``, as the
SDK reads them: never from an option, so they stay out of process lists.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from harness.core.errors import ConfigError
from harness.outputs.live_counts import HISTOGRAMS, Snapshot
from harness.outputs.metrics import GAUGES, REQUESTS_DOC, TOKEN_COUNTERS, GaugeSpec, LiveMetrics

__all__ = ["DEFAULT_INTERVAL_S", "SCOPE", "OtlpPush", "otlp_metrics_url"]

DEFAULT_INTERVAL_S = 10.0
SCOPE = "harness"
_UNITS = {"llm_cost_usd": "USD", "llm_users": "{user}", "llm_in_flight": "{request}"}


def otlp_metrics_url(url: str) -> str:
    """The metrics URL for ``--otlp-endpoint URL``: a collector's base URL gets the standard ``/v1/metrics``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--otlp-endpoint {url!r}: give the collector's OTLP/HTTP URL, e.g. http://localhost:4318")
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/v1/metrics"
    return url


class OtlpPush:
    """Pushes ``metrics`` to an OTLP/HTTP collector every ``interval_s`` until :meth:`shutdown`."""

    def __init__(
        self,
        metrics: LiveMetrics,
        endpoint: str,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = 10.0,
        service_name: str = "llm-loadtest",
    ) -> None:
        if interval_s <= 0:
            raise ConfigError(f"OTLP export interval {interval_s}: must be positive")
        self.endpoint = otlp_metrics_url(endpoint)
        self._metrics = metrics
        scope = InstrumentationScope(SCOPE)
        resource = Resource.create({"service.name": service_name})
        self._exporter = exporter = _WithHistograms(
            OTLPMetricExporter(endpoint=self.endpoint, timeout=timeout_s), metrics, resource, scope
        )
        reader = PeriodicExportingMetricReader(
            exporter, export_interval_millis=interval_s * 1000, export_timeout_millis=timeout_s * 1000
        )
        self._provider = MeterProvider(
            metric_readers=[reader],
            resource=resource,
            shutdown_on_exit=False,  # the runtime shuts it down after the run's last export
        )
        meter = self._provider.get_meter(SCOPE)
        meter.create_observable_counter(
            "llm_requests_total", [self._requests], unit="{request}", description=REQUESTS_DOC
        )
        for index, (name, doc) in enumerate(TOKEN_COUNTERS):
            meter.create_observable_counter(f"{name}_total", [self._tokens(index)], unit="{token}", description=doc)
        for spec in GAUGES:
            unit = _UNITS.get(spec.name, "s" if spec.name.endswith("_seconds") else "1")
            if spec.counter:
                name = f"{spec.name}_total"
                meter.create_observable_counter(name, [self._reading(spec)], unit=unit, description=spec.doc)
            else:
                meter.create_observable_gauge(spec.name, [self._reading(spec)], unit=unit, description=spec.doc)

    def _requests(self, options: CallbackOptions) -> Iterable[Observation]:
        for s in self._metrics.snapshot().series:
            for outcome, n in s.outcomes.items():
                yield Observation(n, {"scenario": s.scenario, "model": s.model, "outcome": outcome})

    def _tokens(self, index: int) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for s in self._metrics.snapshot().series:
                yield Observation(s.tokens[index], {"scenario": s.scenario, "model": s.model})

        return observe

    def _reading(self, spec: GaugeSpec) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            reading = self._metrics.read(spec)
            if reading is None:
                return
            for label_value, value in reading.values.items():
                yield Observation(value, {spec.label: label_value} if spec.label else None)

        return observe

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Collect and push now (e.g. at the end of a run); ``True`` if it got through."""
        # The SDK's flush says whether it collected; the exporter knows whether the push got through.
        collected = self._provider.force_flush(timeout_millis=timeout_s * 1000)
        return bool(collected) and self._exporter.last_result is MetricExportResult.SUCCESS

    def shutdown(self, *, last_push: bool = True) -> None:
        """A last push, then stop the export thread.

        ``last_push=False`` skips the push (the collector did not take the previous one):
        its retries would only hold the process's exit up for the exporter's timeout.
        """
        if not last_push:
            self._exporter.dropping = True
        self._provider.shutdown()


class _WithHistograms(MetricExporter):
    """Adds the live histograms to each batch before the OTLP exporter sends it."""

    def __init__(
        self, inner: OTLPMetricExporter, metrics: LiveMetrics, resource: Resource, scope: InstrumentationScope
    ) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._metrics = metrics
        self._resource = resource
        self._scope = scope
        self.last_result: MetricExportResult | None = None
        self.dropping = False  # set at shutdown to send nothing more

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self.dropping:
            return MetricExportResult.FAILURE
        histograms = _histogram_metrics(self._metrics.snapshot())
        if histograms:
            metrics_data = self._add(metrics_data, histograms)
        self.last_result = self._inner.export(metrics_data, timeout_millis=timeout_millis)
        return self.last_result

    def _add(self, data: MetricsData, extra: Sequence[Metric]) -> MetricsData:
        # One resource (this process), one scope (the harness's): the histograms join its metrics.
        resources = list(data.resource_metrics) or [ResourceMetrics(self._resource, [], "")]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == self._scope.name:
                scopes[i] = ScopeMetrics(sm.scope, [*sm.metrics, *extra], sm.schema_url)
                break
        else:
            scopes.append(ScopeMetrics(self._scope, list(extra), ""))
        resources[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
        return MetricsData(resources)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis)


def _histogram_metrics(snapshot: Snapshot) -> list[Metric]:
    """The snapshot's histograms as OpenTelemetry SDK metrics (cumulative, explicit buckets)."""
    start = int(snapshot.start_time * 1e9)
    now = time.time_ns()
    out = []
    for index, spec in enumerate(HISTOGRAMS):
        points = [
            HistogramDataPoint(
                attributes={"scenario": s.scenario, "model": s.model},
                start_time_unix_nano=start,
                time_unix_nano=now,
                count=h.count,
                sum=h.sum,
                bucket_counts=list(h.counts),
                explicit_bounds=list(spec.buckets),
                min=h.min,
                max=h.max,
            )
            for s in snapshot.series
            if (h := s.histograms[index]).count and h.min is not None and h.max is not None
        ]
        if points:
            data = Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)
            out.append(Metric(name=spec.name, description=spec.doc, unit="s", data=data))
    return out
