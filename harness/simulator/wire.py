"""Anthropic Messages API wire format: error bodies, SSE event framing and pre-encoded delta templates.

Everything here produces bytes exactly as the real API puts them on the wire, so the unmodified anthropic
SDK parses them. The streaming hot path (one content delta per token, tens of thousands per second) uses
byte templates built once per token text instead of json.dumps per delta.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .http import chunk

# The error types of https://docs.anthropic.com/en/api/errors, by HTTP status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def dumps(obj: Any) -> bytes:
    # Compact separators like the real API; ensure_ascii=False keeps multi-byte text readable.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error_body(status: int, message: str, request_id: str, error_type: str | None = None) -> bytes:
    return dumps(
        {
            "type": "error",
            "error": {"type": error_type or ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": request_id,
        }
    )


def sse(event: str, data: Any) -> bytes:
    """One SSE event as the bytes of one HTTP chunk."""
    return chunk(b"event: %s\ndata: %s\n\n" % (event.encode("ascii"), dumps(data)))


def sse_raw(event: str, data_json: bytes) -> bytes:
    return chunk(b"event: %s\ndata: %s\n\n" % (event.encode("ascii"), data_json))


PING = sse("ping", {"type": "ping"})


class DeltaTemplates:
    """Pre-encoded `content_block_delta` chunks, memoised per (block index, delta kind, payload).

    Generated text is drawn from a small vocabulary, so after warm-up nearly every delta is a dict lookup
    of ready-to-write bytes.
    """

    _FIELD = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}

    def __init__(self, frame: Callable[[str, Any], bytes] = sse) -> None:
        self._frame = frame  # how one event is written: SSE, or a platform's framing
        self._cache: dict[tuple[int, str, str], bytes] = {}

    def get(self, index: int, kind: str, payload: str) -> bytes:
        key = (index, kind, payload)
        hit = self._cache.get(key)
        if hit is None:
            data = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": kind, self._FIELD[kind]: payload},
            }
            hit = self._frame("content_block_delta", data)
            # Bound the memo: tool-input JSON fragments are not from a vocabulary and would grow it forever.
            if len(self._cache) < 50_000:
                self._cache[key] = hit
        return hit
