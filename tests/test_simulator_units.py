"""Unit tests of the simulator's pure parts: HTTP parser, model resolution, latency formulas, engine queue,
prompt cache, rate-limit buckets, plan (stop sequences, max_tokens) and config validation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.simulator.cache import PromptCache
from harness.simulator.config import SimulatorConfig, apply_file, load_config_file
from harness.simulator.faults import FaultConfig, FaultInjector
from harness.simulator.http import HttpError, RequestParser
from harness.simulator.messages import InvalidRequest, parse_messages_request
from harness.simulator.model import DEFAULT_PROFILES, Engine, build_profiles, resolve_model
from harness.simulator.plan import make_plan
from harness.simulator.ratelimit import RateLimiter, limits_from_config


def _request(body: bytes, path: str = "/v1/messages") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=4), st.integers(min_value=1, max_value=64))
def test_parser_any_split(bodies: list[bytes], step: int) -> None:
    data = b"".join(_request(b, f"/p{i}") for i, b in enumerate(bodies))
    parser = RequestParser(max_body=1000)
    got = []
    for i in range(0, len(data), step):
        got.extend(parser.feed(data[i : i + step]))
    assert [(r.path, r.body) for r in got] == [(f"/p{i}", b) for i, b in enumerate(bodies)]


def test_parser_oversized_body_is_skipped_not_stored() -> None:
    parser = RequestParser(max_body=10)
    reqs = parser.feed(_request(b"x" * 50) + _request(b"ok"))
    assert reqs[0].body_too_large and reqs[0].body == b""
    assert reqs[1].body == b"ok" and not reqs[1].body_too_large


def test_parser_rejects_garbage() -> None:
    with pytest.raises(HttpError):
        RequestParser(10).feed(b"NONSENSE\r\n\r\n")
    with pytest.raises(HttpError) as info:
        RequestParser(10).feed(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n")
    assert info.value.status == 411


def test_model_resolution_and_ordering() -> None:
    profiles = build_profiles()
    assert resolve_model("claude-haiku-4-5-20251001", profiles) is profiles["claude-haiku-4-5"]
    assert resolve_model("claude-3-7-sonnet-latest", profiles) is profiles["claude-sonnet-4-5"]
    assert resolve_model("claude-mythos-5", profiles) is None
    assert resolve_model("llama", profiles) is None
    haiku, sonnet, opus = (DEFAULT_PROFILES[f"claude-{f}-4-5"] for f in ("haiku", "sonnet", "opus"))
    # Fastest to slowest, as Anthropic's models overview orders the families.
    assert haiku.decode_tokens_per_s > sonnet.decode_tokens_per_s > opus.decode_tokens_per_s
    assert haiku.base_delay_s < sonnet.base_delay_s < opus.base_delay_s


def test_custom_model_and_unknown_parameter() -> None:
    profiles = build_profiles({"my-model": {"family": "opus", "max_batch": 3}})
    assert profiles["my-model"].max_batch == 3 and profiles["my-model"].family == "opus"
    with pytest.raises(ValueError, match="unknown profile parameter"):
        build_profiles({"claude-haiku-4-5": {"speed": 1}})
    with pytest.raises(ValueError, match="expected int"):
        build_profiles(all_models={"max_batch": "8"})
    with pytest.raises(ValueError, match="max_batch >= 1"):
        build_profiles(all_models={"max_batch": 0})


def test_step_time_formula() -> None:
    p = build_profiles(all_models={"decode_tokens_per_s": 100.0, "batch_slowdown": 0.1, "max_batch": 4})[
        "claude-haiku-4-5"
    ]
    assert p.step_time(1) == pytest.approx(0.01)
    assert p.step_time(3) == pytest.approx(0.012)
    assert p.aggregate_tokens_per_s(4) == pytest.approx(4 / 0.013)
    assert p.aggregate_tokens_per_s(10) == p.aggregate_tokens_per_s(4)  # capped at max_batch


class _Waiter:
    def __init__(self, log: list[str], name: str) -> None:
        self.abandoned = False
        self.log, self.name = log, name

    def on_slot(self) -> None:
        self.log.append(self.name)


def test_engine_fifo_and_abandoned_waiters() -> None:
    engine = Engine(build_profiles(all_models={"max_batch": 1})["claude-haiku-4-5"])
    log: list[str] = []
    a, b, c = (_Waiter(log, n) for n in "abc")
    assert engine.acquire(a) and not engine.acquire(b) and not engine.acquire(c)
    b.abandoned = True
    engine.release()
    assert log == ["c"] and engine.active == 1
    engine.release()
    assert engine.active == 0


def test_prompt_cache_prefixes() -> None:
    system = [{"type": "text", "text": "s" * 4000, "cache_control": {"type": "ephemeral"}}]
    body = {
        "model": "m",
        "max_tokens": 5,
        "system": system,
        "messages": [{"role": "user", "content": "q" * 40}],
    }
    req = parse_messages_request(body)
    cache = PromptCache()
    first = cache.apply("k", req.units, 1000, now=0.0)
    assert (first.read, first.created, first.uncached) == (0, 1000, 10)
    second = cache.apply("k", req.units, 1000, now=10.0)
    assert (second.read, second.created) == (1000, 0)
    assert cache.apply("other-key", req.units, 1000, now=10.0).read == 0
    assert cache.apply("k", req.units, 1000, now=10.0 + 301).read == 0  # the 5-minute TTL ran out
    assert cache.apply("k", req.units, 2000, now=0.0).created == 0  # below the minimum: not cached


def test_rate_limiter_buckets() -> None:
    limiter = RateLimiter(limits_from_config({"tier": "tier1", "requests_per_minute": 2}))
    assert limiter.admit("k", 0.0, 10, 10).allowed
    assert limiter.admit("k", 0.0, 10, 10).allowed
    refused = limiter.admit("k", 0.0, 10, 10)
    assert not refused.allowed and refused.retry_after_s == pytest.approx(30.0)
    assert limiter.admit("k", 30.0, 10, 10).allowed  # one request refilled after 30 s at 2/min
    with pytest.raises(ValueError):
        limits_from_config({"tier": "tier9"})
    assert not RateLimiter({}).enabled and RateLimiter({}).admit("k", 0, 1, 1).headers == []


def test_plan_max_tokens_and_stop_sequences() -> None:
    profile = DEFAULT_PROFILES["claude-haiku-4-5"]
    req = parse_messages_request({"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": "x"}]})
    plan = make_plan(req, profile, random.Random(1))
    assert plan.stop_reason == "max_tokens" and plan.output_tokens == 7 and len(plan.blocks[0].deltas) == 7
    req = parse_messages_request(
        {
            "model": "m",
            "max_tokens": 4000,
            "stop_sequences": ["e"],
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    for seed in range(20):
        plan = make_plan(req, profile, random.Random(seed))
        text = "".join(plan.blocks[0].deltas)
        assert "e" not in text
        if plan.stop_reason == "stop_sequence":
            assert plan.stop_sequence == "e" and plan.output_tokens >= len(plan.blocks[0].deltas)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_tokens": 1, "messages": []}, "model: Field required"),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "greater than"),
        ({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}, "content: Field required"),
        ({"model": "m", "max_tokens": 1, "messages": "hi"}, "valid list"),
        (
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "x"},
            },
            "tool_choice",
        ),
    ],
)
def test_validation_messages(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        parse_messages_request(body)


def test_config_file_json_and_toml(tmp_path: Path) -> None:
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"seed": 4, "faults": {"overloaded": 0.1}, "rate_limits": {"tier": "tier2"}}))
    t = tmp_path / "c.toml"
    t.write_text("[models.claude-haiku-4-5]\nmax_batch = 5\n[faults]\nstall_s = 2.0\n")
    config = SimulatorConfig()
    apply_file(config, load_config_file(j))
    apply_file(config, load_config_file(t))
    assert config.seed == 4 and config.faults == {"overloaded": 0.1, "stall_s": 2.0}
    assert config.models["claude-haiku-4-5"]["max_batch"] == 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"sead": 1}))
    with pytest.raises(ValueError, match="unknown key"):
        load_config_file(bad)
    assert "secret" not in repr(SimulatorConfig(require_key="secret"))


def test_fault_schedule_and_rates() -> None:
    config = FaultConfig.from_dict({"drop": 0.0, "schedule": [{"fault": "stall", "start_s": 5, "end_s": 6}]})
    injector = FaultInjector(config, started=100.0)
    rng = random.Random(0)
    assert injector.pick(101.0, rng, None) is None
    assert injector.pick(105.5, rng, None) == "stall"
    assert injector.pick(101.0, rng, "overloaded") == "overloaded"
    with pytest.raises(ValueError):
        FaultConfig.from_dict({"overloaded": 2})


class _Ticker:
    def __init__(self, ticks: int, fail: bool = False) -> None:
        self.left, self.fail, self.crashed = ticks, fail, False

    def tick(self, now: float, due: float) -> float | None:
        if self.fail:
            raise RuntimeError("boom")
        self.left -= 1
        return due + 0.001 if self.left else None

    def crash(self, exc: BaseException) -> None:
        self.crashed = True


def test_scheduler_survives_a_failing_ticker(capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import time

    from harness.simulator.scheduler import Scheduler

    async def run() -> tuple[_Ticker, _Ticker, Scheduler]:
        sched = Scheduler()
        good, bad = _Ticker(5), _Ticker(5, fail=True)
        now = time.monotonic()
        sched.add(now + 0.002, bad)
        sched.add(now + 0.001, good)
        await asyncio.sleep(0.05)
        return good, bad, sched

    good, bad, sched = asyncio.run(run())
    assert good.left == 0 and bad.crashed and len(sched) == 0 and sched.lag.total == 6
    assert "boom" in capsys.readouterr().err


def test_scheduler_yields_to_io_when_behind() -> None:
    import asyncio
    import time

    from harness.simulator.scheduler import MAX_BATCH_S, Scheduler

    class Slow:
        def __init__(self) -> None:
            self.done_at = 0.0

        def tick(self, now: float, due: float) -> float | None:
            if not io_at and not pending:
                # What the event loop does for a read or a connection_lost: a callback via call_soon.
                pending.append(asyncio.get_running_loop().call_soon(lambda: io_at.append(time.monotonic())))
            time.sleep(0.001)  # a write that takes a millisecond: the loop is behind
            self.done_at = time.monotonic()
            return None

        def crash(self, exc: BaseException) -> None:
            raise AssertionError("not expected")

    io_at: list[float] = []
    pending: list[asyncio.Handle] = []

    async def run() -> tuple[float, list[Slow]]:
        sched = Scheduler()
        tickers = [Slow() for _ in range(40)]
        now = time.monotonic()
        for t in tickers:
            sched.add(now, t)
        await asyncio.sleep(0.2)
        return io_at[0], tickers

    io_at, tickers = asyncio.run(run())
    # Other callbacks (reads, connection_lost) get a turn long before 40 ms of overdue writes are done:
    # after one batch of about MAX_BATCH_S of them.
    served_before_io = sum(t.done_at < io_at for t in tickers)
    assert 1 <= served_before_io <= MAX_BATCH_S / 0.001 + 3
