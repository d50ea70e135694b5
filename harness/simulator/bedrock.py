"""Amazon Bedrock's front end: InvokeModel paths, SigV4 or bearer auth, event-stream framing, AWS errors.

    POST /model/{model-id}/invoke-with-response-stream   a stream of event-stream frames, one per event:
                                                         :event-type chunk, payload {"bytes": base64(event)}
    POST /model/{model-id}/invoke                        the complete message as JSON

The body is a Messages body without `model` and `stream` and with `anthropic_version` (any value: the
SDK sends its own constant). Model ids are Bedrock's (`anthropic.claude-haiku-4-5-20251001-v1:0`, an
inference profile `us.anthropic.…`, or an ARN ending in one) and serve the first-party profile they name.

Errors are JSON `{"message": ...}` with the exception name in `x-amzn-ErrorType`; a stream broken
mid-response ends with an exception frame (`:message-type exception`, `:exception-type` e.g.
`modelStreamErrorException`). A first-party answer maps as: 400/413 -> 400 ValidationException, unknown
model -> 400 ValidationException, 429 -> 429 ThrottlingException, 500 -> 500 InternalServerException,
529 (the model overloaded) -> 424 ModelStreamErrorException (ModelErrorException on /invoke) carrying
originalStatusCode 529. `x-simulator-error: NAME` picks another exception for a request's fault (e.g.
ServiceUnavailableException 503, ModelTimeoutException 408, and mid-stream ThrottlingException).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from . import wire
from .config import SimulatorConfig
from .eventstream import chunk_frame, exception_frame
from .http import LAST_CHUNK, Request, chunk, response_head
from .messages import InvalidRequest
from .platform import ERROR_HEADER, Framer, PlatformRequest, Reply, anthropic_error, platform_headers
from .sigv4 import SignatureRejected, verify

__all__ = ["EXCEPTIONS", "Bedrock", "BedrockRequest", "bedrock_model_name"]

# Bedrock exceptions by name: HTTP status and the message Bedrock sends (None: the first-party message).
EXCEPTIONS: dict[str, tuple[int, str | None]] = {
    "ValidationException": (400, None),
    "AccessDeniedException": (403, "You don't have access to the model with the specified model ID."),
    "UnknownOperationException": (404, None),
    "ModelTimeoutException": (408, "Model has timed out in processing the request. Try your request again."),
    "ModelStreamErrorException": (424, None),
    "ModelErrorException": (424, None),
    "ThrottlingException": (429, "Too many requests, please wait before trying again."),
    "ModelNotReadyException": (429, "Model is not ready to serve inference requests."),
    "InternalServerException": (500, None),
    "ServiceUnavailableException": (503, "Bedrock is unable to process your request."),
}
# The exceptions a response stream can carry as a frame (the ResponseStream union of the Bedrock API).
STREAM_EXCEPTIONS = {
    "InternalServerException",
    "ModelStreamErrorException",
    "ValidationException",
    "ThrottlingException",
    "ModelTimeoutException",
    "ServiceUnavailableException",
}
OVERLOADED = "Overloaded"
INVALID_MODEL = "The provided model identifier is invalid."
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

# anthropic.<name>-v<N>[:<M>...], after an optional inference-profile prefix (us., eu., global., …).
_MODEL_ID = re.compile(r"^(?:[a-z-]+\.)?anthropic\.(?P<name>claude[a-z0-9.-]*?)(?:-v\d+(?::[0-9a-z]+)*)?$")


def bedrock_model_name(model_id: str) -> str | None:
    """The Anthropic model name a Bedrock model id or ARN stands for (`claude-haiku-4-5-20251001`), or None."""
    if model_id.startswith("arn:"):
        model_id = model_id.rpartition("/")[2]  # …:foundation-model/<id> or …:inference-profile/<id>
    match = _MODEL_ID.match(model_id)
    return match["name"] if match else None


class Bedrock:
    """The Bedrock front end of one simulator: its credentials and its stream framing."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.credentials = {config.aws_access_key_id: config.aws_secret_access_key}
        self.require_key = config.require_key
        self.framer = Framer(_event, b"", _stream_head)  # Bedrock passes on no pings

    def request(self, req: Request) -> BedrockRequest:
        parts = req.path.split("/")  # "", "model", id, operation
        operation = None
        stream = False
        if len(parts) == 4 and parts[2] and parts[3] in ("invoke", "invoke-with-response-stream"):
            operation = "messages"
            stream = parts[3] == "invoke-with-response-stream"
        return BedrockRequest(self, unquote(parts[2]) if len(parts) > 2 else "", operation, stream)

    def unknown(self, req: Request) -> BedrockRequest:
        return BedrockRequest(self, "", None, False)


