"""The fault matrix and visible retries, against the simulator's faults at fixed seeds.

The simulator draws each request's fault from an RNG seeded by (seed, arrival number),
so a run of exactly N requests meets the same faults whatever the users' interleaving:
the counts per outcome class below are exact. Every call must end in exactly one record
of the right class, every user must make all its calls, and Locust's failure table,
``requests.jsonl`` and ``summary.json`` must agree.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import gevent
import pytest
from locust.env import Environment
from locust.exception import StopUser

from harness import AnthropicUser, CallRecord, HarnessOptions, attach
from harness.monitors import ratelimits
from harness.runtime import retries as retries_module
from harness.runtime.retries import RetryPolicy, is_retryable
from harness.simulator.launcher import SimulatorProcess

from .locust_runs import read_jsonl

FAULT_ARGS = [
    "--seed", "13", "--ttft", "0.02", "--tps", "2000",
    "--fault-overloaded", "0.08", "--fault-api-error", "0.08", "--fault-rate-limit", "0.08",
    "--fault-stream-error", "0.08", "--fault-drop", "0.08", "--fault-stall", "0.08",
    "--fault-slow-headers", "0.08", "--stall-seconds", "0.5", "--slow-headers-seconds", "1.5",
    "--retry-after", "1", "--rate-limit-tier", "tier4",
]  # fmt: skip

USERS = 4
CALLS_PER_USER = 15

# Exact at --seed 13 for 60 requests (the simulator draws faults from (seed, arrival number) alone).
# A slow head (1.5 s) outlasts --request-timeout (1 s): timeout. A stall (0.5 s) does not: those
# calls are ok, with one long inter-token gap.
EXPECTED_MATRIX = Counter(
    {
        "ok": 36,  # of which EXPECTED_STALLED had a stall fault
        "http_529": 4,  # overloaded
        "http_500": 5,  # api_error
        "http_429": 4,  # rate_limit
        "stream_overloaded_error": 2,  # stream_error
        "connection": 5,  # drop
        "timeout": 4,  # slow_headers
    }
)
EXPECTED_STALLED = 3


@pytest.fixture(scope="module")
def faulty_sim() -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(FAULT_ARGS)
    sim.start()
    yield sim
    sim.stop()


class FixedCalls(AnthropicUser):
    """Makes exactly ``calls`` calls, then stops: the run sends a known number of requests."""

    abstract = True
    model = "claude-haiku-4-5"
    max_tokens = 64
    prompt = "Say something short."
    calls: ClassVar[int] = CALLS_PER_USER

    def on_start(self) -> None:
        self.done = 0

    def run_one(self) -> None:
        if self.done >= self.calls:
            raise StopUser()
        self.done += 1
        self.one_call()

    def one_call(self) -> None:
        self.messages()


# Replaces AnthropicUser's default task (Locust adds a base class's tasks to a subclass's own).
FixedCalls.tasks = [FixedCalls.run_one]


def run_calls(
    user_class: type[AnthropicUser],
    url: str,
    *,
    users: int,
    expected_records: int | None,
    options: HarnessOptions,
    policy: RetryPolicy | None = None,
    limit_s: float = 60.0,
) -> tuple[Environment, list[CallRecord]]:
    """A real LocalRunner until ``expected_records`` arrived (or every user stopped)."""
    env = Environment(user_classes=[user_class], host=url)
    env.create_local_runner()
    harness = attach(env, options)
    harness.transport(url)
    if policy is not None:
        harness.install(retries_module.FEATURE, policy)
    harness.install(ratelimits.FEATURE)
    records: list[CallRecord] = []
    env.events.llm_request.add_listener(lambda record, **_: records.append(record))  # type: ignore[attr-defined]
    assert env.runner is not None
    env.runner.start(users, spawn_rate=users * 10)
    deadline = time.monotonic() + limit_s
    gevent.sleep(0.5)
    while time.monotonic() < deadline:
        if expected_records is not None and len(records) >= expected_records:
            break
        if env.runner.user_count == 0:
            break
        gevent.sleep(0.1)
    env.runner.quit()
    return env, records


def locust_failures(env: Environment) -> Counter[str]:
    """Locust's failure table as {outcome class: occurrences}."""
    out: Counter[str] = Counter()
    for entry in env.stats.errors.values():
        # Locally the error is the exception; after a worker-to-master trip, its repr.
        match = re.match(r"CallError\('([a-z_0-9]+)", repr(entry.error))
        assert match, entry.error
        out[match.group(1)] += entry.occurrences
    return out


