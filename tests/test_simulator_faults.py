"""Faults and rate limits as the unmodified anthropic SDK sees them: each must raise the error class a
harness will meet against the real API, with the headers it needs (retry-after, anthropic-ratelimit-*)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest

from harness.simulator import SimulatorProcess

MODEL = "claude-haiku-4-5"
FAST = ["--ttft", "0.01", "--tps", "2000", "--seed", "5"]
USER: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with SimulatorProcess(
        [*FAST, "--stall-seconds", "0.4", "--slow-headers-seconds", "0.4", "--retry-after", "7"]
    ) as sim:
        assert sim.url is not None
        yield sim.url


def client_for(url: str, key: str = "k") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def fault(name: str) -> dict[str, str]:
    return {"x-simulator-fault": name}


def drain(client: anthropic.Anthropic, headers: dict[str, str], max_tokens: int = 50) -> list[str]:
    kinds = []
    with client.messages.stream(model=MODEL, max_tokens=max_tokens, messages=USER, extra_headers=headers) as s:
        for event in s:
            kinds.append(event.type)
    return kinds


def test_overloaded_529(url: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        drain(client_for(url), fault("overloaded"))
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert info.value.response.headers["request-id"].startswith("req_")


def test_api_error_500(url: str) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        client_for(url).messages.create(model=MODEL, max_tokens=5, messages=USER, extra_headers=fault("api_error"))
    assert info.value.status_code == 500 and info.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_rate_limit_fault_429(url: str) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        drain(client_for(url), fault("rate_limit"))
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_mid_stream_error_event(url: str) -> None:
    seen: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client_for(url).messages.stream(
            model=MODEL, max_tokens=50, messages=USER, extra_headers=fault("stream_error")
        ) as s,
    ):
        for event in s:
            seen.append(event.type)
    assert info.value.status_code == 200
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert "content_block_delta" in seen and "message_stop" not in seen


def test_stream_error_non_streaming_is_529(url: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        client_for(url).messages.create(model=MODEL, max_tokens=20, messages=USER, extra_headers=fault("stream_error"))
    assert info.value.status_code == 529


def test_dropped_connection(url: str) -> None:
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        drain(client_for(url), fault("drop"))
    with pytest.raises((anthropic.APIConnectionError, httpx2.RemoteProtocolError)):
        client_for(url).messages.create(model=MODEL, max_tokens=20, messages=USER, extra_headers=fault("drop"))


def test_stall_gap(url: str) -> None:
    client = client_for(url)
    stamps = []
    with client.messages.stream(model=MODEL, max_tokens=30, messages=USER, extra_headers=fault("stall")) as s:
        for event in s:
            if event.type == "content_block_delta":
                stamps.append(time.monotonic())
        message = s.get_final_message()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert message.stop_reason == "max_tokens"
    assert max(gaps) >= 0.35 and sorted(gaps)[-2] < 0.3  # exactly one long silence


def test_slow_headers(url: str) -> None:
    client = client_for(url)
    t0 = time.monotonic()
    client.messages.create(model=MODEL, max_tokens=2, messages=USER, extra_headers=fault("slow_headers"))
    assert time.monotonic() - t0 >= 0.4


def test_fault_rate_and_schedule(tmp_path: Path) -> None:
    config = tmp_path / "faults.json"
    config.write_text(json.dumps({"faults": {"schedule": [{"fault": "api_error", "start_s": 0, "end_s": 1.5}]}}))
    with SimulatorProcess([*FAST, "--config", str(config), "--fault-overloaded", "0.5"]) as sim:
        assert sim.url is not None
        client = client_for(sim.url)
        statuses = []
        for _ in range(5):
            try:
                client.messages.create(model=MODEL, max_tokens=2, messages=USER)
                statuses.append(200)
            except anthropic.APIStatusError as exc:
                statuses.append(exc.status_code)
        assert set(statuses) <= {500, 529} and 500 in statuses  # the schedule window: every call fails
        time.sleep(max(0.0, 1.6 - (time.monotonic() - sim_started(sim))))
        later = []
        for _ in range(30):
            try:
                client.messages.create(model=MODEL, max_tokens=2, messages=USER)
                later.append(200)
            except anthropic.APIStatusError as exc:
                later.append(exc.status_code)
        assert 500 not in later and 200 in later and 529 in later  # only the 50 % overload remains


def sim_started(sim: SimulatorProcess) -> float:
    assert sim.started_at is not None
    return sim.started_at


def test_rate_limits(tmp_path: Path) -> None:
    with SimulatorProcess([*FAST, "--rpm", "4", "--itpm", "100000", "--otpm", "100000"]) as sim:
        assert sim.url is not None
        client = client_for(sim.url, "key-a")
        remaining = []
        for _ in range(4):
            raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=3, messages=USER)
            h = raw.headers
            assert h["anthropic-ratelimit-requests-limit"] == "4"
            for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
                for field in ("limit", "remaining", "reset"):
                    assert f"anthropic-ratelimit-{kind}-{field}" in h
            remaining.append(int(h["anthropic-ratelimit-requests-remaining"]))
        assert remaining == [3, 2, 1, 0]
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(model=MODEL, max_tokens=3, messages=USER)
        headers = info.value.response.headers
        assert int(headers["retry-after"]) >= 1 and headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        # Limits are per API key.
        assert client_for(sim.url, "key-b").messages.create(model=MODEL, max_tokens=3, messages=USER)


def test_input_token_limit() -> None:
    with SimulatorProcess([*FAST, "--itpm", "1000"]) as sim:
        assert sim.url is not None
        client = client_for(sim.url)
        big: list[anthropic.types.MessageParam] = [{"role": "user", "content": "x" * 2400}]  # 600 tokens
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=3, messages=big)
        assert raw.headers["anthropic-ratelimit-input-tokens-remaining"] == "400"
        assert "anthropic-ratelimit-requests-limit" not in raw.headers  # only configured limits are reported
        with pytest.raises(anthropic.RateLimitError) as info:
            client.messages.create(model=MODEL, max_tokens=3, messages=big)
        # 200 more tokens at 1000/min take 12 s
        assert 11 <= int(info.value.response.headers["retry-after"]) <= 13
