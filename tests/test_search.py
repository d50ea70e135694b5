"""The capacity search (harness/core/search.py) against synthetic knees, and judged on real stage figures."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.search import (
    Bracket,
    CapacitySearch,
    LoadKind,
    Phase,
    Probe,
    SearchConfig,
    SearchResult,
    StopReason,
    calls_needed,
    clear_breach,
    judge,
)
from harness.core.slo import parse_slos
from harness.core.stages import Stage, StageAnalysis

SLO_TEXT = "ttft_p95<800ms"


def run(config: SearchConfig, passes: Callable[[float], bool]) -> SearchResult:
    """Drive a search to its end; every probe meaningful, breaching probes name the SLO."""
    search = CapacitySearch(config)
    while not search.done:
        load = search.next_load
        assert load is not None
        ok = passes(load)
        search.record(Probe(load, ok, ok_calls=30, needed_calls=20, breaches=() if ok else (SLO_TEXT,)))
    return search.result()


def bracketing_probes(start: float, knee: float) -> int:
    """Probes until a load passes and its double breaches: doubling up from ``start``, or halving down."""
    if knee >= start:
        return math.floor(math.log2(knee / start)) + 2
    return math.ceil(math.log2(start / knee)) + 1


@settings(max_examples=200, deadline=None)
@given(
    knee=st.floats(min_value=0.01, max_value=1000.0),
    start=st.sampled_from([0.5, 1.0, 3.0]),
    precision=st.sampled_from([0.02, 0.05, 0.1]),
)
def test_rate_search_converges_within_precision_and_probes(knee: float, start: float, precision: float) -> None:
    result = run(SearchConfig(LoadKind.RATE, start, precision=precision, max_probes=40), lambda r: r <= knee)
    lo, hi = result.bracket.passing, result.bracket.breaching
    assert result.stop is StopReason.CONVERGED
    assert lo is not None and hi is not None
    assert lo <= knee < hi  # the ends pass and breach
    assert (hi - lo) / lo <= precision
    # Doubling (or halving) to a bracket, then each bisection halves it (rounding strays <= 1 %).
    bound = bracketing_probes(start, knee) + math.ceil(math.log(precision) / math.log(0.51))
    assert len(result.probes) <= bound
    assert [p.index for p in result.probes] == list(range(len(result.probes)))


@settings(max_examples=200, deadline=None)
@given(knee=st.integers(min_value=0, max_value=600), start=st.sampled_from([1, 2, 5]))
def test_user_search_bisects_on_whole_numbers_until_adjacent(knee: int, start: int) -> None:
    result = run(SearchConfig(LoadKind.USERS, start, max_probes=40), lambda u: u <= knee)
    assert all(p.load == int(p.load) for p in result.probes)
    assert len({p.load for p in result.probes}) == len(result.probes)  # never the same load twice
    lo, hi = result.bracket.passing, result.bracket.breaching
    if knee == 0:
        assert result.stop is StopReason.NOTHING_PASSES and lo is None and hi == 1
        assert result.answer == f"no sustainable load: 1 user breaches {SLO_TEXT}, the lightest load probed"
        return
    assert result.stop is StopReason.CONVERGED
    assert lo is not None and hi is not None
    assert lo <= knee < hi
    assert hi - lo <= 1 or (hi - lo) / lo <= 0.05
    if knee < 20:  # small loads: the search finds the exact knee
        assert (lo, hi) == (knee, knee + 1)


@settings(max_examples=100, deadline=None)
@given(outcomes=st.lists(st.booleans(), min_size=1, max_size=30), start=st.sampled_from([1.0, 4.0]))
def test_noisy_probes_still_give_a_pass_breach_bracket(outcomes: list[bool], start: float) -> None:
    # Non-monotone outcomes (noise): the bracket's ends are still a passing and a breaching probe.
    answers = iter(outcomes)
    result = run(SearchConfig(LoadKind.RATE, start, max_probes=len(outcomes)), lambda _: next(answers, True))
    lo, hi = result.bracket.passing, result.bracket.breaching
    passed = {p.load for p in result.probes if p.passed}
    breached = {p.load for p in result.probes if not p.passed}
    assert lo is None or lo in passed
    assert hi is None or hi in breached
    if lo is not None and hi is not None:
        assert lo < hi
    assert len(result.probes) <= len(outcomes)


def test_answer_text_and_phases_for_a_rate_knee() -> None:
    result = run(SearchConfig(LoadKind.RATE, 1.0), lambda r: r <= 11.7)
    assert [p.load for p in result.probes] == [1, 2, 4, 8, 16, 12, 10, 11, 11.5]
    assert [p.phase for p in result.probes] == [Phase.DOUBLING] * 5 + [Phase.BISECTING] * 4
    assert result.bracket == Bracket(11.5, 12.0)
    assert result.answer == "max sustainable: 11.5 req/s; 12 req/s breaches ttft_p95<800ms"
    section = result.to_dict()
    assert section["max_sustainable"] == 11.5 and section["stop_reason"] == "converged"
    assert section["bracket"] == {"passing": 11.5, "breaching": 12.0, "relative_width": pytest.approx(0.5 / 11.5)}
    assert len(section["probes"]) == 9 and section["probes"][4]["breaches"] == [SLO_TEXT]


def test_first_probe_breaching_halves_down() -> None:
    result = run(SearchConfig(LoadKind.RATE, 8.0), lambda r: r <= 0.3)
    assert [p.load for p in result.probes][:6] == [8, 4, 2, 1, 0.5, 0.25]
    assert {p.phase for p in result.probes[1:6]} == {Phase.HALVING}
    lo, hi = result.bracket.passing, result.bracket.breaching
    assert lo is not None and hi is not None and lo <= 0.3 < hi and (hi - lo) / lo <= 0.05


def test_max_probes_stops_with_a_wide_bracket_and_says_so() -> None:
    result = run(SearchConfig(LoadKind.RATE, 1.0, max_probes=6), lambda r: r <= 11.7)
    assert len(result.probes) == 6 and result.stop is StopReason.MAX_PROBES
    assert result.bracket == Bracket(8.0, 12.0)
    assert result.answer == (
        "max sustainable: 8 req/s; 12 req/s breaches ttft_p95<800ms (bracket 50% wide, not 5%: max probes reached)"
    )


def test_everything_passing_stops_at_max_load_or_max_probes() -> None:
    capped = run(SearchConfig(LoadKind.USERS, 1, max_load=20), lambda _: True)
    assert [p.load for p in capped.probes] == [1, 2, 4, 8, 16, 20]
    assert capped.stop is StopReason.MAX_LOAD
    assert capped.answer == "max sustainable: at least 20 users (no probe breached within the max load)"
    uncapped = run(SearchConfig(LoadKind.RATE, 1.0, max_probes=4), lambda _: True)
    assert uncapped.answer == "max sustainable: at least 8 req/s (no probe breached within 4 probes)"


def test_record_refuses_a_load_it_did_not_ask_for() -> None:
    search = CapacitySearch(SearchConfig(LoadKind.USERS, 2))
    with pytest.raises(ValueError, match="asked for 2"):
        search.record(Probe(3, True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": LoadKind.USERS, "start": 2.5}, "must be whole"),
        ({"kind": LoadKind.RATE, "start": 0.0}, "must be above 0"),
        ({"kind": LoadKind.RATE, "start": 1.0, "precision": 0.0}, "--search-precision 0 must be between 0 and 1"),
        ({"kind": LoadKind.RATE, "start": 1.0, "max_probes": 0}, "--search-max-probes must be 1 or more"),
        ({"kind": LoadKind.RATE, "start": 4.0, "max_load": 2.0}, "below its first load"),
    ],
)
def test_bad_search_options_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("slos", "needed"),
    [
        ("ttft_p95<800ms", 20),
        ("ttft_p99<1s", 100),
        ("ttft_p50<1s", 2),
        ("ttft_p90<1s,completion_max<5s", 10),
        ("error_rate<1%", 100),
        ("error_rate<5%,tpot_mean<50ms", 20),
        ("rps>=5/s", 1),
    ],
)
def test_calls_needed_for_each_statistic(slos: str, needed: int) -> None:
    assert calls_needed(parse_slos([slos])) == needed


def stage_row(ttfts: list[float], label: str = "r4") -> dict[str, object]:
    """The stage's row as the real StageAnalysis computes it from one call per TTFT value."""
    records = [
        CallRecord(
            call_id=str(i),
            scenario="chat",
            model="m",
            stream=True,
            outcome="ok",
            stage=label,
            t_scheduled=10.0 + i * 0.1,
            t_start=10.0 + i * 0.1,
            t_first_token=10.0 + i * 0.1 + ttft,
            t_end=10.5 + i * 0.1 + ttft,
            ttft_s=ttft,
            completion_s=0.5 + ttft,
            output_tokens=20,
        )
        for i, ttft in enumerate(ttfts)
    ]
    stage = Stage(label, 0, "rate", 4.0, 9.0, 0.0, 20.0)
    return StageAnalysis.from_records(records, [stage]).rows()[0]


