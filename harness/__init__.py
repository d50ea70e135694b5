"""LLM load-testing harness for Anthropic-compatible Messages APIs, built on Locust.

The public surface is listed in ``__all__``; everything else is private. Names are
imported lazily so that ``python -m harness.simulator`` and the pure parser never
pull in Locust (which monkey-patches the standard library with gevent on import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AnthropicUser",
    "CallError",
    "CallMeasurement",
    "CallRecord",
    "ConfigError",
    "Harness",
    "HarnessError",
    "HarnessOptions",
    "MessageRequest",
    "ProtocolError",
    "SSEDecoder",
    "attach",
    "harness_of",
    "iter_stream_events",
    "parse_event",
]

_WHERE = {
    "AnthropicUser": "harness.user",
    "CallError": "harness.errors",
    "CallMeasurement": "harness.measure",
    "CallRecord": "harness.measure",
    "ConfigError": "harness.errors",
    "Harness": "harness.runtime",
    "HarnessError": "harness.errors",
    "HarnessOptions": "harness.options",
    "MessageRequest": "harness.request",
    "ProtocolError": "harness.errors",
    "SSEDecoder": "harness.sse",
    "attach": "harness.runtime",
    "harness_of": "harness.runtime",
    "iter_stream_events": "harness.sse",
    "parse_event": "harness.sse",
}

if TYPE_CHECKING:
    from harness.errors import CallError, ConfigError, HarnessError, ProtocolError
    from harness.measure import CallMeasurement, CallRecord
    from harness.options import HarnessOptions
    from harness.request import MessageRequest
    from harness.runtime import Harness, attach, harness_of
    from harness.sse import SSEDecoder, iter_stream_events, parse_event
    from harness.user import AnthropicUser


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
