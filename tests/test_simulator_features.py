"""Simulator features through the unmodified anthropic SDK: thinking, tools, caching, stop sequences,
validation errors, auth, model aliases, and the ground-truth trace."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest

from harness.simulator import SimulatorProcess

MODEL = "claude-sonnet-4-5"
# The SDK warns that this model id is deprecated; the simulator serves it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
KEY = "sk-test-secret-key"
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("sim")
    config = tmp / "sim.toml"
    # Fast profile; a slow prefill so a cache hit visibly shortens TTFT; short thinking.
    config.write_text(
        "[all_models]\n"
        "base_delay_s = 0.01\nbase_delay_jitter = 0.0\ndecode_tokens_per_s = 3000.0\n"
        "prefill_tokens_per_s = 4000.0\ncache_min_tokens = 1024\nthinking_tokens_median = 30\n"
    )
    trace = tmp / "trace.jsonl"
    args = [
        "--seed",
        "3",
        "--config",
        str(config),
        "--trace",
        str(trace),
        "--require-key",
        KEY,
        "--max-body-bytes",
        "200000",
    ]
    with SimulatorProcess(args) as proc:
        assert proc.url is not None
        yield proc.url, trace


@pytest.fixture()
def client(sim: tuple[str, Path]) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim[0], api_key=KEY, max_retries=0)


def user(text: str = "Hello") -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": text}]


def test_thinking_block_before_text(client: anthropic.Anthropic, sim: tuple[str, Path]) -> None:
    thinking: anthropic.types.ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}
    deltas: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=4000, thinking=thinking, messages=user()) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                deltas.append(event.delta.type)
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    block = message.content[0]
    assert block.type == "thinking" and block.thinking and block.signature
    n_thinking = deltas.count("thinking_delta")
    assert deltas[:n_thinking] == ["thinking_delta"] * n_thinking and deltas[n_thinking] == "signature_delta"
    assert message.usage.output_tokens == n_thinking + deltas.count("text_delta")
    # Non-streaming has the same shape.
    full = client.messages.create(model=MODEL, max_tokens=4000, thinking=thinking, messages=user())
    assert [b.type for b in full.content] == ["thinking", "text"]


def test_thinking_budget_validation(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model=MODEL, max_tokens=1000, thinking={"type": "enabled", "budget_tokens": 1024}, messages=user()
        )
    assert "budget_tokens" in info.value.message


def test_tool_use_then_tool_result(client: anthropic.Anthropic) -> None:
    kinds: list[str] = []
    with client.messages.stream(model=MODEL, max_tokens=500, tools=TOOLS, messages=user("Weather?")) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert set(kinds) == {"input_json_delta"}
    block = message.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    assert isinstance(block.input, dict) and isinstance(block.input["city"], str)
    follow = client.messages.create(
        model=MODEL,
        max_tokens=2000,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}],
            },
        ],
    )
    assert [b.type for b in follow.content] == ["text"] and follow.stop_reason == "end_turn"
    # tool_choice naming the tool, non-streaming
    forced = client.messages.create(
        model=MODEL,
        max_tokens=500,
        tools=TOOLS,
        messages=user("x"),
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert forced.stop_reason == "tool_use" and forced.content[0].type == "tool_use"


def _ttft(client: anthropic.Anthropic, **kwargs: object) -> tuple[float, anthropic.types.Message]:
    t0 = time.monotonic()
    first = None
    with client.messages.stream(**kwargs) as stream:  # type: ignore[arg-type]
        for event in stream:
            if first is None and event.type == "content_block_delta":
                first = time.monotonic() - t0
        message = stream.get_final_message()
    assert first is not None
    return first, message


def test_prompt_caching_write_then_read(client: anthropic.Anthropic) -> None:
    system = [
        {
            "type": "text",
            "text": "You are a careful assistant. " * 400,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    cached = -(-len(system[0]["text"]) // 4)  # 2,900 tokens: 0.7 s of prefill at 4,000 tokens/s
    kwargs = {"model": MODEL, "max_tokens": 3, "system": system}
    ttft_miss, first = _ttft(client, messages=user("question one"), **kwargs)
    ttft_hit, second = _ttft(client, messages=user("question two, longer"), **kwargs)
    assert first.usage.cache_creation_input_tokens == cached and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == cached and second.usage.cache_creation_input_tokens == 0
    assert first.usage.input_tokens == 3 and second.usage.input_tokens == 5  # only what follows the breakpoint
    assert ttft_miss > 0.5 and ttft_hit < ttft_miss - 0.4
    # Below the minimum cacheable length nothing is cached.
    small = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    m = client.messages.create(model=MODEL, max_tokens=3, system=small, messages=user())  # type: ignore[arg-type]
    assert m.usage.cache_creation_input_tokens == 0 and m.usage.cache_read_input_tokens == 0


def test_stop_sequence(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model=MODEL, max_tokens=3000, stop_sequences=[" the"], messages=user())
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == " the"
    text = message.content[0].text  # type: ignore[union-attr]
    assert " the" not in text
    assert message.usage.output_tokens >= len(text.split())


def test_validation_errors(sim: tuple[str, Path]) -> None:
    url = sim[0] + "/v1/messages"
    headers = {"x-api-key": KEY}
    cases = [
        ({"model": MODEL, "messages": user()}, 400, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, 400, "messages"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 400, "role"),
        ({"model": MODEL, "max_tokens": 5, "messages": user("x" * 300_000)}, 413, "maximum"),
    ]
    for body, status, fragment in cases:
        r = httpx2.post(url, json=body, headers=headers)
        assert r.status_code == status
        err = r.json()
        assert err["type"] == "error" and fragment in err["error"]["message"]
        assert err["error"]["type"] == ("invalid_request_error" if status == 400 else "request_too_large")
        assert err["request_id"] == r.headers["request-id"]
    r = httpx2.post(url, content=b"{not json", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_bad_role_through_sdk(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "robot", "content": "x"}])  # type: ignore[list-item,misc]


def test_auth(sim: tuple[str, Path]) -> None:
    bad = anthropic.Anthropic(base_url=sim[0], api_key="wrong-key-123", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=MODEL, max_tokens=5, messages=user())
    assert info.value.status_code == 401
    assert "wrong-key-123" not in json.dumps(info.value.body)
    bearer = anthropic.Anthropic(base_url=sim[0], auth_token=KEY, max_retries=0)
    assert bearer.messages.create(model=MODEL, max_tokens=5, messages=user()).stop_reason == "max_tokens"


@pytest.mark.parametrize(
    ("model", "ok"),
    [
        ("claude-haiku-4-5-20251001", True),
        ("claude-3-5-haiku-latest", True),
        ("claude-opus-4-5", True),
        ("claude-3-opus-20240229", True),
        ("claude-instant-1", False),
        ("gpt-4o", False),
    ],
)
def test_model_resolution(client: anthropic.Anthropic, model: str, ok: bool) -> None:
    if ok:
        assert client.messages.create(model=model, max_tokens=2, messages=user()).model == model
    else:
        with pytest.raises(anthropic.NotFoundError) as info:
            client.messages.create(model=model, max_tokens=2, messages=user())
        assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_count_tokens_includes_system_and_tools(client: anthropic.Anthropic) -> None:
    base = client.messages.count_tokens(model=MODEL, messages=user("x" * 40)).input_tokens
    assert base == 10
    more = client.messages.count_tokens(model=MODEL, messages=user("x" * 40), system="y" * 40, tools=TOOLS)
    assert more.input_tokens > base + 10


def test_trace_lines_match_request_ids(client: anthropic.Anthropic, sim: tuple[str, Path]) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=20, messages=user(), stream=True)
    rid = raw.headers["request-id"]
    for _ in raw.parse():
        pass
    time.sleep(0.05)
    lines = [json.loads(line) for line in sim[1].read_text().splitlines()]
    record = next(r for r in lines if r["request_id"] == rid)
    assert record["status"] == 200 and record["outcome"] == "ok" and record["model"] == MODEL
    assert record["output_tokens"] == 20 and record["input_tokens"] == 2
    assert record["t_arrival"] <= record["t_headers"] <= record["t_first_delta"] <= record["t_last_delta"]
    assert record["t_last_delta"] <= record["t_end"]
    assert record["t_end"] <= time.monotonic()  # same clock as this process
    assert all(KEY not in line for line in sim[1].read_text().splitlines())
