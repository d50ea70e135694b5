"""The latency guide's levers in the simulator, each shown through real HTTP calls with the real SDK.

Output length follows the prompt and `max_tokens` caps it; prompt length adds prefill time; each model
has its own speed; a warm prompt cache cuts TTFT; thinking budgets change the thinking; a non-streamed
answer arrives whole at completion; every response carries `anthropic-ratelimit-*` headers. Expected
sizes are computed from the configured (or default) profile numbers, as a study would.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from harness.simulator import SimulatorProcess
from harness.simulator.__main__ import build_parser, config_from_args
from harness.simulator.length import Ask, read_length_ask
from harness.simulator.model import DEFAULT_PROFILES, build_profiles
from harness.simulator.ratelimit import TIERS, limits_from_config

MODEL = "claude-haiku-4-5"
ONE_SENTENCE = "Answer in one sentence: what is the main benefit of database indexes?"
OPEN_QUESTION = "Explain in detail how a database index speeds up queries."
BASE_S = 0.02
PREFILL = 10_000.0  # tokens/s of the lever simulator's prompt processing
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def user(text: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def lever_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """No jitter, a fast decode and a known prefill rate: each lever's effect is exactly computable."""
    config = tmp_path_factory.mktemp("levers") / "sim.json"
    profile = {
        "base_delay_s": BASE_S,
        "base_delay_jitter": 0.0,
        "step_jitter": 0.0,
        "decode_tokens_per_s": 5000.0,
        "prefill_tokens_per_s": PREFILL,
    }
    config.write_text(json.dumps({"all_models": profile}))
    with SimulatorProcess(["--seed", "4", "--config", str(config)]) as sim:
        assert sim.url is not None
        yield sim.url


@pytest.fixture()
def client(lever_sim: str) -> anthropic.Anthropic:
    c = anthropic.Anthropic(base_url=lever_sim, api_key="sk-levers", max_retries=0)
    # The SDK builds its stream models lazily: a first stream would pay for that in its TTFT.
    with c.messages.stream(model=MODEL, max_tokens=2, messages=user("Hi")) as warm:
        warm.until_done()
    return c


def stream_times(client: anthropic.Anthropic, **kwargs: Any) -> tuple[float, list[float], anthropic.types.Message]:
    """TTFT (first content delta) and the times of every content delta, from the client's clock."""
    t0 = time.monotonic()
    stamps: list[float] = []
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                stamps.append(time.monotonic() - t0)
        message = stream.get_final_message()
    return stamps[0], stamps, message


# ---- output length ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "prompt", "ask", "tokens"),
    [
        ("", ONE_SENTENCE, Ask.EXACT, 20),
        ("", "In two sentences, why does streaming feel faster?", Ask.EXACT, 40),
        ("", "Write a 300-word essay about rivers.", Ask.EXACT, 300),
        ("", "Explain in one paragraph how a hash map handles collisions.", Ask.EXACT, 90),
        ("", "Is a tomato a fruit? Yes or no.", Ask.EXACT, 1),
        ("", "Briefly explain TCP.", Ask.BRIEF, 0),
        ("Be concise.", "Explain TCP.", Ask.BRIEF, 0),
        ("", OPEN_QUESTION, Ask.LONG, 0),
        ("", "Tell me about database indexes.", Ask.LONG, 0),
        ("", "Name three prime numbers.", Ask.DEFAULT, 0),
        ("", "Hi", Ask.DEFAULT, 0),
    ],
)
def test_what_a_prompt_asks_for(system: str, prompt: str, ask: Ask, tokens: int) -> None:
    found = read_length_ask(system, prompt)
    assert (found.ask, found.tokens) == (ask, tokens), found


def test_a_one_sentence_request_answers_briefly_an_open_question_at_length(client: anthropic.Anthropic) -> None:
    def lengths(prompt: str, system: str | None = None) -> list[int]:
        extra: dict[str, Any] = {"system": system} if system else {}
        out = []
        for _ in range(6):
            m = client.messages.create(model=MODEL, max_tokens=8192, messages=user(prompt), **extra)
            assert m.stop_reason == "end_turn"
            out.append(m.usage.output_tokens)
        return out

    sentence = lengths(ONE_SENTENCE)
    open_answer = lengths(OPEN_QUESTION)
    concise = lengths("What does an index do?", system="You are terse. Be concise.")
    # One sentence = 20 tokens (+-15 % log-normal); an open question = 1,000 median (sigma 0.6).
    assert all(10 <= n <= 36 for n in sentence), sentence
    assert statistics.median(open_answer) > 400 and min(open_answer) > 100, open_answer
    assert statistics.median(concise) < 80, concise
    assert statistics.median(open_answer) > 15 * statistics.median(sentence)