def test_judge_reads_a_real_stage_row_and_flags_too_few_calls() -> None:
    slos = parse_slos([SLO_TEXT])
    fast = judge(4.0, stage_row([0.2] * 25), slos)
    assert fast.passed and fast.meaningful and fast.ok_calls == 25 and fast.stage == "r4"
    slow = judge(4.0, stage_row([0.2] * 20 + [1.5] * 5), slos)
    assert not slow.passed and slow.breaches == (SLO_TEXT,)
    assert "breached" in slow.details[0]
    short = judge(4.0, stage_row([0.2] * 12), slos)
    assert short.passed and not short.meaningful and (short.ok_calls, short.needed_calls) == (12, 20)
    search = CapacitySearch(SearchConfig(LoadKind.RATE, 4.0, max_probes=1))
    search.record(short)
    assert search.result().answer.endswith("; too few ok calls for the SLO statistics at 4 req/s (12 of 20)")


def test_clear_breach_needs_enough_calls_and_a_wide_margin() -> None:
    slos = parse_slos([SLO_TEXT, "error_rate<50%"])
    assert clear_breach(stage_row([0.2] * 18 + [2.0] * 7), slos) == (SLO_TEXT,)  # p95 2 s: 2.5x the limit
    assert clear_breach(stage_row([0.2] * 18 + [0.9] * 7), slos) == ()  # breached, but only by 12 %
    assert clear_breach(stage_row([2.0] * 10), slos) == ()  # too few calls to say
