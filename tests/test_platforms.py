"""Claude on Amazon Bedrock and Google Vertex AI, through both transports, against the real simulator.

Each platform's calls go through the run's real :class:`~harness.runtime.state.Harness` (model ids
mapped, test credentials chosen for the loopback simulator) and the real SDK clients
(``AnthropicBedrock``, ``AnthropicVertex``) or the fast transport (botocore's SigV4 signer, the
harness's event-stream decoder); both must give the same record for the same stream and the same
class for each failure. A canned server on loopback sends what the simulator does not: a frame with
a bad CRC, a mid-stream throttling frame, an error body that echoes the credentials it was sent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gevent.server import StreamServer
from locust.env import Environment

from harness import CallRecord, HarnessOptions, attach
from harness.core.errors import CallError
from harness.core.measure import CallMeasurement
from harness.core.request import MessageRequest, user_message
from harness.simulator import SimulatorProcess
from harness.simulator.eventstream import chunk_frame, exception_frame
from harness.simulator.sigv4 import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
from harness.transports.base import TransportConfig
from harness.transports.registry import get_transport

FAST = ["--ttft", "0.01", "--tps", "2000", "--seed", "3"]
TRANSPORTS = ("sdk", "fast")
PLATFORMS = ("bedrock", "vertex")
TIMING = {"t_scheduled", "t_start", "t_message_start", "t_first_token", "t_first_text", "t_last_token", "t_end"}
DURATIONS = {"queue_s", "ttft_s", "first_text_s", "completion_s", "tpot_s", "output_tps", "itl_s"}
PER_CALL = {"call_id", "timestamp", "user_id", "request_id"}


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, str]]:
    """One simulator serving both platforms per fault (none, and each a request suffers every time)."""
    faults = {"none": [], "stream_error": ["--fault-stream-error", "1"], "rate_limit": ["--fault-rate-limit", "1"]}
    faults["overloaded"] = ["--fault-overloaded", "1"]
    started: list[SimulatorProcess] = []
    try:
        urls = {}
        for name, args in faults.items():
            sim = SimulatorProcess([*FAST, *args], platform="all")
            started.append(sim)
            urls[name] = sim.start()
        yield urls
    finally:
        for sim in started:
            sim.stop()


def base_url(url: str, platform: str) -> str:
    return url + "/v1" if platform == "vertex" else url  # the SDK's Vertex base URL ends in /v1


def call(
    url: str, platform: str, transport: str, *, stream: bool = True, model: str = "claude-haiku-4-5"
) -> CallRecord:
    """One call through a real Harness, as a run on ``--platform`` makes it."""
    host = base_url(url, platform)
    harness = attach(Environment(host=host), HarnessOptions(transport=transport, platform=platform))
    request = MessageRequest("claude-haiku-4-5", max_tokens=12, messages=[user_message("Hello there")], stream=stream)
    return harness.call(request, host=host, scenario="platform")


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("stream", [True, False])
def test_both_transports_give_the_same_record(sims: dict[str, str], platform: str, stream: bool) -> None:
    sdk, fast = (call(sims["none"], platform, t, stream=stream).to_dict() for t in TRANSPORTS)
    assert sdk["outcome"] == "ok", sdk["error_message"]
    expected = {"bedrock": "global.anthropic.claude-haiku-4-5-20251001-v1:0", "vertex": "claude-haiku-4-5@20251001"}
    assert sdk["model"] == expected[platform]  # the scenario's name, sent and recorded as the platform's id
    assert sdk["output_tokens"] == 12 and sdk["stop_reason"] == "max_tokens" and sdk["input_tokens"] > 0
    assert sdk["ratelimit"] is None  # neither platform sends anthropic-ratelimit-* headers
    for name in sdk.keys() - TIMING - DURATIONS - PER_CALL:
        assert fast[name] == sdk[name], name
    for name in TIMING | DURATIONS:
        assert (fast[name] is None) == (sdk[name] is None), name
    assert len(fast["itl_s"]) == len(sdk["itl_s"]) == (11 if stream else 0)
    # Bedrock's x-amzn-requestid; Vertex sends none, so the message id stands in.
    prefix = "req_" if platform == "bedrock" else "msg_"
    assert sdk["request_id"].startswith(prefix) and fast["request_id"].startswith(prefix)


FAILURES = {
    ("bedrock", "stream_error"): ("stream_modelStreamErrorException", "Overloaded"),
    ("bedrock", "rate_limit"): ("http_429", "ThrottlingException: Too many requests, please wait before trying again."),
    ("bedrock", "overloaded"): ("http_424", "ModelStreamErrorException: Overloaded"),
    ("vertex", "stream_error"): ("stream_overloaded_error", "Overloaded"),
    ("vertex", "rate_limit"): ("http_429", "RESOURCE_EXHAUSTED: Quota exceeded for aiplatform.googleapis.com"),
    ("vertex", "overloaded"): ("http_529", "overloaded_error: Overloaded"),
}


@pytest.mark.parametrize(("platform", "fault"), list(FAILURES))
def test_both_transports_classify_each_failure_alike(sims: dict[str, str], platform: str, fault: str) -> None:
    outcome, reason = FAILURES[(platform, fault)]
    for transport in TRANSPORTS:
        record = call(sims[fault], platform, transport)
        assert record.outcome == outcome, (transport, record.error_message)
        assert (record.error_message or "").startswith(reason), (transport, record.error_message)
        assert record.http_status == (200 if outcome.startswith("stream_") else int(outcome[5:]))
        if outcome.startswith("stream_"):
            assert record.t_first_token is not None  # it failed after some deltas


def test_a_request_signed_with_a_wrong_secret_is_refused(sims: dict[str, str]) -> None:
    config = TransportConfig(
        base_url=sims["none"],
        api_key="",
        platform="bedrock",
        region="eu-west-1",
        aws_access_key=DEFAULT_ACCESS_KEY_ID,
        aws_secret_key="not-the-simulator-secret",
    )
    record = send(get_transport("fast", config), "us.anthropic.claude-haiku-4-5-20251001-v1:0")
    assert record.outcome == "http_403"
    assert (record.error_message or "").startswith("InvalidSignatureException: The request signature we calculated")
    good = dataclasses.replace(config, aws_secret_key=DEFAULT_SECRET_ACCESS_KEY)
    assert send(get_transport("fast", good), "us.anthropic.claude-haiku-4-5-20251001-v1:0").outcome == "ok"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_bedrock_api_key_is_sent_as_a_bearer_token(sims: dict[str, str], transport: str) -> None:
    config = TransportConfig(
        base_url=sims["none"], api_key="bedrock-api-key-0123", platform="bedrock", region="us-west-2"
    )
    record = send(get_transport(transport, config), "anthropic.claude-haiku-4-5-20251001-v1:0")
    assert record.outcome == "ok" and record.output_tokens == 12


def send(transport: Any, model: str, stream: bool = True) -> CallRecord:
    measurement = CallMeasurement(scenario="platform", model=model, stream=stream)
    request = MessageRequest(model=model, max_tokens=12, messages=[user_message("Hello there")], stream=stream)
    try:
        transport.send(request, measurement)
    except CallError as exc:
        return measurement.finish(exc.outcome, error_message=exc.reason)
    return measurement.finish()


# -- a canned server: what the simulator never sends ---------------------------------------------------


def _event(data: dict[str, Any]) -> bytes:
    return chunk_frame(json.dumps(data, separators=(",", ":")).encode(), padding=7)


def _opening() -> bytes:
    message = {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "m", "content": []}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
    return (
        _event({"type": "message_start", "message": {**message, "usage": {"input_tokens": 3, "output_tokens": 1}}})
        + _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        + _event(delta) * 3
    )


def _corrupted() -> bytes:
    frame = bytearray(_event({"type": "content_block_stop", "index": 0}))
    frame[-10] ^= 0x01  # a payload byte: the message CRC no longer matches
    return _opening() + bytes(frame)


def _answer(request: bytes) -> bytes:
    path = request.split(b" ", 2)[1]
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in request.split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
    )
    if b"/echo" in path:  # an error body that repeats the credentials it was sent
        sent = [headers.get(b"authorization", b""), headers.get(b"x-amz-security-token", b"")]
        body = json.dumps({"message": "denied for " + " / ".join(h.decode() for h in sent)}).encode()
        head = (
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nx-amzn-ErrorType: AccessDeniedException\r\n"
        )
    else:
        body = _corrupted() if b"/crc" in path else _opening() + exception_frame("throttlingException", "Slow down")
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\nx-amzn-requestid: req_canned\r\n"
        )
    return head + b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)


def _serve(sock: Any, _: Any) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    while len(body) < length:
        body += sock.recv(65536)
    sock.sendall(_answer(data))
    sock.close()


@pytest.fixture(scope="module")
def canned() -> Iterator[str]:
    server = StreamServer(("127.0.0.1", 0), _serve)
    server.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.stop()


def bedrock_at(url: str, **fields: Any) -> Callable[[str], Any]:
    keys = {"aws_access_key": DEFAULT_ACCESS_KEY_ID, "aws_secret_key": DEFAULT_SECRET_ACCESS_KEY, **fields}
    config = TransportConfig(
        base_url=url, api_key=keys.pop("api_key", ""), platform="bedrock", region="us-east-1", **keys
    )
    return lambda transport: get_transport(transport, config)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_frame_with_a_bad_crc_is_a_protocol_failure_of_that_call(canned: str, transport: str) -> None:
    record = send(bedrock_at(canned)(transport), "crc")
    assert record.outcome == "protocol" and "CRC mismatch" in (record.error_message or "")
    assert record.http_status == 200 and record.request_id == "req_canned"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_mid_stream_throttling_frame(canned: str, transport: str) -> None:
    record = send(bedrock_at(canned)(transport), "throttle")
    assert (record.outcome, record.error_message, record.http_status) == (
        "stream_throttlingException",
        "Slow down",
        200,
    )


def test_credentials_echoed_by_a_server_are_redacted(canned: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token, secret = "IQoJb3JpZ2luX2VjMARKER-session-token-0123456789", "MARKER/secret/key/0123456789abcdef"
    # botocore's chain finds these in the environment: a session token goes out with every signed request.
    # (An access key id is no secret: it is in every signature's Credential=, echoed here too.)
    for name, value in (("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE012345678"), ("AWS_SECRET_ACCESS_KEY", secret)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    chain = TransportConfig(base_url=canned, api_key="", platform="bedrock", region="us-east-1")
    bearer = "ABSKMARKERbedrock-api-key-0123456789"
    google = "ya29.a0MARKER-google-access-token_0123456789"
    configs = [chain, TransportConfig(base_url=canned, api_key=bearer, platform="bedrock", region="us-east-1")]
    configs.append(TransportConfig(base_url=canned + "/v1", api_key=google, platform="vertex", project="p"))
    for config in configs:
        for transport in TRANSPORTS:
            record = send(get_transport(transport, config), "echo")
            assert record.outcome == "http_403", record.error_message
            text = json.dumps(record.to_dict()) + repr(config)
            assert "denied for" in text and "***" in text
            for value in (token, secret, bearer, google, "MARKER"):
                assert value not in text, (transport, config.platform)
