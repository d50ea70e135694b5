"""Which platform a request came through, and what the server asks of that platform's front end.

The simulator serves the Messages API as Anthropic's API does (`--platform anthropic`, the default), as
Amazon Bedrock does (`bedrock`), as Google Vertex AI does (`vertex`), or all of them at once (`all`, each
on its own path family). A platform changes only the edges of a call: its path, its authentication, the
framing of its stream, its headers and its error shapes. Model profiles, latency, rate limits and faults
are the first-party ones, so a run against each platform measures the same simulated service.

The server builds the first-party response (an Anthropic error body, say) and hands the bytes to the
request's :class:`PlatformRequest` (bedrock.py, vertex.py), which puts them in the platform's shape. A
fault's platform error can be chosen per request with the header `x-simulator-error: NAME` (a Bedrock
exception name or a Google status, see docs/simulator.md).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .http import LAST_CHUNK, Request
from .wire import DeltaTemplates

__all__ = [
    "ERROR_HEADER",
    "PLATFORMS",
    "Framer",
    "PlatformRequest",
    "Reply",
    "anthropic_error",
    "platform_headers",
]

PLATFORMS = ("anthropic", "bedrock", "vertex", "all")
ERROR_HEADER = "x-simulator-error"

Reply = tuple[int, bytes, list[tuple[str, str]]]
"""Status, body and headers of an answer the platform writes itself (an authentication failure)."""


class Framer:
    """How one platform writes a stream: its response head, each event, and the end of the body."""

    def __init__(self, event: Callable[[str, Any], bytes], ping: bytes, head: Callable[..., bytes]) -> None:
        self.event = event  # (event name, data) -> bytes of one HTTP chunk
        self.ping = ping
        self.head = head  # (request id, keep_alive) -> status line and headers
        self.end = LAST_CHUNK
        self.templates = DeltaTemplates(event)


class PlatformRequest(ABC):
    """One request to a platform path: what it asks for, and how its answers are shaped."""

    __slots__ = ()

    operation: str | None  # "messages", "count_tokens", or None (a path the platform does not serve)
    model: str  # the model id as the platform's path names it
    stream: bool
    key: str | None  # who is calling, for per-key rate limits; set by check()
    framer: Framer

    @abstractmethod
    def check(self, req: Request) -> Reply | None:
        """Authenticate (and read the test headers); the refusal to send, or None to go on."""

    @abstractmethod
    def prepare(self, body: Any) -> Any:
        """The first-party Messages body this platform body stands for; raises messages.InvalidRequest."""

    @abstractmethod
    def encode(self, status: int, body: bytes, headers: list[tuple[str, str]], request_id: str, close: bool) -> bytes:
        """A complete answer in the platform's shape; an Anthropic error body is translated."""

    @abstractmethod
    def stream_error(self) -> bytes:
        """The bytes that end a stream broken mid-response (the stream_error fault)."""


def anthropic_error(body: bytes) -> tuple[str, str] | None:
    """(error type, message) of an Anthropic error body, or None for any other body."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    error = obj.get("error") if isinstance(obj, dict) and obj.get("type") == "error" else None
    if not isinstance(error, dict):
        return None
    return str(error.get("type", "")), str(error.get("message", ""))


def platform_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers a platform passes on: none of Anthropic's (rate-limit state, retry-after, request-id)."""
    return [
        (name, value)
        for name, value in headers
        if not name.startswith("anthropic-ratelimit-") and name not in ("retry-after", "request-id")
    ]
