"""The transport seam: how a :class:`MessageRequest` reaches the server.

A transport sends one request and reports what happens to a
:class:`~harness.core.measure.CallMeasurement`; it raises :class:`~harness.core.errors.CallError`
with the outcome class when the call fails. Which transport runs is a run option
(``--transport``); all of them produce identical records for identical streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.core.lag import LagHistogram
from harness.core.measure import CallMeasurement
from harness.core.redact import redact
from harness.core.request import MessageRequest

__all__ = ["ANTHROPIC_API_URL", "FIRST_TOKEN_LATE", "CountTokensError", "Transport", "TransportConfig"]

ANTHROPIC_API_URL = "https://api.anthropic.com"


@dataclass(frozen=True)
class TransportConfig:
    """Connection settings shared by every call of one process.

    ``platform`` is where Claude is served: ``anthropic`` (the Messages API), ``bedrock`` or
    ``vertex`` (:mod:`harness.core.platforms`), with its ``region`` and, on Vertex, its
    ``project``. ``api_key`` is the first-party API key, or on a platform a bearer token
    (``AWS_BEARER_TOKEN_BEDROCK``, a Google access token); empty there, the platform's own
    credential chain (botocore's, google-auth's) is used unless ``aws_access_key`` and
    ``aws_secret_key`` are given (the simulator's test credentials). Secrets are excluded
    from ``repr`` so they cannot leak through a log line.
    """

    base_url: str
    api_key: str
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    max_retries: int = 0
    verify_tls: bool = True
    platform: str = "anthropic"
    region: str | None = None
    project: str | None = None
    aws_access_key: str | None = None
    aws_secret_key: str | None = None

    def __repr__(self) -> str:
        return (
            f"TransportConfig(base_url={self.base_url!r}, api_key='***', timeout_s={self.timeout_s}, "
            f"connect_timeout_s={self.connect_timeout_s}, max_retries={self.max_retries}, "
            f"verify_tls={self.verify_tls}, platform={self.platform!r}, region={self.region!r}, "
            f"project={self.project!r}, aws_access_key={self.aws_access_key!r}, aws_secret_key='***')"
        )


class Transport(Protocol):
    """Sends one Messages API request and measures it."""

    name: str
    config: TransportConfig

    def send(self, request: MessageRequest, measurement: CallMeasurement) -> None:
        """Perform the call, reporting to ``measurement``; raise CallError on failure."""
        ...


class CountTokensError(Exception):
    """The target gave no token count (``POST /v1/messages/count_tokens``); ``status`` is its HTTP status.

    The message never holds the API key.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


FIRST_TOKEN_LATE = LagHistogram()
"""How long each call's first token waited in this process, from the kernel's receipt of
its bytes to its stamp: the generator's own share of that TTFT, measured on the reads
themselves. A lag probe wakes at even times and can miss moments when many streams'
tokens arrive at once (lockstep streams starting together); this cannot. Filled by a
transport that sees the kernel's receive times (the fast transport on plain HTTP, Linux);
the generator-health monitor reads it and resets it at each test start."""
