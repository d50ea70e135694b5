"""The statistics of lever studies: intervals that hold known shifts, honest A/A checks, block resampling."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from harness.core.bootstrap import block_percentiles, call_percentiles
from harness.core.compare import (
    ArmValue,
    Comparison,
    Interval,
    Method,
    Metric,
    Stat,
    Verdict,
    compare,
    metric_values,
    parse_precision,
    precise,
)
from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.summary import SampleStore


def lognormal(seed: int, n: int, median: float, sigma: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(math.log(median), sigma, n)


def test_a_known_shift_lies_inside_the_interval_and_zero_outside() -> None:
    a, b = lognormal(1, 3000, 0.500), lognormal(2, 3000, 0.300)  # b's median is 40% lower
    p50, p95 = compare(a, b, metric=Metric.TTFT, names=("Sonnet", "Haiku"), seed=7)
    true_p95 = math.exp(0.5 * 1.6448536)  # lognormal p95 / median
    assert p50.stat is Stat.P50 and p95.stat is Stat.P95
    assert 0.300 - 0.500 in p50.ci95 and -0.40 in p50.ci95_relative  # type: ignore[operator]
    assert (0.300 - 0.500) * true_p95 in p95.ci95 and -0.40 in p95.ci95_relative  # type: ignore[operator]
    for c in (p50, p95):
        assert 0 not in c.ci95 and c.verdict is Verdict.LOWER and c.method is Method.CALLS
        assert c.difference == c.b.value - c.a.value and c.relative == pytest.approx(c.b.value / c.a.value - 1)
        assert (c.a.calls, c.b.calls) == (3000, 3000)
    assert p50.sentence.startswith("Haiku's TTFT p50 is ") and " lower than Sonnet's (95% CI " in p50.sentence


def test_a_higher_metric_is_called_higher() -> None:
    (c,) = compare(lognormal(3, 2000, 50), lognormal(4, 2000, 60), metric=Metric.OUTPUT_TPS, stats=(Stat.P50,))
    assert c.verdict is Verdict.HIGHER and 0.20 in c.ci95_relative  # type: ignore[operator]
    assert "output tokens/s p50 is " in c.sentence and " higher than A's" in c.sentence


def test_the_a_a_honesty_check_over_20_seeds() -> None:
    for stat in (Stat.P50, Stat.P95):
        holds_zero = 0
        for seed in range(20):
            a, b = lognormal(2 * seed, 400, 0.4), lognormal(2 * seed + 1, 400, 0.4)
            (c,) = compare(a, b, metric=Metric.COMPLETION, stats=(stat,), seed=seed)
            holds_zero += 0 in c.ci95
        assert holds_zero >= 17, (stat, holds_zero)


@pytest.mark.parametrize("stat", [Stat.P50, Stat.P95])
def test_the_95_percent_intervals_hold_zero_95_percent_of_the_time(stat: Stat) -> None:
    replications = 400
    covered = sum(
        0
        in compare(lognormal(s, 300, 0.4), lognormal(10_000 + s, 300, 0.4), metric=Metric.TTFT, stats=(stat,), seed=s)[
            0
        ].ci95
        for s in range(replications)
    )
    assert 0.92 <= covered / replications <= 0.98, covered


def test_the_call_bootstrap_is_the_one_that_resamples_every_call() -> None:
    values = np.sort(lognormal(5, 151, 1.0, sigma=0.8))
    fast = call_percentiles(values, [50, 95, 37.5], 40_000, np.random.default_rng(1))
    draws = np.random.default_rng(2).integers(0, len(values), size=(40_000, len(values)))
    brute = np.percentile(values[draws], [50, 95, 37.5], axis=1)
    grid = np.linspace(1, 99, 49)
    for q in range(3):
        # Both are the same discrete distribution; 40,000 draws each put their quantiles close.
        spread = np.percentile(brute[q], 99) - np.percentile(brute[q], 1)
        assert np.max(np.abs(np.percentile(fast[q], grid) - np.percentile(brute[q], grid))) < 0.05 * spread


def test_block_resamples_give_the_percentiles_of_the_resampled_calls() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0, 1, 250), rng.lognormal(0, 1, 90)
    ids_a, ids_b = rng.integers(0, 12, 250).tolist(), [f"r{i}" for i in rng.integers(0, 12, 90)]
    (pa, pb), drawn = block_percentiles([(a, ids_a), (b, ids_b)], [50, 95, 0, 100], 300, np.random.default_rng(4))
    assert drawn == 12 + 12  # ints and strings are different ids
    # Redo each resample by hand: which ids did it draw? A value weighs as often as its id was drawn.
    ids = list(dict.fromkeys([*ids_a, *ids_b]))
    draws = np.random.default_rng(4).integers(0, len(ids), size=(300, len(ids)))
    for r in range(300):
        times = {ids[k]: int((draws[r] == k).sum()) for k in range(len(ids))}
        for values, own, got in ((a, ids_a, pa), (b, ids_b, pb)):
            data = np.repeat(values, [times[i] for i in own])
            want = np.percentile(data, [50, 95, 0, 100]) if len(data) else np.full(4, np.nan)
            np.testing.assert_allclose(got[:, r], want, equal_nan=True)


def _drifting(seed: int, rounds: int, per_block: int, block_sd: float) -> tuple[np.ndarray, list[int]]:
    """Calls of one arm in rounds; each round's block is shifted by its own drift."""
    rng = np.random.default_rng(seed)
    shifts = rng.normal(0, block_sd, rounds)
    values = np.concatenate([rng.lognormal(math.log(0.4) + s, 0.4, per_block) for s in shifts])
    return values, [r for r in range(rounds) for _ in range(per_block)]


