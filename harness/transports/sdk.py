"""The SDK transport: calls go through the official ``anthropic`` client.

``client.messages.create(..., stream=True)`` is iterated and each SDK event is turned
into the harness's typed event (:mod:`harness.core.sse`) for the shared measurement. The
request's write time comes from httpx's ``trace`` extension, so TTFT starts when the
request is written, after any wait for a pooled connection (METRICS.md ``t_start``).
SDK exceptions are mapped to the outcome classes of METRICS.md here and only here.
The SDK's SSE decoder is swapped for the harness's bounded one (:class:`BoundedSSEDecoder`).

On Amazon Bedrock and Google Vertex AI (``TransportConfig.platform``) the client is the SDK's
``AnthropicBedrock`` or ``AnthropicVertex`` (:mod:`harness.transports.sdk_platforms`) on the
same HTTP client and trace hook; every platform's errors are classified here alike.
"""

from __future__ import annotations

import contextvars
import inspect
import time
from collections.abc import Mapping
from typing import Any

from harness.transports._compat import import_http_stack

import_http_stack()

import anthropic
import httpx2
from anthropic.resources.messages import Messages

from harness.core.errors import CallError, ProtocolError
from harness.core.measure import CONNECTION, TIMEOUT, CallMeasurement, Outcome, error_detail
from harness.core.request import MessageRequest
from harness.core.stream_events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamEvent,
    Usage,
)
from harness.transports.base import CountTokensError, TransportConfig
from harness.transports.sdk_decoders import BoundedSSEDecoder

__all__ = ["BoundedSSEDecoder", "SDKTransport"]

# Each greenlet has its own context, so the trace hook finds the call it belongs to.
_current: contextvars.ContextVar[CallMeasurement | None] = contextvars.ContextVar("harness_current_call", default=None)

_SDK_PARAMS = frozenset(inspect.signature(Messages.create).parameters) - {"self", "extra_body"}
_COUNT_PARAMS = frozenset(inspect.signature(Messages.count_tokens).parameters) - {"self", "extra_body"}

_PAYLOAD_ATTR = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
    "signature_delta": "signature",
}


def _trace(event_name: str, info: dict[str, Any]) -> None:
    if event_name.endswith("send_request_headers.started"):
        measurement = _current.get()
        if measurement is not None:
            measurement.request_sent()


def _install_trace(request: httpx2.Request) -> None:
    request.extensions["trace"] = _trace


def _usage(obj: Any) -> Usage:
    if obj is None:
        return Usage()
    return Usage(
        getattr(obj, "input_tokens", None),
        getattr(obj, "output_tokens", None),
        getattr(obj, "cache_creation_input_tokens", None),
        getattr(obj, "cache_read_input_tokens", None),
    )


def convert_event(event: Any) -> StreamEvent | None:
    """The harness's typed event for one SDK stream event; ``None`` if unknown."""
    kind = getattr(event, "type", None)
    if kind == "content_block_delta":
        delta = event.delta
        payload = getattr(delta, _PAYLOAD_ATTR.get(delta.type, ""), "")
        return ContentBlockDelta(event.index, delta.type, payload if isinstance(payload, str) else "")
    if kind == "message_start":
        message = event.message
        return MessageStart(getattr(message, "id", None), getattr(message, "model", None), _usage(message.usage))
    if kind == "content_block_start":
        return ContentBlockStart(event.index, event.content_block.type)
    if kind == "content_block_stop":
        return ContentBlockStop(event.index)
    if kind == "message_delta":
        return MessageDelta(event.delta.stop_reason, _usage(event.usage))
    if kind == "message_stop":
        return MessageStop()
    return None


class _Anthropic(anthropic.Anthropic):
    """The SDK client with the bounded SSE decoder (the SDK's own seam for other decoders)."""

    def _make_sse_decoder(self) -> BoundedSSEDecoder:
        return BoundedSSEDecoder()