def test_max_tokens_caps_the_answer(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model=MODEL, max_tokens=64, messages=user(OPEN_QUESTION))
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 64
    _, stamps, streamed = stream_times(client, model=MODEL, max_tokens=64, messages=user(OPEN_QUESTION))
    assert streamed.stop_reason == "max_tokens" and len(stamps) == 64 == streamed.usage.output_tokens
    # A cap above the natural length changes nothing.
    short = client.messages.create(model=MODEL, max_tokens=64, messages=user(ONE_SENTENCE))
    assert short.stop_reason == "end_turn" and short.usage.output_tokens < 64


# ---- prefill and caching ---------------------------------------------------------------------


def test_ttft_rises_with_prompt_length_at_the_prefill_rate(client: anthropic.Anthropic) -> None:
    long_prompt = "x" * 32_000  # 8,000 tokens at 4 characters a token
    short = [stream_times(client, model=MODEL, max_tokens=3, messages=user("Hi"))[0] for _ in range(2)]
    long = [stream_times(client, model=MODEL, max_tokens=3, messages=user(long_prompt))[0] for _ in range(2)]
    expected = (8000 - 1) / PREFILL  # 0.8 s
    assert expected - 0.08 < min(long) - min(short) < expected + 0.15, (short, long)
    assert BASE_S < min(short) < BASE_S + 0.1, short


def test_a_warm_prompt_cache_cuts_ttft(client: anthropic.Anthropic) -> None:
    prefix = "You answer questions about this handbook. " * 600  # 6,300 tokens
    system: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": prefix, "cache_control": {"type": "ephemeral"}}
    ]
    cold, _, first = stream_times(client, model=MODEL, max_tokens=3, system=system, messages=user("Q1?"))
    warm, _, second = stream_times(client, model=MODEL, max_tokens=3, system=system, messages=user("Q2?"))
    cached = first.usage.cache_creation_input_tokens
    assert cached and second.usage.cache_read_input_tokens == cached
    speedup = DEFAULT_PROFILES[MODEL].cache_read_speedup
    expected = cached / PREFILL * (1 - 1 / speedup)  # 0.63 s - 0.063 s
    assert expected - 0.08 < cold - warm < expected + 0.15, (cold, warm, expected)


# ---- thinking and streaming ------------------------------------------------------------------


def test_a_larger_thinking_budget_thinks_longer(client: anthropic.Anthropic) -> None:
    def thinking_tokens(budget: int) -> list[int]:
        out = []
        for _ in range(3):
            m = client.messages.create(
                model=MODEL,
                max_tokens=budget + 512,
                thinking={"type": "enabled", "budget_tokens": budget},
                messages=user(ONE_SENTENCE),
            )
            assert [b.type for b in m.content] == ["thinking", "text"]
            out.append(len(m.content[0].thinking.split()))  # type: ignore[union-attr]
        return out

    small, large = thinking_tokens(1024), thinking_tokens(8192)
    # Medians min(3000, 0.5 * budget): 512 and 3,000 tokens (log-normal, sigma 0.5, capped at the budget).
    assert max(small) <= 1024, small
    assert statistics.mean(large) > 1200 and statistics.mean(large) > 2 * statistics.mean(small), (small, large)


def test_a_non_streamed_answer_arrives_whole_at_completion(lever_sim: str) -> None:
    body = {"model": MODEL, "max_tokens": 500, "messages": user(OPEN_QUESTION)}
    with httpx2.Client(base_url=lever_sim, timeout=10) as http:
        http.post("/v1/messages", json={**body, "max_tokens": 2})  # connection warm-up
        t0 = time.monotonic()
        with http.stream("POST", "/v1/messages", json=body) as resp:
            head_s = time.monotonic() - t0
            resp.read()
        t0 = time.monotonic()
        with http.stream("POST", "/v1/messages", json={**body, "stream": True}) as resp:
            streamed_head_s = time.monotonic() - t0
            resp.read()
            streamed_end_s = time.monotonic() - t0
    # 500 tokens at 5,000 tokens/s: the whole body comes after 0.1 s of decoding, a stream's head at once.
    assert head_s > BASE_S + 0.09 and streamed_head_s < BASE_S + 0.05, (head_s, streamed_head_s)
    assert abs(head_s - streamed_end_s) < 0.05


# ---- model speeds ----------------------------------------------------------------------------


