"""The OTLP push (harness/outputs/otlp.py) against a real loopback HTTP receiver that decodes the protobuf."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from harness.core.errors import ConfigError
from harness.outputs.live_counts import HISTOGRAMS
from harness.outputs.metrics import LiveMetrics, LiveSources
from harness.outputs.otlp import OtlpPush, otlp_metrics_url
from tests.metrics_records import expected_counts, synthetic_records

HIST_KEYS = dict(zip((s.name for s in HISTOGRAMS), ("ttft", "first_text", "completion", "itl", "tpot"), strict=True))


class Receiver:
    """An OTLP/HTTP metrics endpoint on loopback: every POST decoded and kept."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, ExportMetricsServiceRequest]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                decoded = ExportMetricsServiceRequest.FromString(body)
                receiver.requests.append((self.path, self.headers.get("Content-Type", ""), decoded))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"no such push within {timeout} s: {len(self.requests)} received"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def metrics_of(request: ExportMetricsServiceRequest) -> dict[str, Metric]:
    (resource,) = request.resource_metrics
    (scope,) = resource.scope_metrics
    assert scope.scope.name == "harness"
    return {m.name: m for m in scope.metrics}


def attrs(point: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in point.attributes}


def test_the_push_carries_the_scrapes_figures_names_labels_and_buckets(receiver: Receiver) -> None:
    records = synthetic_records(400)
    metrics = LiveMetrics(LiveSources(users=lambda: 12, stage=lambda: "step-1", cost_usd=lambda: 0.75))
    for r in records:
        metrics.observe(r)
    push = OtlpPush(metrics, receiver.url, interval_s=3600)
    try:
        assert push.flush()
    finally:
        push.shutdown()
    path, content_type, request = receiver.requests[0]
    assert (path, content_type) == ("/v1/metrics", "application/x-protobuf")
    resource = {kv.key: kv.value.string_value for kv in request.resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "llm-loadtest"
    got = metrics_of(request)
    outcomes, samples = expected_counts(records)

    requests = got["llm_requests_total"].sum
    assert (
        requests.is_monotonic
        and requests.aggregation_temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    by_outcome: Counter[str] = Counter()
    for point in requests.data_points:
        labels = attrs(point)
        assert set(labels) == {"scenario", "model", "outcome"}
        by_outcome[labels["outcome"]] += point.as_int
    assert by_outcome == outcomes

    snapshot = {(s.scenario, s.model): s for s in metrics.snapshot().series}
    for spec in HISTOGRAMS:
        hist = got[spec.name].histogram
        assert got[spec.name].unit == "s"
        assert sum(p.count for p in hist.data_points) == samples[HIST_KEYS[spec.name]], spec.name
        for point in hist.data_points:
            labels = attrs(point)
            assert list(point.explicit_bounds) == list(spec.buckets)
            index = [h.name for h in HISTOGRAMS].index(spec.name)
            state = snapshot[labels["scenario"], labels["model"]].histograms[index]
            assert list(point.bucket_counts) == list(state.counts)
            assert point.sum == pytest.approx(state.sum) and point.min == state.min and point.max == state.max

    output = sum(p.as_int for p in got["llm_output_tokens_total"].sum.data_points)
    assert output == sum(r.output_tokens or 0 for r in records)
    assert [p.as_double for p in got["llm_users"].gauge.data_points] == [12.0]
    assert [attrs(p) for p in got["llm_stage_info"].gauge.data_points] == [{"stage": "step-1"}]
    assert got["llm_cost_usd_total"].sum.is_monotonic
    assert [p.as_double for p in got["llm_cost_usd_total"].sum.data_points] == [0.75]
    assert "llm_generator_bound" not in got  # no source given, nothing pushed


def test_it_pushes_every_interval_and_once_more_at_shutdown(receiver: Receiver) -> None:
    metrics = LiveMetrics()
    records = synthetic_records(120)
    for r in records[:60]:
        metrics.observe(r)
    push = OtlpPush(metrics, receiver.url + "/", interval_s=0.2)

    def pushed_total(i: int) -> int:
        return sum(p.as_int for p in metrics_of(receiver.requests[i][2])["llm_requests_total"].sum.data_points)

    try:
        receiver.wait_for(lambda: len(receiver.requests) >= 2)
        assert pushed_total(-1) == 60
        for r in records[60:110]:
            metrics.observe(r)
        receiver.wait_for(lambda: pushed_total(-1) == 110)
        for r in records[110:]:
            metrics.observe(r)
    finally:
        push.shutdown()
    assert pushed_total(-1) == 120
    assert all(path == "/v1/metrics" for path, _, _ in receiver.requests)


def test_a_collector_that_is_down_costs_a_failed_flush_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = LiveMetrics()
    metrics.observe(synthetic_records(1)[0])
    push = OtlpPush(metrics, f"http://127.0.0.1:{port}", interval_s=3600, timeout_s=1.0)
    try:
        assert push.flush(timeout_s=2.0) is False
    finally:
        push.shutdown()


def test_the_endpoint_url_is_checked_and_completed() -> None:
    assert otlp_metrics_url("http://collector:4318") == "http://collector:4318/v1/metrics"
    assert otlp_metrics_url("https://otel.example/") == "https://otel.example/v1/metrics"
    assert otlp_metrics_url("http://c:4318/custom/metrics") == "http://c:4318/custom/metrics"
    for bad in ("collector:4318", "grpc://collector:4317", "http://"):
        with pytest.raises(ConfigError, match="--otlp-endpoint"):
            otlp_metrics_url(bad)
    with pytest.raises(ConfigError, match="must be positive"):
        OtlpPush(LiveMetrics(), "http://127.0.0.1:1", interval_s=0)


def test_shutdown_without_a_last_push_sends_nothing_more(receiver: Receiver) -> None:
    metrics = LiveMetrics()
    metrics.observe(synthetic_records(1)[0])
    push = OtlpPush(metrics, receiver.url, interval_s=3600)
    assert push.flush()
    push.shutdown(last_push=False)  # what the runtime does when the push after a run failed
    assert len(receiver.requests) == 1
    other = OtlpPush(metrics, receiver.url, interval_s=3600)
    other.shutdown()  # the default: one last push
    assert len(receiver.requests) == 2