def test_the_block_bootstrap_widens_intervals_when_blocks_drift() -> None:
    width_ratio, calls_cover, blocks_cover = [], 0, 0
    for seed in range(100):
        a, ids_a = _drifting(2 * seed, 20, 25, block_sd=0.3)
        b, ids_b = _drifting(2 * seed + 1, 20, 25, block_sd=0.3)
        (by_calls,) = compare(a, b, metric=Metric.TTFT, stats=(Stat.P50,), seed=seed)
        (by_blocks,) = compare(a, b, metric=Metric.TTFT, stats=(Stat.P50,), blocks_a=ids_a, blocks_b=ids_b, seed=seed)
        assert by_blocks.method is Method.BLOCKS and by_blocks.blocks == 20
        width_ratio.append(by_blocks.ci95.half_width / by_calls.ci95.half_width)
        calls_cover += 0 in by_calls.ci95
        blocks_cover += 0 in by_blocks.ci95
    assert np.median(width_ratio) > 1.6
    # Calls alone take drift for signal and miss the true 0 far more often than 5% of the time
    # (61 of 100 cover it); blocks come close to 95% (92 of 100; 20 blocks is few).
    assert calls_cover <= 75 and blocks_cover >= 88, (calls_cover, blocks_cover)


def test_without_drift_blocks_and_calls_agree() -> None:
    ratios = []
    for seed in range(20):
        a, ids = _drifting(seed, 20, 25, block_sd=0.0)
        b, _ = _drifting(100 + seed, 20, 25, block_sd=0.0)
        (by_calls,) = compare(a, b, metric=Metric.TTFT, stats=(Stat.P50,), seed=seed)
        (by_blocks,) = compare(a, b, metric=Metric.TTFT, stats=(Stat.P50,), blocks_a=ids, blocks_b=ids, seed=seed)
        ratios.append(by_blocks.ci95.half_width / by_calls.ci95.half_width)
    assert 0.75 < float(np.median(ratios)) < 1.35


def test_a_seed_makes_the_intervals_reproducible() -> None:
    a, b = lognormal(1, 500, 0.5), lognormal(2, 500, 0.5)
    assert compare(a, b, metric=Metric.TTFT, seed=3) == compare(a, b, metric=Metric.TTFT, seed=3)
    assert compare(a, b, metric=Metric.TTFT, seed=3)[0].ci95 != compare(a, b, metric=Metric.TTFT, seed=4)[0].ci95


