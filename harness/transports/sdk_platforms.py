"""The SDK transport on Amazon Bedrock and Google Vertex AI: ``AnthropicBedrock`` and ``AnthropicVertex``.

Imported only by a platform's run (the SDK's platform clients cost a first-party run's first call).
Each client is the SDK's own with the harness's bounded stream decoder, on the SDK transport's
HTTP client and trace hook; its credentials are resolved first (:mod:`harness.transports.credentials`),
so a missing one stops the run at start, and each secret is registered for redaction.
"""

from __future__ import annotations

from typing import Any

from harness.transports._compat import import_http_stack

import_http_stack()

import anthropic
import httpx2

from harness.core.redact import add_secret
from harness.transports.base import TransportConfig
from harness.transports.credentials import AwsAuth, GoogleAuth
from harness.transports.sdk_decoders import BoundedEventStreamDecoder, BoundedSSEDecoder

__all__ = ["platform_client"]


class _AnthropicBedrock(anthropic.AnthropicBedrock):
    """``AnthropicBedrock`` with the bounded event-stream decoder; each session token it signs with is a secret."""

    def _make_sse_decoder(self) -> BoundedEventStreamDecoder:  # type: ignore[override]
        return BoundedEventStreamDecoder()

    def _prepare_request(self, request: httpx2.Request) -> None:
        super()._prepare_request(request)
        # Refreshed credentials (SSO, assumed roles) bring new session tokens: secrets from the first use.
        add_secret(request.headers.get("x-amz-security-token"))


class _AnthropicVertex(anthropic.AnthropicVertex):
    """``AnthropicVertex`` with the bounded SSE decoder; each access token it mints is a registered secret."""

    def _make_sse_decoder(self) -> BoundedSSEDecoder:
        return BoundedSSEDecoder()

    def _ensure_access_token(self) -> str:
        token = super()._ensure_access_token()
        add_secret(token)
        return token


def platform_client(config: TransportConfig, http_client: httpx2.Client) -> Any:
    """The SDK client of ``config.platform`` on ``http_client``, its credentials resolved (ConfigError if none)."""
    common: dict[str, Any] = {"base_url": config.base_url, "max_retries": config.max_retries}
    common["http_client"] = http_client
    if config.platform == "bedrock":
        auth = AwsAuth(config)  # resolves the chain now: a missing credential stops the run at start
        # Constructed with a token so that the SDK does not also read AWS_BEARER_TOKEN_BEDROCK when
        # the run signs with keys (it refuses both), then given what this run resolved.
        client = _AnthropicBedrock(api_key=auth.bearer or "unused", aws_region=auth.region, **common)
        client.api_key = auth.bearer
        client.aws_access_key, client.aws_secret_key = config.aws_access_key, config.aws_secret_key
        return client
    if config.platform == "vertex":
        google = GoogleAuth(config)
        return _AnthropicVertex(
            region=config.region or "global",
            project_id=google.project or anthropic.NOT_GIVEN,
            access_token=config.api_key or None,
            credentials=google.credentials,
            **common,
        )
    raise ValueError(f"not a platform: {config.platform!r}")
