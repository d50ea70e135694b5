"""SLO expressions: parsing, exact evaluation on summary blocks, and per-call goodput."""

from __future__ import annotations

import pytest

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.slo import call_meets, evaluate, parse_slo, parse_slos


@pytest.mark.parametrize(
    ("text", "metric", "stat", "op", "threshold", "scenario", "stage"),
    [
        ("ttft_p95<800ms", "ttft", "p95", "<", 0.8, None, None),
        ("completion_p99 <= 12s", "completion", "p99", "<=", 12.0, None, None),
        ("HaikuChat:ttft_p95<500ms", "ttft", "p95", "<", 0.5, "HaikuChat", None),
        ("stage=8:tpot_mean<60ms", "tpot", "mean", "<", 0.06, None, "8"),
        ("error_rate<1%", "error_rate", None, "<", 0.01, None, None),
        ("output_tps>=2000", "output_tps", None, ">=", 2000.0, None, None),
        ("goodput>=5/s", "goodput", None, ">=", 5.0, None, None),
    ],
)
def test_parse(
    text: str, metric: str, stat: str | None, op: str, threshold: float, scenario: str | None, stage: str | None
) -> None:
    slo = parse_slo(text)
    assert (slo.metric, slo.stat, slo.op, slo.scenario, slo.stage) == (metric, stat, op, scenario, stage)
    assert slo.threshold == pytest.approx(threshold)


def test_error_rate_per_class() -> None:
    slo = parse_slo("error_rate[http_429]<0.1%")
    assert slo.error_class == "http_429" and slo.threshold == pytest.approx(0.001)
    block = {"calls": 1000, "cancelled": 0, "errors": {"http_429": 2}, "error_rate": 0.002}
    [result] = evaluate([slo], {"overall": block})
    assert result.measured == pytest.approx(0.002) and not result.passed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_p95<800", "needs a unit"),
        ("ttft_p42<1s", "unknown metric 'ttft_p42'"),
        ("latency<1s", "valid metrics: ttft_{p50"),
        ("error_rate<0.01", "needs the unit %"),
        ("ttft_p95 ~ 3ms", "does not parse"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_slo(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_evaluate_uses_the_scoped_block_and_a_missing_sample_breaches() -> None:
    summary = {
        "overall": {"ttft_s": {"p95": 0.9}},
        "scenarios": {"Fast": {"ttft_s": {"p95": 0.3}}, "Empty": {"ttft_s": {"p95": None}}},
    }
    results = evaluate(parse_slos(["ttft_p95<800ms,Fast:ttft_p95<500ms", "Empty:ttft_p95<1s"]), summary)
    assert [(r.measured, r.passed) for r in results] == [(0.9, False), (0.3, True), (None, False)]
    assert results[0].message == "ttft_p95<800ms: measured 900.0ms, limit < 800.0ms (breached)"


def test_a_call_meets_the_latency_slos_for_goodput() -> None:
    slos = parse_slos(["ttft_p95<500ms", "Other:completion_p99<1s", "error_rate<1%"])
    fast = CallRecord("1", "S", "m", True, "ok", ttft_s=0.2, completion_s=3.0)
    slow = CallRecord("2", "S", "m", True, "ok", ttft_s=0.6, completion_s=0.5)
    failed = CallRecord("3", "S", "m", True, "http_529", ttft_s=None, completion_s=0.1)
    assert [call_meets(r, slos) for r in (fast, slow, failed)] == [True, False, False]
