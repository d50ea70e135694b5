"""Measured calls against a scripted loopback SSE server with known timing and faults.

Tolerances are loose enough for a busy 2-core machine but tight enough to catch a wrong
definition: TTFT stamped at the response headers or at message_start would be ~0 ms,
not ~200 ms; completion measured to the first token would miss the 190 ms of deltas.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import AnthropicUser, HarnessOptions

from .locust_runs import read_jsonl, run_local


def scenario(model: str, *, stream: bool = True) -> type[AnthropicUser]:
    return type(
        f"S_{model}",
        (AnthropicUser,),
        {"model": model, "prompt": "hi", "max_tokens": 64, "stream": stream, "__module__": __name__},
    )


def test_scripted_timing_is_measured_as_metrics_md_defines(scripted_url: str, tmp_path: Path) -> None:
    user = scenario("timed")
    run = run_local([user], scripted_url, seconds=1.6, options=HarnessOptions(report_dir=str(tmp_path)))
    done = [r for r in run.records if r.outcome == "ok"]
    assert done, run.records
    for r in done:
        assert 0.195 <= r.ttft_s <= 0.30, r.ttft_s  # type: ignore[operator]
        assert 0.385 <= r.completion_s <= 0.55, r.completion_s
        assert r.t_first_token - r.t_message_start >= 0.15  # type: ignore[operator]
        assert r.output_tokens == 20 and r.input_tokens == 12
        assert len(r.itl_s) == 19
        assert 0.009 <= sum(r.itl_s) / len(r.itl_s) <= 0.02
        assert r.stop_reason == "end_turn" and r.request_id == "req_timed"
        assert r.t_first_text == r.t_first_token
        assert r.tpot_s == pytest.approx((r.t_end - r.t_first_token) / 19)  # type: ignore[operator]
        assert r.output_tps == pytest.approx(19 / (r.t_last_token - r.t_first_token))  # type: ignore[operator]
        assert r.t_scheduled == r.t_start and r.queue_s >= 0
    ttft_row = run.stats_row(user.__name__, "TTFT")
    completion_row = run.stats_row(user.__name__, "COMPLETION")
    calls = len(run.records) - sum(r.outcome == "cancelled" for r in run.records)
    # The Aggregated row counts each call once, not once per row.
    assert run.env.stats.total.num_requests == completion_row.num_requests == calls
    assert ttft_row.num_requests == len(done)
    assert 190 <= ttft_row.median_response_time <= 300
    lines = read_jsonl(tmp_path / "requests.jsonl")
    assert [line["call_id"] for line in lines] == [r.call_id for r in run.records]


def test_thinking_first_token_comes_before_first_text(scripted_url: str) -> None:
    run = run_local([scenario("thinking")], scripted_url, seconds=0.6)
    r = next(r for r in run.records if r.ok)
    assert 0.095 <= r.ttft_s <= 0.25  # type: ignore[operator]
    assert r.t_first_text - r.t_first_token >= 0.05  # type: ignore[operator]
    assert len(r.itl_s) == 9  # 5 thinking + 5 text deltas; the signature is not content


def test_non_streaming_call_has_completion_and_no_ttft(scripted_url: str) -> None:
    user = scenario("whole", stream=False)
    run = run_local([user], scripted_url, seconds=0.5)
    r = next(r for r in run.records if r.ok)
    assert r.ttft_s is None and r.itl_s == [] and r.tpot_s is None
    assert 0.145 <= r.completion_s <= 0.3
    assert r.output_tokens == 7
    assert run.stats_row(user.__name__, "TTFT") is None


@pytest.mark.parametrize(
    ("model", "outcome", "status"),
    [
        ("http_429", "http_429", 429),
        ("http_529", "http_529", 529),
        ("http_500", "http_500", 500),
        ("midstream", "stream_overloaded_error", 200),
        ("drop", "connection", 200),
        ("malformed", "protocol", 200),
        ("no_stop", "protocol", 200),
        ("out_of_order", "protocol", 200),
    ],
)
def test_each_fault_is_a_classified_failure_and_the_run_goes_on(
    scripted_url: str, model: str, outcome: str, status: int
) -> None:
    user = scenario(model)
    run = run_local([user], scripted_url, seconds=0.5)
    finished = [r for r in run.records if r.outcome != "cancelled"]
    assert len(finished) >= 2, "the user must keep calling after a failure"
    assert {r.outcome for r in finished} == {outcome}
    assert all(r.http_status == status for r in finished)
    row = run.stats_row(user.__name__, "COMPLETION")
    assert row.num_failures == row.num_requests == len(finished)
    [error] = run.env.stats.errors.values()
    assert str(error.error).startswith(outcome)
    if model == "http_429":
        assert finished[0].retry_after_s == 3.0


def test_stall_is_a_timeout(scripted_url: str) -> None:
    run = run_local([scenario("stall")], scripted_url, seconds=0.9, options=HarnessOptions(request_timeout=0.3))
    finished = [r for r in run.records if r.outcome != "cancelled"]
    assert finished and {r.outcome for r in finished} == {"timeout"}
    assert all(0.3 <= r.completion_s < 1.0 for r in finished)


def test_a_server_without_usage_gives_null_tokens(scripted_url: str) -> None:
    run = run_local([scenario("no_usage")], scripted_url, seconds=0.3)
    r = next(r for r in run.records if r.ok)
    assert r.output_tokens is None and r.input_tokens is None and r.tpot_s is None


def test_unreachable_host_is_a_connection_failure() -> None:
    run = run_local([scenario("timed")], "http://127.0.0.1:9", seconds=0.3)
    finished = [r for r in run.records if r.outcome != "cancelled"]
    assert finished and {r.outcome for r in finished} == {"connection"}


def test_a_call_in_flight_at_stop_is_recorded_as_cancelled(scripted_url: str, tmp_path: Path) -> None:
    run = run_local(
        [scenario("stall")], scripted_url, users=3, seconds=0.5, options=HarnessOptions(report_dir=str(tmp_path))
    )
    assert [r.outcome for r in run.records] == ["cancelled"] * 3
    lines = read_jsonl(tmp_path / "requests.jsonl")
    assert [line["outcome"] for line in lines] == ["cancelled"] * 3
    assert run.env.stats.total.num_requests == 0
    summary = (tmp_path / "summary.json").read_text()
    assert '"cancelled": 3' in summary


def test_a_scenario_with_its_own_task_does_not_also_run_the_default_call(scripted_url: str) -> None:
    from locust import task

    class TwoCalls(AnthropicUser):
        model = "timed"

        @task
        def pair(self) -> None:
            self.messages("first", name="first")
            self.messages("second", name="second")

    run = run_local([TwoCalls], scripted_url, seconds=1.2)
    names = [r.scenario for r in run.records]
    assert names[:2] == ["first", "second"]
    assert "TwoCalls" not in names
    TwoCalls.validate()  # no prompt needed when the scenario brings its own tasks
