"""The interleaved block schedule of a study, and the lever catalogue it runs."""

from __future__ import annotations

import importlib
import itertools
from collections import Counter
from pathlib import Path

import pytest

from harness.core.compare import ArmValue, Comparison, Interval, Method, Metric, Stat, Verdict
from harness.core.errors import ConfigError
from harness.core.schedule import (
    LEVERS,
    Agreement,
    Direction,
    ad_hoc_lever,
    agreement,
    blocks,
    lever_arms,
    rounds,
    select_levers,
)

ARMS = ["A", "B", "C", "D"]
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_every_round_runs_each_arm_twice_and_mirrors_itself() -> None:
    for order in itertools.islice(rounds(ARMS, seed=5), 50):
        assert Counter(order) == {arm: 2 for arm in ARMS}
        assert order == order[::-1]  # A B B A: a linear drift within the round adds the same to every arm
        positions = {arm: sum(i for i, x in enumerate(order) if x == arm) for arm in ARMS}
        assert set(positions.values()) == {len(order) - 1}


def test_the_orders_are_random_and_reproducible_by_seed() -> None:
    first = list(itertools.islice(rounds(ARMS, seed=1), 40))
    assert first == list(itertools.islice(rounds(ARMS, seed=1), 40))
    assert first != list(itertools.islice(rounds(ARMS, seed=2), 40))
    # Over many rounds every arm opens a round about equally often.
    assert min(Counter(order[0] for order in first).values()) >= 4


def test_blocks_number_the_schedule_and_a_longer_study_starts_the_same() -> None:
    three = list(blocks(["X", "Y"], seed=9, count=3))
    assert [b.index for b in three] == list(range(12))
    assert [b.round for b in three] == [0] * 4 + [1] * 4 + [2] * 4
    assert list(itertools.islice(blocks(["X", "Y"], seed=9), 12)) == three  # --precision may add rounds


@pytest.mark.parametrize(("arms", "message"), [(["A"], "two or more arms"), (["A", "B", "A"], "named twice")])
def test_bad_arms_are_config_errors(arms: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        next(rounds(arms, seed=0))


def _scenario_classes() -> set[str]:
    names = set()
    for path in SCENARIOS.glob("*.py"):
        module = importlib.import_module(f"scenarios.{path.stem}")
        names |= {name for name, value in vars(module).items() if isinstance(value, type) and not name.startswith("_")}
    return names


def test_every_lever_arm_is_a_scenario_class_and_every_prediction_a_compared_metric() -> None:
    classes = _scenario_classes()
    assert set(lever_arms(LEVERS)) <= classes
    for lever in LEVERS:
        for pair in lever.pairs:
            assert {p.metric for p in pair.predictions} <= set(lever.metrics), lever.key
    keys = [lever.key for lever in LEVERS]
    assert keys == [
        "control",
        "model",
        "max_tokens",
        "answer_length",
        "prompt_length",
        "streaming",
        "caching",
        "thinking",
    ]
    streaming = select_levers(["streaming"])[0]
    assert streaming.pairs[0].predicted(Metric.PERCEIVED) is Direction.LOWER
    assert streaming.pairs[0].predicted(Metric.COMPLETION) is Direction.UNCHANGED
    assert Metric.TTFT not in streaming.metrics  # a call that is not streamed has no TTFT


def test_unknown_levers_and_ad_hoc_arms() -> None:
    with pytest.raises(ConfigError, match="unknown lever 'speed'"):
        select_levers(["model", "speed"])
    lever = ad_hoc_lever(["Base", "X", "Y"])
    assert [(p.a, p.b) for p in lever.pairs] == [("Base", "X"), ("Base", "Y")] and lever.arms == ["Base", "X", "Y"]


def _with(relative_ci: tuple[float, float]) -> Comparison:
    low, high = relative_ci
    verdict = Verdict.HIGHER if low > 0 else Verdict.LOWER if high < 0 else Verdict.NO_DIFFERENCE
    return Comparison(
        Metric.TTFT,
        Stat.P50,
        ArmValue("a", 1.0, 100),
        ArmValue("b", 1 + (low + high) / 2, 100),
        (low + high) / 2,
        (low + high) / 2,
        Interval(low, high),
        Interval(low, high),
        verdict,
        Method.CALLS,
        None,
        2000,
    )


@pytest.mark.parametrize(
    ("predicted", "ci", "expected"),
    [
        (Direction.LOWER, (-0.45, -0.37), Agreement.AGREES),
        (Direction.LOWER, (0.02, 0.08), Agreement.CONTRADICTS),
        (Direction.LOWER, (-0.03, 0.04), Agreement.INCONCLUSIVE),
        (Direction.HIGHER, (0.02, 0.08), Agreement.AGREES),
        (Direction.UNCHANGED, (-0.03, 0.04), Agreement.AGREES),
        (Direction.UNCHANGED, (0.02, 0.08), Agreement.AGREES),  # real but small: "barely moves"
        (Direction.UNCHANGED, (0.12, 0.30), Agreement.CONTRADICTS),
        (Direction.UNCHANGED, (-0.25, 0.20), Agreement.INCONCLUSIVE),  # too wide to tell
    ],
)
def test_a_prediction_beside_what_was_measured(
    predicted: Direction, ci: tuple[float, float], expected: Agreement
) -> None:
    assert agreement(predicted, _with(ci)) is expected