class BedrockRequest(PlatformRequest):
    __slots__ = ("framer", "front", "key", "model", "operation", "override", "stream")

    def __init__(self, front: Bedrock, model: str, operation: str | None, stream: bool) -> None:
        self.front = front
        self.model = model
        self.operation = operation
        self.stream = stream
        self.framer = front.framer
        self.key: str | None = None
        self.override: str | None = None

    def check(self, req: Request) -> Reply | None:
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            # A Bedrock API key (AWS_BEARER_TOKEN_BEDROCK): any, unless --require-key names the one.
            if not token or (self.front.require_key is not None and token != self.front.require_key):
                return _refusal(SignatureRejected("UnrecognizedClientException", "Invalid API Key format."))
            self.key = token
        else:
            verdict = verify(req.method, req.path, req.query, req.headers, req.body, self.front.credentials)
            if isinstance(verdict, SignatureRejected):
                return _refusal(verdict)
            self.key = verdict
        override = req.headers.get(ERROR_HEADER)
        if override is not None:
            name = override[:1].upper() + override[1:]
            if name not in EXCEPTIONS:
                message = f"{ERROR_HEADER}: {override!r} is not one of {', '.join(EXCEPTIONS)}"
                return _refusal(SignatureRejected("ValidationException", message, 400))
            self.override = name
        return None

    def prepare(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise InvalidRequest("Malformed input request, please reformat your input and try again.")
        if "anthropic_version" not in body:
            raise InvalidRequest(_malformed("required key [anthropic_version] not found"))
        for key in ("model", "stream"):
            if key in body:
                raise InvalidRequest(_malformed(f"extraneous key [{key}] is not permitted"))
        out = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
        # An id that names no Claude model stays as given, which no profile resolves: 400 invalid model.
        out["model"] = bedrock_model_name(self.model) or self.model
        out["stream"] = self.stream
        return out

    def encode(self, status: int, body: bytes, headers: list[tuple[str, str]], request_id: str, close: bool) -> bytes:
        extra: list[tuple[str, str]] = []
        error = anthropic_error(body) if status >= 400 else None
        if error is not None:
            name, fields = self._exception(status, *error)
            status = EXCEPTIONS[name][0]
            body = wire.dumps(fields)
            extra.append(("x-amzn-ErrorType", name + _ERROR_TYPE_SUFFIX))
        return _encode(status, body, [*extra, *platform_headers(headers)], request_id, close)

    def stream_error(self) -> bytes:
        name = self.override if self.override in STREAM_EXCEPTIONS else "ModelStreamErrorException"
        assert name is not None
        fields = self._fields(name, 529, OVERLOADED)
        message = str(fields.pop("message"))
        return chunk(exception_frame(name[0].lower() + name[1:], message, **fields)) + LAST_CHUNK

    def _exception(self, status: int, error_type: str, message: str) -> tuple[str, dict[str, Any]]:
        if self.override is not None and status in (429, 500, 529):
            name = self.override  # a fault's error, as the test asked for it
        elif status == 429:
            name = "ThrottlingException"
        elif status == 529:
            name = "ModelStreamErrorException" if self.stream else "ModelErrorException"
        elif status == 500:
            name = "InternalServerException"
        elif status == 404 and self.operation is not None:
            name, message = "ValidationException", INVALID_MODEL  # the model id names no model
        elif status == 404:
            name = "UnknownOperationException"
        elif status in (401, 403):
            name = "AccessDeniedException"
        else:
            name = "ValidationException"
        return name, self._fields(name, status, message)

    @staticmethod
    def _fields(name: str, status: int, message: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"message": EXCEPTIONS[name][1] or message}
        if name in ("ModelStreamErrorException", "ModelErrorException"):
            # Bedrock's wrapper of an error the model itself answered.
            fields["originalStatusCode"] = status
            fields["originalMessage"] = message
        return fields


def _malformed(why: str) -> str:
    return f"Malformed input request: #: {why}, please reformat your input and try again."


def _event(name: str, data: Any) -> bytes:
    event_json = wire.dumps(data)
    return chunk(chunk_frame(event_json, padding=len(event_json)))


def _stream_head(request_id: str, keep_alive: bool) -> bytes:
    return response_head(
        200,
        [
            ("content-type", "application/vnd.amazon.eventstream"),
            ("transfer-encoding", "chunked"),
            ("x-amzn-requestid", request_id),
            ("x-amzn-bedrock-content-type", "application/json"),
            *([("connection", "close")] if not keep_alive else []),
        ],
    )


def _encode(status: int, body: bytes, headers: list[tuple[str, str]], request_id: str, close: bool) -> bytes:
    head = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("x-amzn-requestid", request_id),
        *headers,
        *([("connection", "close")] if close else []),
    ]
    return response_head(status, head) + body


def _refusal(why: SignatureRejected) -> Reply:
    headers = [("x-amzn-ErrorType", why.error_type + _ERROR_TYPE_SUFFIX)]
    return why.status, wire.dumps({"message": why.message}), headers
