"""The transport seam: how a :class:`MessageRequest` reaches the server.

A transport sends one request and reports what happens to a
:class:`~harness.measure.CallMeasurement`; it raises :class:`~harness.errors.CallError`
with the outcome class when the call fails. Which transport runs is a run option
(``--transport``); all of them produce identical records for identical streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.errors import ConfigError
from harness.measure import CallMeasurement
from harness.request import MessageRequest

__all__ = ["TRANSPORTS", "Transport", "TransportConfig", "get_transport"]

ANTHROPIC_API_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class TransportConfig:
    """Connection settings shared by every call of one process.

    ``api_key`` is excluded from ``repr`` so it cannot leak through a log line.
    """

    base_url: str
    api_key: str
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 0
    verify_tls: bool = True

    def __repr__(self) -> str:
        return (
            f"TransportConfig(base_url={self.base_url!r}, api_key='***', timeout_s={self.timeout_s}, "
            f"connect_timeout_s={self.connect_timeout_s}, max_retries={self.max_retries}, "
            f"verify_tls={self.verify_tls})"
        )


class Transport(Protocol):
    """Sends one Messages API request and measures it."""

    name: str

    def send(self, request: MessageRequest, measurement: CallMeasurement) -> None:
        """Perform the call, reporting to ``measurement``; raise CallError on failure."""
        ...


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
            from harness.sdk_transport import SDKTransport

            transport = SDKTransport(config)
        elif name == "fast":
            from harness.fast_transport import FastTransport

            transport = FastTransport(config)
        else:
            raise ConfigError(f"unknown transport {name!r}; choose one of: {', '.join(TRANSPORTS)}")
        _cache[key] = transport
    return transport
