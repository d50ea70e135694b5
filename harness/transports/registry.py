"""Which transports exist, and the one instance per process of each (``--transport``).

The registry imports each transport only when a run asks for it: the SDK's import
costs a second or more, and a run on the fast transport never pays it. A platform
(``TransportConfig.platform``: Bedrock, Vertex) picks the fast transport's variant for it.
"""

from __future__ import annotations

from harness.core.errors import ConfigError
from harness.transports.base import Transport, TransportConfig

__all__ = ["TRANSPORTS", "get_transport"]

TRANSPORTS = ("sdk", "fast")

_cache: dict[tuple[str, TransportConfig], Transport] = {}


def get_transport(name: str, config: TransportConfig) -> Transport:
    """The process-wide transport for ``name`` and ``config``, created on first use.

    One per process, not one per user: building an SDK client costs ~28 ms of CPU and
    its connection pool is what lets users share keep-alive connections.
    """
    key = (name, config)
    transport = _cache.get(key)
    if transport is None:
        if name == "sdk":
            from harness.transports.sdk import SDKTransport

            transport = SDKTransport(config)
        elif name == "fast" and config.platform == "bedrock":
            from harness.transports.fast_platforms import BedrockFastTransport

            transport = BedrockFastTransport(config)
        elif name == "fast" and config.platform == "vertex":
            from harness.transports.fast_platforms import VertexFastTransport

            transport = VertexFastTransport(config)
        elif name == "fast":
            from harness.transports.fast import FastTransport

            transport = FastTransport(config)
        else:
            raise ConfigError(f"unknown transport {name!r}; choose one of: {', '.join(TRANSPORTS)}")
        _cache[key] = transport
    return transport