def test_fault_matrix_every_call_one_record_of_the_right_class(faulty_sim: SimulatorProcess, tmp_path: Path) -> None:
    assert faulty_sim.url is not None
    options = HarnessOptions(request_timeout=1.0, report_dir=str(tmp_path))
    total = USERS * CALLS_PER_USER
    env, records = run_calls(FixedCalls, faulty_sim.url, users=USERS, expected_records=total, options=options)

    outcomes = Counter(r.outcome for r in records)
    print("fault matrix:", dict(outcomes))
    assert len(records) == total and len({r.call_id for r in records}) == total
    assert outcomes == EXPECTED_MATRIX
    # Every user kept going through its faults and made all its calls.
    assert sorted(Counter(r.user_id for r in records).values()) == [CALLS_PER_USER] * USERS
    assert env.runner is not None and not env.runner.exceptions

    # The right class, not just the right count: each class carries its evidence.
    for r in records:
        if r.outcome.startswith("http_"):
            assert r.http_status == int(r.outcome[5:]) and r.ttft_s is None
        if r.outcome == "http_429":
            assert r.retry_after_s == 1.0
        if r.outcome in ("stream_overloaded_error", "connection"):
            assert r.http_status == 200 and r.t_message_start is not None
        if r.outcome == "ok":
            assert r.output_tokens and r.stop_reason
    stalled = [r for r in records if r.ok and max(r.itl_s, default=0.0) >= 0.45]
    print("stalled:", len(stalled))
    assert len(stalled) == EXPECTED_STALLED, "each stall fault is an ok call with one long inter-token gap"

    # Locust's failure table, requests.jsonl and summary.json agree.
    failures = {k: v for k, v in outcomes.items() if k != "ok"}
    assert locust_failures(env) == failures
    lines = read_jsonl(tmp_path / "requests.jsonl")
    assert Counter(line["outcome"] for line in lines) == outcomes
    harness = attach(env)
    summary = harness.last_summary
    assert summary is not None
    assert summary["overall"]["calls"] == total and summary["overall"]["ok"] == outcomes["ok"]
    assert summary["overall"]["errors"] == failures
    completion = env.stats.get("FixedCalls", "COMPLETION")
    assert (completion.num_requests, completion.num_failures) == (total, sum(failures.values()))

    # Rate-limit budgets (the simulator's tier 4) reached the summary.
    limits = summary["ratelimits"]
    assert limits["calls_with_headers"] >= outcomes["ok"]
    assert limits["last"]["requests_limit"] == 4000
    assert limits["lowest_remaining"]["requests_remaining"] < 4000


class ThreeCalls(FixedCalls):
    calls = 12


def test_retries_are_separate_linked_records(faulty_sim: SimulatorProcess) -> None:
    assert faulty_sim.url is not None
    policy = RetryPolicy(retries=2, backoff_s=0.02, max_wait_s=0.1)  # caps the 1 s retry-after
    env, records = run_calls(
        ThreeCalls, faulty_sim.url, users=1, expected_records=None, options=HarnessOptions(request_timeout=1.0),
        policy=policy,
    )  # fmt: skip
    assert env.runner is not None and not env.runner.exceptions
    chains: dict[str, list[CallRecord]] = {}
    for r in records:
        chains.setdefault(r.retry_of or r.call_id, []).append(r)
    assert len(chains) == ThreeCalls.calls
    retried = 0
    for chain in chains.values():
        assert [r.attempt for r in chain] == list(range(1, len(chain) + 1))
        assert all(r.retry_of == chain[0].call_id for r in chain[1:])
        for before, after in itertools.pairwise(chain):
            assert is_retryable(before)
            waited = after.t_start - before.t_end
            expected = policy.delay(before.attempt, before.retry_after_s)
            assert waited >= expected - 0.005, (waited, expected)
        last = chain[-1]
        assert last.ok or not is_retryable(last) or last.attempt == policy.retries + 1
        retried += len(chain) > 1
    assert retried > 0, "the fault rates should make some calls retry"

    summary = attach(env).last_summary
    assert summary is not None
    section = summary["retries"]
    assert section["attempts"] == len(records) and section["calls"] == ThreeCalls.calls
    assert section["retried_calls"] == retried
    assert section["recovered"] + section["exhausted"] == retried
    # Every attempt is in Locust's table too: retried latency is never hidden.
    assert env.stats.get("ThreeCalls", "COMPLETION").num_requests == len(records)
    e2e = section["end_to_end_s"]
    assert e2e["count"] == sum(1 for c in chains.values() if c[-1].ok)


class AlwaysLimited(FixedCalls):
    calls = 1

    def one_call(self) -> None:
        self.messages(extra_headers={"x-simulator-fault": "rate_limit"})


def test_a_retry_waits_for_retry_after(faulty_sim: SimulatorProcess) -> None:
    assert faulty_sim.url is not None
    policy = RetryPolicy(retries=1, backoff_s=0.01, max_wait_s=5.0)
    _, records = run_calls(
        AlwaysLimited, faulty_sim.url, users=1, expected_records=2, options=HarnessOptions(), policy=policy
    )
    assert [(r.attempt, r.outcome) for r in records] == [(1, "http_429"), (2, "http_429")]
    assert records[0].retry_after_s == 1.0
    assert records[1].t_start - records[0].t_end >= 1.0
