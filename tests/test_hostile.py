"""Hostile and broken streams: each is one classified failed call, bounded in memory and time.

The server is ``tests/hostile_server.py`` in its own process. Every hostile scenario
makes exactly one call (a long ``wait_time``) beside a control scenario that keeps
calling, so the test also shows the run and its other users going on. A property-based
test feeds random splits and corruptions of real transcripts to the parser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from locust import constant

from harness import AnthropicUser, HarnessOptions
from harness.core.errors import CallError, ProtocolError
from harness.core.measure import CallMeasurement
from harness.core.stream_events import iter_stream_events

from .conftest import ROOT, _start
from .hostile_server import good_stream
from .locust_runs import read_jsonl, run_local
from .test_sse import TRANSCRIPT

EXPECTED = {
    "garbage": "protocol",
    "truncated_utf8": "protocol",
    "huge_line": "protocol",
    "huge_event": "protocol",
    "out_of_order": "protocol",
    "no_stop": "protocol",
    "never_close": "timeout",
    "trickle": "timeout",
    "html": "protocol",
    "json_body": "protocol",
    "gzip_undeclared": "protocol",
    "gzip_declared": "ok",
    "gzip_bomb": "protocol",
    "slow_headers": "timeout",
    "reset": "connection",
    "echo_key": "http_401",
}


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    proc, url = _start([str(ROOT / "tests" / "hostile_server.py")])
    yield url
    proc.terminate()
    proc.wait(timeout=5)


def _scenario(case: str) -> type[AnthropicUser]:
    # One call per hostile user: wait_time keeps it from calling again within the run.
    attrs = {"model": case, "max_tokens": 16, "prompt": "hi", "wait_time": constant(60), "scenario_name": case}
    return type(f"Hostile_{case}", (AnthropicUser,), attrs)


class Control(AnthropicUser):
    model = "ok"
    max_tokens = 16
    prompt = "hi"


def test_every_hostile_stream_is_one_classified_failure_and_the_run_goes_on(hostile_url: str) -> None:
    users = [_scenario(case) for case in EXPECTED]
    options = HarnessOptions(request_timeout=1.5, call_timeout=2.5)
    run = run_local([*users, Control], hostile_url, users=len(users) + 1, seconds=4.0, options=options)

    by_scenario: dict[str, list[str]] = {}
    for record in run.records:
        by_scenario.setdefault(record.scenario, []).append(record.outcome)
    for case, outcome in EXPECTED.items():
        assert by_scenario.get(case) == [outcome], (case, [r.error_message for r in run.records if r.scenario == case])
    control = Counter(by_scenario["Control"])
    assert control["ok"] >= 5 and set(control) <= {"ok", "cancelled"}, control

    # Never a crash: nothing escaped into Locust's exceptions, and its failure table agrees.
    assert run.env.runner is not None and not run.env.runner.exceptions
    failures = Counter()
    for entry in run.env.stats.errors.values():
        failures[entry.name] += entry.occurrences
    assert failures == Counter({case: 1 for case, outcome in EXPECTED.items() if outcome != "ok"})
    # The key the SDK sent is never echoed back into a record (the simulator placeholder here).
    echo = next(r for r in run.records if r.scenario == "echo_key")
    assert echo.error_message is not None and "invalid x-api-key" in echo.error_message


HUGE_LOCUSTFILE = """
from locust import constant
from harness import AnthropicUser
import harness.transports.sdk  # the SDK's import (seconds on a busy machine) before the run clock starts

def one_call(case):
    return type(case, (AnthropicUser,), {"model": case, "max_tokens": 16, "prompt": "hi", "wait_time": constant(60)})

HugeLine = one_call("huge_line")
HugeEvent = one_call("huge_event")
GzipBomb = one_call("gzip_bomb")
"""


def test_huge_streams_keep_memory_bounded(hostile_url: str, tmp_path: Path) -> None:
    # 64 MiB without a newline, 64 MiB of data lines without a blank line, and a gzip bomb
    # of 256 MiB: an unbounded decoder would hold them; the bounded one stops at 8 MiB.
    (tmp_path / "huge.py").write_text(HUGE_LOCUSTFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(ROOT)
    args = ["-f", str(tmp_path / "huge.py"), "--headless", "-u", "3", "-r", "3", "-t", "4s", "--stop-timeout", "10"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "locust", *args, "--host", hostile_url, "--report-dir", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "stderr.txt", "w"),  # noqa: SIM115  (closed with the process)
        stdin=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    # Locust's code for "some calls failed".
    assert proc.returncode == 1, (tmp_path / "stderr.txt").read_text()[-3000:]
    lines = read_jsonl(tmp_path / "out" / "requests.jsonl")
    assert sorted((line["model"], line["outcome"]) for line in lines) == [
        ("gzip_bomb", "protocol"),
        ("huge_event", "protocol"),
        ("huge_line", "protocol"),
    ]
    assert all("larger than" in line["error_message"] or "longer than" in line["error_message"] for line in lines)
    max_rss_mb = usage.ru_maxrss / 1024
    assert max_rss_mb < 250, f"locust used {max_rss_mb:.0f} MB"


# -- the parser on random splits and corruptions of real transcripts ---------------------------

TRANSCRIPTS = [TRANSCRIPT, good_stream(), TRANSCRIPT.replace(b"\n", b"\r\n")]

corruption = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("repeat"), st.integers(0, 10_000), st.integers(1, 200)),
)


def corrupt(data: bytes, edits: list[tuple[str, int, object]]) -> bytes:
    for kind, at, arg in edits:
        i = at % (len(data) + 1)
        if kind == "flip" and data:
            i = min(i, len(data) - 1)
            data = data[:i] + bytes([int(arg)]) + data[i + 1 :]  # type: ignore[call-overload]
        elif kind == "delete":
            data = data[:i] + data[i + int(arg) :]  # type: ignore[call-overload]
        elif kind == "insert":
            data = data[:i] + bytes(arg) + data[i:]  # type: ignore[call-overload]
        elif kind == "truncate":
            data = data[:i]
        elif kind == "repeat":
            data = data[:i] + data[i : i + int(arg)] + data[i:]  # type: ignore[call-overload]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(TRANSCRIPTS) - 1),
    edits=st.lists(corruption, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_corrupted_transcripts_only_ever_raise_protocol_errors(
    which: int, edits: list[tuple[str, int, object]], cuts: list[int]
) -> None:
    data = corrupt(TRANSCRIPTS[which], edits)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    try:
        events = list(iter_stream_events(chunks))
    except ProtocolError:
        return
    # What parses must also go through a call's measurement with only classified failures.
    measurement = CallMeasurement(scenario="fuzz", model="m", stream=True)
    try:
        for event in events:
            measurement.event(event)
        measurement.stream_ended()
    except CallError as exc:
        record = measurement.finish(exc.outcome, error_message=exc.reason)
        assert record.outcome == "protocol" or record.outcome.startswith("stream_")
        return
    assert measurement.finish().outcome == "ok"
