"""The simulator as Amazon Bedrock and Google Vertex AI, seen by the unmodified SDK clients (AnthropicBedrock,
AnthropicVertex), by a request signed with botocore's own SigV4Auth, and by the harness's event-stream decoder."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness.core.eventstream import BedrockEventDecoder
from harness.core.stream_events import ContentBlockDelta, MessageStart, MessageStop, Ping, StreamError
from harness.simulator import SimulatorProcess
from harness.simulator.bedrock import bedrock_model_name
from harness.simulator.sigv4 import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, SignatureRejected, verify

FAST = ["--ttft", "0.01", "--tps", "2000", "--seed", "3"]
# Generous limits, only so that first-party answers carry anthropic-ratelimit-* headers to leave out.
LIMITS = ["--rpm", "100000", "--itpm", "100000000", "--otpm", "100000000"]
USER: list[anthropic.types.MessageParam] = [{"role": "user", "content": "Hello there"}]
BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
VERTEX_MODEL = "claude-haiku-4-5@20251001"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with SimulatorProcess([*FAST, *LIMITS], platform="all") as sim:
        assert sim.url is not None
        yield sim.url


def bedrock(url: str, secret: str = DEFAULT_SECRET_ACCESS_KEY) -> anthropic.AnthropicBedrock:
    return anthropic.AnthropicBedrock(
        aws_access_key=DEFAULT_ACCESS_KEY_ID, aws_secret_key=secret, aws_region=REGION, base_url=url, max_retries=0
    )


def vertex(url: str, token: str = "ya29.test-token") -> anthropic.AnthropicVertex:
    return anthropic.AnthropicVertex(
        access_token=token, project_id="proj-1", region="us-east5", base_url=url + "/v1", max_retries=0
    )


def fault(name: str, error: str | None = None) -> dict[str, str]:
    return {"x-simulator-fault": name, **({"x-simulator-error": error} if error else {})}


def no_anthropic_headers(headers: httpx2.Headers) -> bool:
    return not any(k.startswith("anthropic-ratelimit-") or k in ("request-id", "retry-after") for k in headers)


def stream_types(client: Any, model: str, headers: dict[str, str] | None = None) -> tuple[list[str], Any]:
    with client.messages.stream(model=model, max_tokens=30, messages=USER, extra_headers=headers or {}) as s:
        kinds = [e.type for e in s]
        return kinds, (s.response.headers, s.get_final_message())


# ---- Bedrock -------------------------------------------------------------------------------------


def test_bedrock_invoke_with_sigv4(url: str) -> None:
    raw = bedrock(url).messages.with_raw_response.create(model=BEDROCK_MODEL, max_tokens=12, messages=USER)
    message = raw.parse()
    assert raw.status_code == 200 and raw.headers["x-amzn-requestid"].startswith("req_")
    assert no_anthropic_headers(raw.headers)
    assert message.model == "claude-haiku-4-5-20251001" and message.usage.output_tokens == 12
    assert message.stop_reason == "max_tokens" and message.content[0].type == "text" and message.content[0].text


def test_bedrock_stream_is_an_event_stream(url: str) -> None:
    kinds, (headers, final) = stream_types(bedrock(url), "anthropic.claude-haiku-4-5-20251001-v1:0")
    assert headers["content-type"] == "application/vnd.amazon.eventstream" and no_anthropic_headers(headers)
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.usage.output_tokens == 30 and kinds.count("content_block_delta") == 30


def test_bedrock_bearer_token_is_accepted(url: str) -> None:
    client = anthropic.AnthropicBedrock(api_key="bedrock-api-key-abc", aws_region=REGION, base_url=url, max_retries=0)
    assert client.messages.create(model=BEDROCK_MODEL, max_tokens=3, messages=USER).usage.output_tokens == 3


def test_bedrock_wrong_secret_is_refused(url: str) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        bedrock(url, secret="not-the-secret").messages.create(model=BEDROCK_MODEL, max_tokens=3, messages=USER)
    assert info.value.status_code == 403
    assert info.value.response.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
    assert "signature we calculated does not match" in info.value.body["message"]  # type: ignore[index]
    assert "not-the-secret" not in info.value.response.text


def test_bedrock_unsigned_and_unknown_keys_are_refused(url: str) -> None:
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 3, "messages": USER})
    path = f"/model/{BEDROCK_MODEL}/invoke"
    unsigned = httpx2.post(url + path, content=body)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")
    stranger = signed_post(url, path, body, access_key="AKIASOMEONEELSE00000")
    assert stranger.status_code == 403 and stranger.json() == {
        "message": "The security token included in the request is invalid."
    }


def test_bedrock_mid_stream_exception_frames(url: str) -> None:
    for error, expected in ((None, "modelStreamErrorException"), ("ThrottlingException", "throttlingException")):
        kinds: list[str] = []
        with (
            pytest.raises(anthropic.APIStatusError) as info,
            bedrock(url).messages.stream(
                model=BEDROCK_MODEL, max_tokens=40, messages=USER, extra_headers=fault("stream_error", error)
            ) as s,
        ):
            kinds.extend(e.type for e in s)
        assert info.value.status_code == 200  # the SDK's status for an error inside a 200 stream
        assert info.value.body["error"]["type"] == expected  # type: ignore[index]
        assert "content_block_delta" in kinds and "message_stop" not in kinds


def test_bedrock_throttling_429(url: str) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        stream_types(bedrock(url), BEDROCK_MODEL, fault("rate_limit"))
    response = info.value.response
    assert response.headers["x-amzn-errortype"].startswith("ThrottlingException:") and no_anthropic_headers(
        response.headers
    )
    assert info.value.body == {"message": "Too many requests, please wait before trying again."}


def test_bedrock_overloaded_model_is_424(url: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_types(bedrock(url), BEDROCK_MODEL, fault("overloaded"))
    assert info.value.status_code == 424
    assert info.value.response.headers["x-amzn-errortype"].startswith("ModelStreamErrorException:")
    assert info.value.body == {"message": "Overloaded", "originalStatusCode": 529, "originalMessage": "Overloaded"}
    with pytest.raises(anthropic.APIStatusError) as info:
        bedrock(url).messages.create(
            model=BEDROCK_MODEL, max_tokens=5, messages=USER, extra_headers=fault("overloaded")
        )
    assert info.value.status_code == 424
    assert info.value.response.headers["x-amzn-errortype"].startswith("ModelErrorException:")


@pytest.mark.parametrize(
    ("error", "status"),
    [("ServiceUnavailableException", 503), ("ModelTimeoutException", 408), ("ThrottlingException", 429)],
)
def test_bedrock_fault_as_a_chosen_exception(url: str, error: str, status: int) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        bedrock(url).messages.create(
            model=BEDROCK_MODEL, max_tokens=5, messages=USER, extra_headers=fault("api_error", error)
        )
    assert info.value.status_code == status
    assert info.value.response.headers["x-amzn-errortype"].startswith(error + ":")


def test_bedrock_validation_errors(url: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        bedrock(url).messages.create(model="anthropic.titan-text-v1", max_tokens=5, messages=USER)
    assert info.value.body == {"message": "The provided model identifier is invalid."}
    assert info.value.response.headers["x-amzn-errortype"].startswith("ValidationException:")
    path = f"/model/{BEDROCK_MODEL}/invoke"
    for body, why in (
        ({"max_tokens": 3, "messages": USER}, "required key [anthropic_version] not found"),
        ({"anthropic_version": "x", "model": "m", "max_tokens": 3, "messages": USER}, "extraneous key [model]"),
        ({"anthropic_version": "x", "messages": USER}, "max_tokens: Field required"),
    ):
        response = signed_post(url, path, json.dumps(body))
        assert response.status_code == 400 and why in response.json()["message"]


def test_bedrock_stream_signed_by_botocore_decoded_by_the_harness(url: str) -> None:
    """The fast transport's path: botocore's SigV4Auth signs, harness.core.eventstream decodes."""
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 25, "messages": USER})
    decoder = BedrockEventDecoder()
    events = []
    with signed_stream(url, f"/model/{BEDROCK_MODEL}/invoke-with-response-stream", body) as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            events.extend(decoder.feed(chunk))
    decoder.end()
    assert isinstance(events[0], MessageStart) and events[0].model == "claude-haiku-4-5-20251001"
    assert sum(isinstance(e, ContentBlockDelta) for e in events) == 25 and isinstance(events[-1], MessageStop)
    assert not any(isinstance(e, Ping) for e in events)  # Bedrock passes on no pings
    decoder = BedrockEventDecoder()
    with signed_stream(url, f"/model/{BEDROCK_MODEL}/invoke-with-response-stream", body, fault("stream_error")) as r:
        last = [e for chunk in r.iter_raw() for e in decoder.feed(chunk)][-1]
    assert last == StreamError("modelStreamErrorException", "Overloaded")


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5-20251101"),
        ("anthropic.claude-3-haiku-20240307-v1:0:200k", "claude-3-haiku-20240307"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-haiku-4-5-v1",
            "claude-haiku-4-5",
        ),
        ("anthropic.titan-text-v1", None),
        ("meta.llama3-8b-instruct-v1:0", None),
    ],
)
def test_bedrock_model_ids(model_id: str, name: str | None) -> None:
    assert bedrock_model_name(model_id) == name


def test_sigv4_refuses_stale_and_tampered_requests() -> None:
    creds = {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY}
    request = AWSRequest("POST", "http://127.0.0.1:9/model/m:0/invoke?b=2&a=1", data=b"{}", headers={"X-A": " x  y "})
    SigV4Auth(Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY), "bedrock", REGION).add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "127.0.0.1:9"}
    assert verify("POST", "/model/m:0/invoke", "b=2&a=1", headers, b"{}", creds) == DEFAULT_ACCESS_KEY_ID
    for args, error_type in (
        (("POST", "/model/m:0/invoke", "b=2&a=1", headers, b"{ }"), "InvalidSignatureException"),
        (("POST", "/model/m:0/invoke", "a=1", headers, b"{}"), "InvalidSignatureException"),
        (("GET", "/model/m:0/invoke", "b=2&a=1", headers, b"{}"), "InvalidSignatureException"),
        (("POST", "/model/m:0/invoke", "b=2&a=1", headers | {"x-a": "z"}, b"{}"), "InvalidSignatureException"),
    ):
        verdict = verify(*args, creds)
        assert isinstance(verdict, SignatureRejected) and verdict.error_type == error_type, args
    stale = verify("POST", "/model/m:0/invoke", "b=2&a=1", headers, b"{}", creds, now=time.time() + 600)
    assert isinstance(stale, SignatureRejected) and stale.message.startswith("Signature expired")
    wrong_service = verify("POST", "/model/m:0/invoke", "b=2&a=1", headers, b"{}", creds, service="s3")
    assert isinstance(wrong_service, SignatureRejected) and "service" in wrong_service.message


def signed_request(
    url: str, path: str, body: str, headers: dict[str, str] | None = None, access_key: str = DEFAULT_ACCESS_KEY_ID
) -> httpx2.Request:
    all_headers = {"content-type": "application/json", **(headers or {})}
    request = AWSRequest("POST", url + path, data=body.encode(), headers=all_headers)
    SigV4Auth(Credentials(access_key, DEFAULT_SECRET_ACCESS_KEY), "bedrock", REGION).add_auth(request)
    return httpx2.Request("POST", url + path, content=body.encode(), headers=dict(request.headers.items()))


def signed_post(url: str, path: str, body: str, access_key: str = DEFAULT_ACCESS_KEY_ID) -> httpx2.Response:
    with httpx2.Client() as client:
        return client.send(signed_request(url, path, body, access_key=access_key))


class signed_stream:  # a context manager, named like httpx's own stream()
    def __init__(self, url: str, path: str, body: str, headers: dict[str, str] | None = None) -> None:
        self.client = httpx2.Client()
        self.request = signed_request(url, path, body, headers)

    def __enter__(self) -> httpx2.Response:
        self.response = self.client.send(self.request, stream=True)
        return self.response

    def __exit__(self, *exc: object) -> None:
        self.response.close()
        self.client.close()


# ---- Vertex --------------------------------------------------------------------------------------


def test_vertex_raw_predict_and_stream(url: str) -> None:
    raw = vertex(url).messages.with_raw_response.create(model=VERTEX_MODEL, max_tokens=7, messages=USER)
    assert raw.status_code == 200 and no_anthropic_headers(raw.headers)
    message = raw.parse()
    assert message.model == "claude-haiku-4-5-20251001" and message.usage.output_tokens == 7
    kinds, (headers, final) = stream_types(vertex(url), VERTEX_MODEL)
    assert headers["content-type"].startswith("text/event-stream") and no_anthropic_headers(headers)
    assert kinds[:2] == ["message_start", "content_block_start"] and kinds[-1] == "message_stop"
    assert final.usage.output_tokens == 30


def test_vertex_count_tokens(url: str) -> None:
    counted = vertex(url).messages.count_tokens(model=VERTEX_MODEL, messages=[{"role": "user", "content": "x" * 40}])
    assert counted.input_tokens == 10


def test_vertex_requires_a_bearer_token(url: str) -> None:
    path = f"/v1/projects/p/locations/us-east5/publishers/anthropic/models/{VERTEX_MODEL}:rawPredict"
    response = httpx2.post(
        url + path, json={"anthropic_version": "vertex-2023-10-16", "max_tokens": 3, "messages": USER}
    )
    assert response.status_code == 401 and response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_vertex_throttling_is_resource_exhausted(url: str) -> None:
    with pytest.raises(anthropic.RateLimitError) as info:
        stream_types(vertex(url), VERTEX_MODEL, fault("rate_limit"))
    error = info.value.body["error"]  # type: ignore[index]
    assert error["code"] == 429 and error["status"] == "RESOURCE_EXHAUSTED" and "Quota exceeded" in error["message"]
    assert no_anthropic_headers(info.value.response.headers)
    with pytest.raises(anthropic.APIStatusError) as unavailable:
        vertex(url).messages.create(
            model=VERTEX_MODEL, max_tokens=5, messages=USER, extra_headers=fault("rate_limit", "UNAVAILABLE")
        )
    assert unavailable.value.status_code == 503
    assert unavailable.value.body["error"]["status"] == "UNAVAILABLE"  # type: ignore[index]


def test_vertex_passes_the_models_own_errors(url: str) -> None:
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_types(vertex(url), VERTEX_MODEL, fault("stream_error"))
    assert info.value.status_code == 200 and info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        vertex(url).messages.create(model=VERTEX_MODEL, max_tokens=5, messages=USER, extra_headers=fault("overloaded"))
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing:
        vertex(url).messages.create(model="gemini-2.0-flash", max_tokens=5, messages=USER)
    assert missing.value.body["error"]["status"] == "NOT_FOUND"  # type: ignore[index]
    assert "publishers/anthropic/models/gemini-2.0-flash" in missing.value.body["error"]["message"]  # type: ignore[index]


# ---- the first-party path, and a single-platform simulator -------------------------------------


def test_first_party_unchanged_with_platform_all(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
    _, (headers, final) = stream_types(client, "claude-haiku-4-5")
    assert headers["request-id"].startswith("req_") and "anthropic-ratelimit-requests-limit" in headers
    assert final.usage.output_tokens == 30
    body = {"model": "claude-haiku-4-5", "max_tokens": 3, "messages": USER, "stream": True}
    raw = httpx2.post(url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert raw.headers["content-type"].startswith("text/event-stream") and b"event: ping\n" in raw.content
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=USER, extra_headers=fault("rate_limit"))
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_bedrock_only_simulator_with_its_own_credentials() -> None:
    args = [*FAST, "--aws-access-key-id", "AKIAOTHERTESTKEY0000", "--aws-secret-access-key", "other/secret"]
    with SimulatorProcess([*args, "--require-key", "brk-1"], platform="bedrock") as sim:
        assert sim.url is not None
        other = anthropic.AnthropicBedrock(
            aws_access_key="AKIAOTHERTESTKEY0000",
            aws_secret_key="other/secret",
            aws_region="ap-southeast-2",
            base_url=sim.url,
            max_retries=0,
        )
        assert other.messages.create(model=BEDROCK_MODEL, max_tokens=2, messages=USER).usage.output_tokens == 2
        with pytest.raises(anthropic.PermissionDeniedError):
            bedrock(sim.url).messages.create(model=BEDROCK_MODEL, max_tokens=2, messages=USER)
        token = anthropic.AnthropicBedrock(api_key="brk-2", aws_region=REGION, base_url=sim.url, max_retries=0)
        with pytest.raises(anthropic.PermissionDeniedError):
            token.messages.create(model=BEDROCK_MODEL, max_tokens=2, messages=USER)
        right = anthropic.AnthropicBedrock(api_key="brk-1", aws_region=REGION, base_url=sim.url, max_retries=0)
        assert right.messages.create(model=BEDROCK_MODEL, max_tokens=2, messages=USER).usage.output_tokens == 2
        first_party = httpx2.post(
            sim.url + "/v1/messages", json={"model": "claude-haiku-4-5"}, headers={"authorization": "Bearer brk-1"}
        )
        assert first_party.status_code == 404
        assert first_party.headers["x-amzn-errortype"].startswith("UnknownOperationException:")
