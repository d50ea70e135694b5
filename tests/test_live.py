"""Live figures (harness.monitors.live) from real in-process Locust runs against loopback servers.

Rate-limit headroom from real ``anthropic-ratelimit-*`` headers, the recent window, stages
and the time series, and calls in flight on workers reaching the master.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from locust.env import Environment

from harness import AnthropicUser, CallRecord, HarnessOptions, attach
from harness.core.ratelimits import parse_ratelimit
from harness.monitors import live as live_feature
from harness.monitors.live import LiveStats, live_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ratelimit_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ratelimit_server.py")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "http://" in line, line
    yield line.split()[-1]
    proc.terminate()
    proc.wait(timeout=5)


class Limited(AnthropicUser):
    model = "rl-model"
    max_tokens = 16
    prompt = "hi"


class Throttled(AnthropicUser):
    model = "http_429"
    max_tokens = 16
    prompt = "hi"


def local_env(user_classes: list[type[AnthropicUser]], host: str) -> tuple[Environment, list[CallRecord]]:
    env = Environment(user_classes=list(user_classes), host=host)
    env.create_local_runner()
    attach(env, HarnessOptions()).transport(host)
    records: list[CallRecord] = []
    env.events.llm_request.add_listener(lambda record, **_: records.append(record))  # type: ignore[attr-defined]
    return env, records


def test_parse_ratelimit_groups_by_dimension() -> None:
    parsed = parse_ratelimit({"requests_limit": 50, "requests_remaining": 7, "input_tokens_reset": 1893456000, "x": 1})
    assert parsed == {"requests": {"limit": 50, "remaining": 7}, "input_tokens": {"reset": "2030-01-01T00:00:00Z"}}


def test_headroom_from_ratelimit_headers_of_ok_and_429_calls(ratelimit_url: str) -> None:
    env, records = local_env([Limited, Throttled], ratelimit_url)
    live = live_of(env)
    assert env.runner is not None
    env.runner.start(2, spawn_rate=20)
    gevent.sleep(1.5)
    env.runner.quit()

    finished = [r for r in records if r.outcome != "cancelled"]
    assert {r.outcome for r in finished} == {"ok", "http_429"}
    for record in finished:
        assert record.ratelimit is not None
        assert record.ratelimit["requests_limit"] == 100
    stats = live.snapshot()
    assert stats["total"]["run"]["errors"]["http_429"] == sum(r.outcome == "http_429" for r in records)
    for model in ("rl-model", "http_429"):
        # Every record with headers counts, a call cancelled mid-stream at the stop too.
        remaining = [r.ratelimit["requests_remaining"] for r in records if r.model == model and r.ratelimit]
        assert remaining, model
        entry = stats["ratelimit"][model]["requests"]
        assert entry["limit"] == 100
        assert entry["remaining"] == remaining[-1]  # the latest call's headers
        assert entry["headroom"] == pytest.approx(remaining[-1] / 100)
        assert entry["lowest_headroom"] == pytest.approx(min(remaining) / 100)
        assert stats["ratelimit"][model]["output_tokens"]["limit"] == 10000


def test_window_stages_and_series(ratelimit_url: str) -> None:
    env, records = local_env([Limited], ratelimit_url)
    live = LiveStats(env, window_s=1.0, tick_s=0.2)
    harness = attach(env)
    assert env.runner is not None
    harness.stage = "one-user"
    env.runner.start(1, spawn_rate=10)
    gevent.sleep(1.5)
    harness.stage = "three-users"
    env.runner.start(3, spawn_rate=30)
    gevent.sleep(1.5)
    running = live.snapshot(max_age_s=0)
    # Run-wide percentiles come from a background reduction of the spilled samples: wait for one.
    deadline = time.monotonic() + 10
    reduced = running
    while reduced["run_percentiles_at_s"] is None and time.monotonic() < deadline:
        gevent.sleep(0.05)
        reduced = live.snapshot(max_age_s=0)
    env.runner.quit()

    finished = [r for r in records if r.outcome != "cancelled"]
    # The window holds only the last second; the run holds everything.
    assert running["window_s"] == pytest.approx(1.0)
    assert running["window_exact"] is True
    at = reduced["run_percentiles_at_s"]
    assert at is not None and 0 < at <= reduced["elapsed_s"]
    assert reduced["total"]["run"]["ttft_s"]["p50"] is not None
    # Counts are current even where the percentiles are a reduction's.
    assert reduced["total"]["run"]["ttft_s"]["count"] >= reduced["total"]["run"]["ok"] > 0
    stopped = live.snapshot(max_age_s=0)
    assert harness.last_summary is not None
    assert stopped["run_percentiles_at_s"] == harness.last_summary["duration_s"]
    assert stopped["total"]["run"] == harness.last_summary["overall"]
    assert 0 < running["total"]["window"]["calls"] < running["total"]["run"]["calls"]
    stages = {s["stage"]: s for s in live.snapshot(max_age_s=0)["stages"]}
    assert list(stages) == ["one-user", "three-users"]
    for name, stage in stages.items():
        assert stage["calls"] == sum(r.stage == name for r in records)
        assert stage["duration_s"] == pytest.approx(1.5, abs=0.5)
        assert stage["requests_per_s"] == pytest.approx(stage["calls"] / stage["duration_s"])
    assert sum(s["calls"] for s in stages.values()) == len(records)
    series = running["series"]
    assert next(p["stage"] for p in series) == "one-user" and series[-1]["stage"] == "three-users"
    assert series[-1]["users"] == 3
    assert all(p["t"] < q["t"] for p, q in itertools.pairwise(series))
    assert len(finished) >= 10


def test_worker_in_flight_reaches_the_master(scripted_url: str) -> None:
    class Stalled(AnthropicUser):
        model = "stall"  # message_start, then 5 s of silence: every call stays in flight
        max_tokens = 16
        prompt = "hi"

    master_env = Environment(user_classes=[Stalled], host=scripted_url)
    master = master_env.create_master_runner("127.0.0.1", 0)
    attach(master_env, HarnessOptions())
    live = live_of(master_env)
    worker_env = Environment(user_classes=[Stalled], host=scripted_url)
    worker = worker_env.create_worker_runner("127.0.0.1", master.server.port)
    worker_harness = attach(worker_env, HarnessOptions())
    worker_harness.transport(scripted_url)
    worker_harness.install(live_feature.FEATURE)
    try:
        deadline = gevent.get_hub().loop.now() + 10
        while master.worker_count < 1:
            assert gevent.get_hub().loop.now() < deadline, "worker did not connect"
            gevent.sleep(0.1)
        master.start(3, spawn_rate=30)
        counts: dict[str, Any] = {}
        while gevent.get_hub().loop.now() < deadline + 5:
            counts = live.in_flight()
            if counts.get("Stalled") == 3:
                break
            gevent.sleep(0.2)
        assert counts == {"Stalled": 3}
        assert live.snapshot(max_age_s=0)["total"]["in_flight"] == 3
    finally:
        master.quit()
        worker.quit()
