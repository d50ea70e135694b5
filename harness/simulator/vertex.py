"""Google Vertex AI's front end: rawPredict paths, bearer auth, first-party SSE, Google's error shape.

    POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:streamRawPredict
    POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict
    POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/count-tokens:rawPredict

(also without the leading /v1, for a client whose base URL already ends in it). The body is a Messages
body without `model` and with `anthropic_version` (any value); the stream is the first-party SSE stream,
byte for byte. Model ids are Vertex's (`claude-haiku-4-5@20251001`) and serve the profile they name.
A request needs `Authorization: Bearer <token>` (any token, unless --require-key names the one).

Errors the model answers pass through as Anthropic error bodies (400, 413, 529 and the mid-stream
`event: error`); Vertex's own are Google's `{"error": {"code", "message", "status"}}`: 401
UNAUTHENTICATED, 404 NOT_FOUND (unknown model), 429 RESOURCE_EXHAUSTED (rate limit or fault), 500
INTERNAL. `x-simulator-error: STATUS` picks another Google status for a request's fault (e.g. UNAVAILABLE).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from . import wire
from .config import SimulatorConfig
from .http import LAST_CHUNK, Request, response_head
from .messages import InvalidRequest
from .platform import ERROR_HEADER, Framer, PlatformRequest, Reply, anthropic_error, platform_headers

__all__ = ["GOOGLE_STATUSES", "Vertex", "VertexRequest"]

GOOGLE_STATUSES: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_PATH = re.compile(
    r"^(?:/v1)?/projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/publishers/anthropic/models/(?P<target>[^/]+)$"
)
_NO_CREDENTIAL = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential."
)
_BAD_CREDENTIAL = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential."
)
_OVERLOADED_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


class Vertex:
    """The Vertex front end of one simulator."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.require_key = config.require_key
        self.framer = Framer(wire.sse, wire.PING, _stream_head)

    @staticmethod
    def owns(path: str) -> bool:
        return "/publishers/anthropic/models/" in path and _PATH.match(path) is not None

    def request(self, req: Request) -> VertexRequest:
        match = _PATH.match(req.path)
        assert match is not None  # owns() said so
        model, _, specifier = unquote(match["target"]).rpartition(":")
        operation: str | None = None
        if model == "count-tokens" and specifier == "rawPredict":
            operation = "count_tokens"
        elif model and specifier in ("rawPredict", "streamRawPredict"):
            operation = "messages"
        where = f"projects/{match['project']}/locations/{match['region']}/publishers/anthropic/models/{model}"
        return VertexRequest(self, model, operation, specifier == "streamRawPredict", where)

    def unknown(self, req: Request) -> VertexRequest:
        return VertexRequest(self, "", None, False, req.path)


class VertexRequest(PlatformRequest):
    __slots__ = ("framer", "front", "key", "model", "operation", "override", "resource", "stream")

    def __init__(self, front: Vertex, model: str, operation: str | None, stream: bool, resource: str) -> None:
        self.front = front
        self.model = model
        self.operation = operation
        self.stream = stream
        self.resource = resource
        self.framer = front.framer
        self.key: str | None = None
        self.override: str | None = None

    def check(self, req: Request) -> Reply | None:
        auth = req.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not token:
            return _google(401, "UNAUTHENTICATED", _NO_CREDENTIAL)
        if self.front.require_key is not None and token != self.front.require_key:
            return _google(401, "UNAUTHENTICATED", _BAD_CREDENTIAL)
        self.key = token
        override = req.headers.get(ERROR_HEADER)
        if override is not None:
            if override not in GOOGLE_STATUSES:
                message = f"{ERROR_HEADER}: {override!r} is not one of {', '.join(GOOGLE_STATUSES)}"
                return _google(400, "INVALID_ARGUMENT", message)
            self.override = override
        return None

    def prepare(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise InvalidRequest("Request body must be a JSON object")
        if self.operation == "count_tokens":
            return body  # names its model in the body, like the first-party count_tokens
        if "anthropic_version" not in body:
            raise InvalidRequest("anthropic_version: Field required")
        out = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
        out["model"] = self.model.replace("@", "-")  # claude-haiku-4-5@20251001 -> claude-haiku-4-5-20251001
        out["stream"] = self.stream  # the method decides, whatever the body says
        return out

    def encode(self, status: int, body: bytes, headers: list[tuple[str, str]], request_id: str, close: bool) -> bytes:
        content_type = "application/json"
        if status >= 400:
            error = anthropic_error(body)
            google = self._google_error(status, error[1]) if error is not None else None
            if google is not None:
                status, body, _ = google
            if error is None or google is not None:  # Vertex's own error (from check() or translated)
                content_type = "application/json; charset=UTF-8"
        head = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
            *platform_headers(headers),
            *([("connection", "close")] if close else []),
        ]
        return response_head(status, head) + body

    def stream_error(self) -> bytes:
        return wire.sse("error", _OVERLOADED_EVENT) + LAST_CHUNK  # the model's own error event, passed on

    def _google_error(self, status: int, message: str) -> Reply | None:
        if self.override is not None and status in (429, 500, 529):
            return _google(GOOGLE_STATUSES[self.override], self.override, f"Simulated {self.override}.")
        if status == 429:
            family = self.model.partition("@")[0]
            return _google(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base "
                f"model: anthropic-{family}. Please submit a quota increase request.",
            )
        if status == 404:
            if self.operation is None:
                return _google(404, "NOT_FOUND", "The requested URL was not found on this server.")
            return _google(404, "NOT_FOUND", f"Publisher Model `{self.resource}` not found.")
        if status == 500:
            return _google(500, "INTERNAL", "Internal error encountered.")
        return None  # the model's answer (400, 413, 529): the Anthropic body as it is


def _google(code: int, status: str, message: str) -> Reply:
    body = wire.dumps({"error": {"code": code, "message": message, "status": status}})
    return code, body, []


def _stream_head(request_id: str, keep_alive: bool) -> bytes:
    return response_head(
        200,
        [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
            *([("connection", "close")] if not keep_alive else []),
        ],
    )
