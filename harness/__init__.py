"""LLM load-testing harness for Anthropic-compatible Messages APIs, built on Locust.

The public surface is listed in ``__all__``; everything else is private (the layers
under it are mapped in docs/architecture.md). Names are imported lazily so that
``python -m harness.simulator`` and the pure parser never pull in Locust (which
monkey-patches the standard library with gevent on import). Asking for the user class
also loads :mod:`harness.plugin`, which wires the harness into Locust: a locustfile
needs nothing but ``from harness import AnthropicUser``.
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
    "Outcome",
    "ProtocolError",
    "SSEDecoder",
    "attach",
    "harness_of",
    "iter_stream_events",
    "parse_event",
]

_WHERE = {
    "AnthropicUser": "harness.runtime.user",
    "CallError": "harness.core.errors",
    "CallMeasurement": "harness.core.measure",
    "CallRecord": "harness.core.measure",
    "ConfigError": "harness.core.errors",
    "Harness": "harness.runtime.state",
    "HarnessError": "harness.core.errors",
    "HarnessOptions": "harness.runtime.options",
    "MessageRequest": "harness.core.request",
    "Outcome": "harness.core.outcome",
    "ProtocolError": "harness.core.errors",
    "SSEDecoder": "harness.core.sse",
    "attach": "harness.runtime.state",
    "harness_of": "harness.runtime.state",
    "iter_stream_events": "harness.core.stream_events",
    "parse_event": "harness.core.stream_events",
}

if TYPE_CHECKING:
    from harness.core.errors import CallError, ConfigError, HarnessError, ProtocolError
    from harness.core.measure import CallMeasurement, CallRecord
    from harness.core.outcome import Outcome
    from harness.core.request import MessageRequest
    from harness.core.sse import SSEDecoder
    from harness.core.stream_events import iter_stream_events, parse_event
    from harness.runtime.options import HarnessOptions
    from harness.runtime.state import Harness, attach, harness_of
    from harness.runtime.user import AnthropicUser


# Names whose users run under the locust CLI: the plugin registers the harness's options and
# start-up with Locust before the locustfile finishes importing.
_WIRES_PLUGIN = frozenset({"AnthropicUser"})


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    if name in _WIRES_PLUGIN:
        importlib.import_module("harness.plugin")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
