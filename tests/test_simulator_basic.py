"""Phase-1 contract of the simulator, driven by the unmodified anthropic SDK and a raw HTTP client.

One simulator subprocess per module with a fast profile (short TTFT, high token rate) keeps this quick.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import anthropic
import pytest

from harness.simulator import SimulatorProcess

MODEL = "claude-haiku-4-5"
USER = [{"role": "user", "content": "Hello, simulator! " * 10}]


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with SimulatorProcess(["--seed", "7", "--ttft", "0.02", "--tps", "2000"]) as sim:
        assert sim.url is not None
        yield sim.url


@pytest.fixture()
def client(sim_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim_url, api_key="sk-test", max_retries=0)


def raw_post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return resp.status, headers, data


def parse_sse(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in data.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_wire_event_sequence(sim_url: str) -> None:
    status, headers, data = raw_post(
        sim_url, "/v1/messages", {"model": MODEL, "max_tokens": 30, "messages": USER, "stream": True}
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    assert headers["request-id"].startswith("req_")
    events = parse_sse(data)
    names = [e for e, _ in events]
    n = names.count("content_block_delta")
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * n + [
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for name, data_obj in events:
        assert data_obj["type"] == name
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["model"] == MODEL and start["content"] == []
    assert start["usage"]["input_tokens"] > 0 and start["usage"]["output_tokens"] == 1
    deltas = [d for e, d in events if e == "content_block_delta"]
    assert all(d["delta"]["type"] == "text_delta" and d["delta"]["text"] for d in deltas)
    final = events[-2][1]
    assert final["usage"]["output_tokens"] == n
    assert final["delta"]["stop_reason"] in ("end_turn", "max_tokens")


def test_sdk_streaming_create(client: anthropic.Anthropic) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=40, messages=USER, stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.usage.output_tokens == types.count("content_block_delta")


def test_sdk_messages_stream_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=2000, messages=USER) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert message.content[0].type == "text" and message.content[0].text == text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens >= 1
    # ceil(chars / 4) over the prompt text
    assert message.usage.input_tokens == -(-len(USER[0]["content"]) // 4)


def test_sdk_non_streaming_and_request_id(client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=5, messages=USER)
    assert raw.headers["request-id"].startswith("req_")
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert message.id.startswith("msg_")


def test_max_tokens_stop_streaming(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=MODEL, max_tokens=3, messages=USER) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_count_tokens(client: anthropic.Anthropic) -> None:
    result = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x" * 41}])
    assert result.input_tokens == 11


def test_unknown_model_404(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-4o", max_tokens=5, messages=USER)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["request_id"].startswith("req_")


def test_launcher_reports_failure() -> None:
    sim = SimulatorProcess(["--config", "/nonexistent/file.json"])
    with pytest.raises(RuntimeError, match="exited"):
        sim.start(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "harness.simulator"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert re.fullmatch(r"harness simulator listening on http://127\.0\.0\.1:\d+\n", line)
        proc.send_signal(sig)  # at once: the handlers must already be in place
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
