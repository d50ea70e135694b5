"""The live window: exact figures over the last seconds only, in bounded memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.measure import OK, CallRecord
from harness.core.summary import SampleStore
from harness.core.window import RESERVOIR_MIN, RecentWindow, Scope


class Clock:
    """A hand-moved clock, so the test says exactly which second each call ended in."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def call(scenario: str, ttft: float, outcome: str = OK, itl: tuple[float, ...] = (0.01, 0.02)) -> CallRecord:
    return CallRecord(
        "c", scenario, "m", True, outcome, ttft_s=ttft, completion_s=ttft + 1, itl_s=list(itl), output_tokens=3
    )


@settings(max_examples=60, deadline=None)
@given(
    ends=st.lists(
        st.tuples(st.floats(0, 90), st.sampled_from(["a", "b"]), st.floats(0, 5), st.sampled_from([OK, "http_429"])),
        max_size=60,
    ),
    span=st.sampled_from([None, 10.0, 1.0]),
)
def test_window_figures_are_the_store_figures_of_the_window_calls(
    ends: list[tuple[float, str, float, str]], span: float | None
) -> None:
    clock = Clock()
    window = RecentWindow(30.0, clock=clock)
    start = clock.now
    for offset, scenario, ttft, outcome in sorted(ends):
        clock.now = start + offset
        window.add(call(scenario, ttft, outcome))
    clock.now = start + 90.5
    # Slot-aligned: the last 30 (or span) one-second slots, the current one included.
    first = int(clock.now) - int(span or 30) + 1
    expected = SampleStore()
    for offset, scenario, ttft, outcome in ends:
        if int(start + offset) >= first:
            expected.add(call(scenario, ttft, outcome))
    doc = window.summary(span, duration_s=7.0)
    assert doc.pop("scope") == Scope.WINDOW.value and doc.pop("span_s") == (span or 30.0)
    assert doc.pop("exact") is True
    assert doc == expected.summary(duration_s=7.0)


def test_old_calls_leave_the_window() -> None:
    clock = Clock()
    window = RecentWindow(30.0, clock=clock)
    window.add(call("a", 0.5))
    clock.now += 29
    assert window.summary()["overall"]["calls"] == 1
    clock.now += 1.5
    assert window.summary()["overall"]["calls"] == 0
    assert window.summary()["overall"]["ttft_s"]["p50"] is None


def test_past_its_budget_a_window_samples_but_counts_every_call() -> None:
    clock = Clock()
    window = RecentWindow(10.0, clock=clock, max_values=20_000)  # 2000 samples a slot
    for i in range(2000):
        window.add(call("a", i / 1000, itl=(0.01,) * 5))
    doc = window.summary()
    assert doc["exact"] is False
    assert doc["overall"]["calls"] == 2000 and doc["overall"]["output_tokens"] == 6000
    kept = sum(doc["overall"][f"{m}_s"]["count"] for m in ("ttft", "completion", "itl"))
    # 14,000 samples arrived; kept: the budget, one call's overshoot, each array's floor.
    assert kept <= 2000 + 7 + 3 * RESERVOIR_MIN
    # A uniform sample of 0..2 s: its median is near 1 s, not near the first calls' 0.05 s.
    assert 0.6 < doc["overall"]["ttft_s"]["p50"] < 1.4
