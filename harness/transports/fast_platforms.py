"""The fast transport on Amazon Bedrock and Google Vertex AI: the same connection pool and reads.

Each is :class:`~harness.transports.fast.FastTransport` with its own request and, for Bedrock,
its own stream decoding; the pool, the stall watch, the status handling and the measurement
are the first-party path's, so the records are the same as the SDK's ``AnthropicBedrock`` and
``AnthropicVertex`` give for the same stream:

* **Bedrock**: ``POST /model/{id}/invoke-with-response-stream`` (``/invoke`` unstreamed), the
  body without ``model`` and ``stream`` and with ``anthropic_version``
  (:func:`harness.core.platforms.bedrock_request`), each request signed with botocore's
  ``SigV4Auth`` (or a bearer token); the AWS event stream read by
  :class:`harness.core.eventstream.BedrockEventDecoder` (both CRCs checked; an exception frame
  is a ``stream_<exception>`` failure, a broken frame a ``protocol`` one);
* **Vertex**: ``POST …/models/{id}:streamRawPredict`` (``:rawPredict``) with a bearer token
  google-auth keeps fresh; the stream is the first-party SSE, read by the first-party loop.

The first-party hot path is untouched: these classes only override what differs.
"""

from __future__ import annotations

import json
import time

from harness.core.eventstream import BedrockEventDecoder
from harness.core.measure import CallMeasurement
from harness.core.platforms import bedrock_request, vertex_request
from harness.core.request import MessageRequest
from harness.transports.base import TransportConfig
from harness.transports.credentials import AwsAuth, GoogleAuth
from harness.transports.fast import USER_AGENT, FastTransport, _StallWatch, read_until_first_token
from harness.transports.fast_http import StreamingResponse

__all__ = ["BedrockFastTransport", "VertexFastTransport"]

# The headers botocore signs (besides host and x-amz-date): what the SDK's Bedrock client sends.
_SIGNED = {"Accept": "application/json", "Content-Type": "application/json"}


def _request(path: str, authority: str, headers: dict[str, str], payload: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"User-Agent: {USER_AGENT}", "Accept-Encoding: identity", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class BedrockFastTransport(FastTransport):
    """Bedrock's InvokeModelWithResponseStream over the fast transport's pool."""

    name = "fast"

    def __init__(self, config: TransportConfig) -> None:
        super().__init__(config)
        self._auth = AwsAuth(config)

    def request_bytes(self, request: MessageRequest) -> bytes:
        path, body = bedrock_request(request.body())
        path = self._base_path + path
        payload = _json(body)
        # Signed per request: the signature covers the body and the time.
        headers = self._auth.headers(self._origin + path, payload, _SIGNED)
        return _request(path, self._authority, headers, payload)

    @staticmethod
    def _stream(response: StreamingResponse, measurement: CallMeasurement, watch: _StallWatch) -> None:
        decoder = BedrockEventDecoder()
        feed, event = decoder.feed, measurement.event
        read, clock = response.read_stamped, time.monotonic
        # As the first-party loop: each read's events stamped with the kernel's receive time of
        # its newest bytes (on the monotonic clock), and the first token's possible lateness counted.
        offset = read_until_first_token(read, feed, measurement, watch)
        while offset is not None:
            data, arrived = read()
            if not data:
                break
            watch.last = read_at = clock()
            now = read_at if arrived is None or arrived - offset > read_at else arrived - offset
            for typed in feed(data):
                event(typed, now)
        decoder.end()
        measurement.stream_ended()


class VertexFastTransport(FastTransport):
    """Vertex's streamRawPredict over the fast transport's pool; its stream is the first-party SSE."""

    name = "fast"

    def __init__(self, config: TransportConfig) -> None:
        super().__init__(config)
        self._auth = GoogleAuth(config)
        self._project = self._auth.project or ""
        self._region = config.region or "global"
        self._headers = {**_SIGNED}

    def request_bytes(self, request: MessageRequest) -> bytes:
        path, body = vertex_request(request.body(), self._project, self._region)
        headers = {**self._headers, "Authorization": f"Bearer {self._auth.token()}"}
        return _request(self._base_path + path, self._authority, headers, _json(body))