def test_haiku_sonnet_opus_ttft_and_speed_in_that_order(tmp_path: Path) -> None:
    config = tmp_path / "sim.json"
    config.write_text(json.dumps({"all_models": {"base_delay_jitter": 0.0}}))
    ids = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-5")
    ttft: dict[str, float] = {}
    rate: dict[str, float] = {}
    with SimulatorProcess(["--seed", "1", "--config", str(config)]) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
        with client.messages.stream(model=ids[0], max_tokens=2, messages=user("Hi")) as warm:
            warm.until_done()
        for model in ids:
            first, stamps, _ = stream_times(client, model=model, max_tokens=25, messages=user(OPEN_QUESTION))
            ttft[model] = first
            rate[model] = 1.0 / statistics.median(b - a for a, b in itertools.pairwise(stamps))
    for model in ids:
        p = DEFAULT_PROFILES[model]
        expected_ttft = p.base_delay_s + p.prefill_s(-(-len(OPEN_QUESTION) // 4)) + p.step_time(1)
        assert expected_ttft - 0.01 < ttft[model] < expected_ttft + 0.1, (model, ttft)
        assert 0.7 * p.decode_tokens_per_s < rate[model] < 1.3 * p.decode_tokens_per_s, (model, rate)
    assert ttft[ids[0]] < ttft[ids[1]] < ttft[ids[2]], ttft
    assert rate[ids[0]] > rate[ids[1]] > rate[ids[2]], rate


# ---- rate-limit headers ----------------------------------------------------------------------

KINDS = ("requests", "tokens", "input-tokens", "output-tokens")


def test_ratelimit_headers_on_every_response_with_no_limit_set(client: anthropic.Anthropic, lever_sim: str) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=user(ONE_SENTENCE))
    h = raw.headers
    for kind in KINDS:
        for field in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{kind}-{field}" in h, (kind, field)
    assert h["anthropic-ratelimit-requests-limit"] == "100000"
    assert int(h["anthropic-ratelimit-requests-remaining"]) < 100_000  # this call was counted
    output = raw.parse().usage.output_tokens
    assert int(h["anthropic-ratelimit-output-tokens-remaining"]) <= 20_000_000 - output
    with httpx2.Client(base_url=lever_sim, timeout=10, headers={"x-api-key": "sk-levers"}) as http:
        others = [
            http.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": user("hi")}),
            http.get("/v1/models"),
            http.post("/v1/messages", json={"model": MODEL, "messages": user("hi")}),  # 400: no max_tokens
            http.post("/v1/messages", json={"model": "gpt-9", "max_tokens": 5, "messages": user("hi")}),  # 404
        ]
    assert [r.status_code for r in others] == [200, 200, 400, 404]
    assert all("anthropic-ratelimit-input-tokens-remaining" in r.headers for r in others)


def test_rate_limit_tier_off_sends_no_headers() -> None:
    with SimulatorProcess(["--ttft", "0.001", "--tps", "5000", "--rate-limit-tier", "off"]) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=3, messages=user("Hi"))
    assert not [k for k in raw.headers if k.startswith("anthropic-ratelimit-")]


def test_rate_limit_config_default_tier_and_off() -> None:
    assert limits_from_config({}) == TIERS["default"]
    assert limits_from_config({"tier": "off"}) == {}
    assert limits_from_config({"input_tokens_per_minute": 1000}) == {"input_tokens_per_minute": 1000}
    with pytest.raises(ValueError, match="'off' cannot be combined"):
        limits_from_config({"tier": "off", "requests_per_minute": 5})


def test_lever_parameters_from_flags_and_their_checks() -> None:
    args = build_parser().parse_args(["--prefill-tps", "1234", "--tps", "99"])
    profiles = build_profiles(config_from_args(args).models, config_from_args(args).all_models)
    assert {(p.prefill_tokens_per_s, p.decode_tokens_per_s) for p in profiles.values()} == {(1234.0, 99.0)}
    haiku = DEFAULT_PROFILES[MODEL]
    assert [haiku.thinking_median(b) for b in (1024, 4096, 16_000)] == [512, 2048, 3000]
    assert haiku.prefill_s(40_000, 40_000) == pytest.approx(1.1)  # 1 s fresh + 0.1 s read from the cache
    with pytest.raises(ValueError, match="cache_read_speedup >= 1"):
        build_profiles(all_models={"cache_read_speedup": 0.5})
    with pytest.raises(ValueError, match="token medians"):
        build_profiles(all_models={"long_tokens_median": 0})
