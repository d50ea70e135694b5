"""Live metrics (harness/outputs/metrics.py): the exposition's figures against summary.json's, and the endpoint."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.summary import SampleStore
from harness.outputs.live_counts import HISTOGRAMS, LATENCY_BUCKETS
from harness.outputs.metrics import GAUGES, LiveMetrics, LiveSources, MetricsServer
from tests.metrics_records import synthetic_records

HIST_KEYS = {
    "llm_ttft_seconds": "ttft",
    "llm_time_to_first_text_seconds": "first_text",
    "llm_completion_seconds": "completion",
    "llm_itl_seconds": "itl",
    "llm_tpot_seconds": "tpot",
}


def scrape(metrics: LiveMetrics) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name -> its samples, from the text exposition through prometheus_client's own parser."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(body.decode())
    }


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **match: str) -> float:
    return sum(v for n, labels, v in samples if n == name and all(labels.get(k) == x for k, x in match.items()))


def test_counts_and_histograms_equal_what_summary_json_counts() -> None:
    records = synthetic_records(600)
    metrics = LiveMetrics()
    store = SampleStore()
    for r in records:
        metrics.observe(r)
        store.add(r)
    summary = store.summary(duration_s=1.0)
    families = scrape(metrics)

    requests = families["llm_requests"]
    assert total(requests, "llm_requests_total") == len(records)
    for outcome, n in Counter(r.outcome for r in records).items():
        assert total(requests, "llm_requests_total", outcome=outcome) == n, outcome
    assert {labels["outcome"] for _, labels, _ in requests} >= {"ok", "http_429", "cancelled", "timeout"}
    per_scenario = summary["scenarios"]["rag"]
    assert total(requests, "llm_requests_total", scenario="rag") == per_scenario["calls"]

    for name, key in HIST_KEYS.items():
        samples = families[name]
        expected = summary["overall"][f"{key}_s"]["count"]
        assert expected > 0
        assert total(samples, f"{name}_count") == expected, name
        assert total(samples, f"{name}_bucket", le="+Inf") == expected, name
        assert total(samples, f"{name}_sum") == pytest.approx(summary["overall"][f"{key}_s"]["mean"] * expected)
        # Cumulative buckets never decrease, in every series.
        series: dict[tuple[str, str], list[float]] = {}
        for n, labels, v in samples:
            if n.endswith("_bucket"):
                series.setdefault((labels["scenario"], labels["model"]), []).append(v)
        assert len(series) == 8
        assert all(b == sorted(b) and b[0] < b[-1] for b in series.values()), name
    assert total(families["llm_input_tokens"], "llm_input_tokens_total") == summary["overall"]["input_tokens"]
    assert total(families["llm_output_tokens"], "llm_output_tokens_total") == summary["overall"]["output_tokens"]
    assert total(families["llm_cache_read_input_tokens"], "llm_cache_read_input_tokens_total") == sum(
        r.cache_read_input_tokens or 0 for r in records
    )


def test_a_sample_on_a_bound_counts_in_that_bucket_and_a_huge_one_only_in_inf() -> None:
    metrics = LiveMetrics()
    ok = CallRecord(call_id="1", scenario="s", model="m", stream=True, outcome="ok", ttft_s=0.1, completion_s=700.0)
    metrics.observe(ok)
    samples = scrape(metrics)
    ttft = {labels["le"]: v for n, labels, v in samples["llm_ttft_seconds"] if n == "llm_ttft_seconds_bucket"}
    assert ttft["0.075"] == 0 and ttft["0.1"] == 1 and ttft["+Inf"] == 1
    assert list(ttft) == [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
    completion = {lab["le"]: v for n, lab, v in samples["llm_completion_seconds"] if n.endswith("_bucket")}
    assert completion["600.0"] == 0 and completion["+Inf"] == 1
    assert total(samples["llm_completion_seconds"], "llm_completion_seconds_sum") == 700.0


def test_many_gaps_and_calls_between_scrapes_are_all_counted() -> None:
    # Past the bulk-binning thresholds: one call of 10,000 gaps, then 5,000 calls.
    metrics = LiveMetrics()
    long_call = CallRecord(call_id="0", scenario="s", model="m", stream=True, outcome="ok", ttft_s=0.2)
    long_call.itl_s = [0.001 * (i % 50) for i in range(10_000)]
    metrics.observe(long_call)
    for i in range(5_000):
        metrics.observe(CallRecord(call_id=str(i), scenario="s", model="m", stream=True, outcome="ok", ttft_s=0.3))
    samples = scrape(metrics)
    assert total(samples["llm_itl_seconds"], "llm_itl_seconds_count") == 10_000
    assert total(samples["llm_itl_seconds"], "llm_itl_seconds_sum") == pytest.approx(math.fsum(long_call.itl_s))
    assert total(samples["llm_ttft_seconds"], "llm_ttft_seconds_count") == 5_001
    snap = metrics.snapshot().series[0].histograms[0]
    assert (snap.min, snap.max, snap.count) == (0.2, 0.3, 5_001)


def test_run_state_is_read_from_the_sources_at_each_scrape() -> None:
    state: dict[str, object] = {"users": 5, "stage": "ramp", "bound": False}

    def broken() -> dict[str, float]:
        raise RuntimeError("psutil went away")

    metrics = LiveMetrics(
        LiveSources(
            in_flight=lambda: {"chat": 3, "rag": 0},
            users=lambda: state["users"],  # type: ignore[arg-type,return-value]
            stage=lambda: state["stage"],  # type: ignore[arg-type,return-value]
            ratelimit_remaining=lambda: {"requests": 49, "output_tokens": 8000},
            cost_usd=lambda: 1.25,
            loop_lag_s=lambda: {"local": 0.004},
            cpu_ratio=broken,
            generator_bound=lambda: state["bound"],  # type: ignore[arg-type,return-value]
        )
    )
    first = scrape(metrics)
    assert first["llm_users"] == [("llm_users", {}, 5.0)]
    assert first["llm_stage_info"] == [("llm_stage_info", {"stage": "ramp"}, 1.0)]
    assert first["llm_in_flight"] == [
        ("llm_in_flight", {"scenario": "chat"}, 3.0),
        ("llm_in_flight", {"scenario": "rag"}, 0.0),
    ]
    assert ("llm_ratelimit_remaining", {"dimension": "requests"}, 49.0) in first["llm_ratelimit_remaining"]
    assert first["llm_cost_usd"] == [("llm_cost_usd_total", {}, 1.25)]
    assert first["llm_generator_loop_lag_seconds"] == [("llm_generator_loop_lag_seconds", {"process": "local"}, 0.004)]
    assert first["llm_generator_bound"][0][2] == 0.0
    assert "llm_generator_cpu_ratio" not in first  # its source failed; the scrape did not

    state.update(users=9, stage=None, bound=True)
    second = scrape(metrics)
    assert second["llm_users"][0][2] == 9.0
    assert second["llm_stage_info"] == []  # no stage: no series
    assert second["llm_generator_bound"][0][2] == 1.0
    assert {spec.name for spec in GAUGES} - {"llm_cost_usd", "llm_stage_info", "llm_generator_cpu_ratio"} <= set(second)


def test_reset_starts_the_counters_again() -> None:
    metrics = LiveMetrics()
    for r in synthetic_records(50):
        metrics.observe(r)
    metrics.reset()
    assert "llm_requests" not in {n for n, s in scrape(metrics).items() if s}
    metrics.observe(CallRecord(call_id="x", scenario="s", model="m", stream=False, outcome="http_500"))
    assert scrape(metrics)["llm_requests"] == [
        ("llm_requests_total", {"scenario": "s", "model": "m", "outcome": "http_500"}, 1.0)
    ]


def test_the_endpoint_serves_scrapes_on_loopback_and_frees_its_port() -> None:
    metrics = LiveMetrics(LiveSources(users=lambda: 2))
    for r in synthetic_records(100):
        metrics.observe(r)
    server = MetricsServer(metrics, 0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        assert sum(s.value for s in families["llm_requests"].samples) == 100
        # What Prometheus asks for; the text format costs less CPU on the run's loop, gzip too.
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        request = urllib.request.Request(server.url, headers={"Accept": accept, "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "Content-Encoding" not in response.headers
            assert response.read().startswith(b"# HELP llm_requests_total")
        with pytest.raises(ConfigError, match=f"--metrics-port {server.port}: cannot listen"):
            MetricsServer(metrics, server.port)
    finally:
        server.close()
    with socket.create_server(("127.0.0.1", server.port)):
        pass  # free again


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed: apt-get install -y prometheus")
def test_promtool_finds_nothing_to_lint_in_the_exposition() -> None:
    metrics = LiveMetrics(LiveSources(users=lambda: 1, stage=lambda: "s", cost_usd=lambda: 0.1))
    for r in synthetic_records(300):
        metrics.observe(r)
    body, _ = metrics.render()
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert len(HISTOGRAMS) == 5