def test_2000_resamples_of_10k_calls_take_well_under_a_second() -> None:
    a, b = lognormal(1, 10_000, 0.5), lognormal(2, 10_000, 0.45)
    ids = [i // 250 for i in range(10_000)]
    compare(a, b, metric=Metric.TTFT, blocks_a=ids, blocks_b=ids)  # numpy's first-call costs
    start = time.perf_counter()
    by_calls = compare(a, b, metric=Metric.TTFT, resamples=2000)
    calls_s = time.perf_counter() - start
    start = time.perf_counter()
    by_blocks = compare(a, b, metric=Metric.TTFT, resamples=2000, blocks_a=ids, blocks_b=ids)
    blocks_s = time.perf_counter() - start
    assert by_calls[0].verdict is by_blocks[0].verdict is Verdict.LOWER
    # Typically ~0.01 s over calls and ~0.1 s over 40 blocks; the bound leaves room for a busy machine.
    assert calls_s < 0.5 and blocks_s < 1.0, (calls_s, blocks_s)


def _record(i: int, **fields: object) -> CallRecord:
    base: dict[str, object] = {"call_id": str(i), "scenario": "S", "model": "m", "stream": True, "outcome": "ok"}
    return CallRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_point_estimates_equal_summary_json() -> None:
    rng = np.random.default_rng(9)
    records = [
        _record(i, ttft_s=float(t), first_text_s=float(t), completion_s=float(t) * 3, output_tps=float(100 / t))
        for i, t in enumerate(rng.lognormal(-1, 0.5, 777))
    ]
    store = SampleStore()
    for r in records:
        store.add(r)
    summary = store.summary(duration_s=10)["overall"]
    for metric in (Metric.TTFT, Metric.FIRST_TEXT, Metric.COMPLETION):
        values, _ = metric_values(records, metric)
        p50, p95 = compare(values, values[::-1], metric=metric)
        assert p50.a.value == summary[metric.value]["p50"] and p95.a.value == summary[metric.value]["p95"]


def test_metric_values_take_successful_measured_calls_only() -> None:
    records = [
        _record(0, ttft_s=0.1, first_text_s=0.3, completion_s=1.0),
        _record(1, ttft_s=0.2, first_text_s=0.4, completion_s=2.0, warmup=True),
        _record(2, outcome="http_529", completion_s=0.05),
        _record(3, stream=False, completion_s=4.0),
        _record(4, ttft_s=0.5, completion_s=5.0),  # a tool call: no text
    ]
    rounds = {"0": 7, "3": 8, "4": 9}
    assert metric_values(records, Metric.TTFT)[0].tolist() == [0.1, 0.5]
    assert metric_values(records, Metric.COMPLETION)[0].tolist() == [1.0, 4.0, 5.0]
    values, ids = metric_values(records, Metric.PERCEIVED, lambda r: rounds[r.call_id])
    assert values.tolist() == [0.3, 4.0] and ids == [7, 8]  # first text when streamed, the whole call when not
    assert metric_values(records, Metric.OUTPUT_TPS)[0].size == 0


def _comparison(relative: float, low: float, high: float, verdict: Verdict, metric: Metric = Metric.TTFT) -> Comparison:
    a = 0.5
    return Comparison(
        metric,
        Stat.P50,
        ArmValue("Sonnet", a, 100),
        ArmValue("Haiku", a * (1 + relative), 100),
        a * relative,
        relative,
        Interval(a * low, a * high),
        Interval(low, high),
        verdict,
        Method.CALLS,
        None,
        2000,
    )


def test_the_verdict_in_words() -> None:
    assert (
        _comparison(-0.41, -0.45, -0.37, Verdict.LOWER).sentence
        == "Haiku's TTFT p50 is 41% lower than Sonnet's (95% CI 37\N{EN DASH}45%)"
    )
    assert (
        _comparison(0.052, 0.034, 0.071, Verdict.HIGHER, Metric.COMPLETION).sentence
        == "Haiku's completion time p50 is 5.2% higher than Sonnet's (95% CI 3.4\N{EN DASH}7.1%)"
    )
    assert _comparison(0.004, -0.03, 0.04, Verdict.NO_DIFFERENCE).sentence == (
        "Haiku's TTFT p50 against Sonnet's: no difference detected (95% CI \N{MINUS SIGN}3.0% to +4.0%)"
    )


def test_without_a_relative_figure_the_sentence_gives_milliseconds() -> None:
    (c,) = compare([0.0, 0.0, 0.0, 0.0], [0.1, 0.1, 0.2, 0.2], metric=Metric.TTFT, stats=(Stat.P50,))
    assert c.relative is None and c.ci95_relative is None and c.half_width is None
    assert c.sentence.startswith("B's TTFT p50 is 150.0 ms higher than A's (95% CI ")


def test_precision_is_every_relative_half_width_below_the_target() -> None:
    narrow, wide = _comparison(-0.4, -0.42, -0.38, Verdict.LOWER), _comparison(0.0, -0.06, 0.07, Verdict.NO_DIFFERENCE)
    assert precise([narrow], 0.05) and not precise([narrow, wide], 0.05) and precise([narrow, wide], 0.07)
    few = Comparison(**{**narrow.__dict__, "method": Method.BLOCKS, "blocks": 4})
    assert not precise([few], 0.05) and precise([few], 0.05, min_blocks=4)


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), (" 2.5 % ", 0.025), ("0.1", 0.1)])
def test_precision_flag_values(text: str, value: float) -> None:
    assert parse_precision(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "five", "0%", "150%", "1", "-5%"])
def test_a_bad_precision_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--precision"):
        parse_precision(text)


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="needs 2 or more"):
        compare([0.1], [0.2, 0.3], metric=Metric.TTFT)
    with pytest.raises(ValueError, match="not all finite"):
        compare([0.1, math.nan], [0.2, 0.3], metric=Metric.TTFT)
    with pytest.raises(ValueError, match="both arms"):
        compare([0.1, 0.2], [0.2, 0.3], metric=Metric.TTFT, blocks_a=[1, 2])
    with pytest.raises(ValueError, match="one id per value"):
        compare([0.1, 0.2], [0.2, 0.3], metric=Metric.TTFT, blocks_a=[1], blocks_b=[1, 2])