def _client(config: TransportConfig, http_client: httpx2.Client) -> anthropic.Anthropic:
    if config.platform != "anthropic":
        # Imported only for a platform's run: importing the SDK's Bedrock and Vertex clients
        # makes a first-party run's first streamed call measurably slower (~0.25 s).
        from harness.transports.sdk_platforms import platform_client

        return platform_client(config, http_client)
    return _Anthropic(api_key=config.api_key, base_url=config.base_url, max_retries=config.max_retries,
                      http_client=http_client)  # fmt: skip


class SDKTransport:
    """Sends requests with one shared ``anthropic.Anthropic`` client."""

    name = "sdk"

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        http_client = anthropic.DefaultHttpxClient(
            # The pool must not be the bottleneck: every user may hold a stream open.
            limits=httpx2.Limits(max_connections=100_000, max_keepalive_connections=10_000),
            timeout=httpx2.Timeout(config.timeout_s, connect=config.connect_timeout_s),
            event_hooks={"request": [_install_trace]},
            verify=config.verify_tls,
        )
        self.client = _client(config, http_client)

    def send(self, request: MessageRequest, measurement: CallMeasurement) -> None:
        body = request.body()
        kwargs = {k: v for k, v in body.items() if k in _SDK_PARAMS}
        extra = {k: v for k, v in body.items() if k not in _SDK_PARAMS}
        if extra:
            kwargs["extra_body"] = extra
        token = _current.set(measurement)
        try:
            if request.stream:
                self._stream(kwargs, measurement)
            else:
                self._whole(kwargs, measurement)
        except CallError:
            raise
        except anthropic.APIStatusError as exc:
            measurement.response(exc.status_code, exc.response.headers)
            error_type, message = error_detail(exc.body, exc.response.headers)
            if exc.status_code == 200:
                # The SDK raises a mid-stream `event: error` as a status-200 APIStatusError.
                raise CallError(Outcome.stream(error_type), message[:200]) from None
            raise CallError(Outcome.http(exc.status_code), f"{error_type}: {message[:200]}") from None
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
            raise CallError(TIMEOUT, type(exc).__name__) from None
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            raise CallError(CONNECTION, _describe(exc)) from None
        except (ValueError, KeyError, AttributeError, TypeError, httpx2.DecodingError) as exc:
            raise ProtocolError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            _current.reset(token)

    def count_tokens(self, body: Mapping[str, Any]) -> int:
        """The target's ``input_tokens`` for ``body`` (not measured). Through this client, so the pooled
        connection and the SDK's request path are ready for the first measured call."""
        fields = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
        kwargs: dict[str, Any] = {k: v for k, v in fields.items() if k in _COUNT_PARAMS}
        extra = {k: v for k, v in fields.items() if k not in _COUNT_PARAMS}
        if extra:
            kwargs["extra_body"] = extra
        try:
            return int(self.client.messages.count_tokens(**kwargs).input_tokens)
        except anthropic.APIStatusError as exc:
            raise CountTokensError(f"count_tokens answered HTTP {exc.status_code}", exc.status_code) from None
        except Exception as exc:  # a platform without the endpoint, a connection, a body that is not one
            raise CountTokensError(f"count_tokens failed: {_describe(exc)}") from None

    def _stream(self, kwargs: dict[str, Any], measurement: CallMeasurement) -> None:
        stream = self.client.messages.create(**kwargs)
        with stream:
            response = stream.response
            measurement.response(response.status_code, response.headers)
            clock = time.monotonic
            for sdk_event in stream:
                event = convert_event(sdk_event)
                if event is not None:
                    measurement.event(event, clock())
            measurement.stream_ended()

    def _whole(self, kwargs: dict[str, Any], measurement: CallMeasurement) -> None:
        raw = self.client.messages.with_raw_response.create(**kwargs)
        measurement.response(raw.status_code, raw.headers)
        message = raw.parse()
        measurement.message(_usage(message.usage), message.stop_reason, getattr(message, "id", None))


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else f"{type(exc).__name__}: {exc}"
    return detail[:200]
