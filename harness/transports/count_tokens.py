"""The target's own token count of a request body: ``POST /v1/messages/count_tokens``, not measured.

Trace replay sizes its synthetic prompts with it (:class:`harness.core.synth.Calibration`), so
a line's "1,000 input tokens" are 1,000 of the target's tokens. A transport that has its own
``count_tokens`` (the SDK's) answers it: that also opens the pooled connection and warms the
request path the first replayed call then uses (a cold SDK client spends ~30 ms on its first
request). Otherwise it is one plain request with the API's documented headers, cooperative under
gevent's patched sockets. Either way it runs before any load. A target without the endpoint, or
any failure, is a :class:`~harness.transports.base.CountTokensError`; the caller falls back to
its default calibration.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from harness.transports.base import CountTokensError, Transport, TransportConfig
from harness.transports.fast import api_headers

__all__ = ["COUNT_TOKENS_PATH", "CountTokensError", "count_tokens", "count_tokens_plain"]

COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MAX_BODY = 64 * 1024  # an answer is a few bytes; anything larger is not one


def count_tokens(transport: Transport, body: Mapping[str, Any]) -> int:
    """``input_tokens`` of ``body`` as ``transport``'s target counts them."""
    own = getattr(transport, "count_tokens", None)
    if callable(own):
        return int(own(body))
    return count_tokens_plain(transport.config, body)


def count_tokens_plain(config: TransportConfig, body: Mapping[str, Any]) -> int:
    """One plain ``count_tokens`` request to ``config.base_url``."""
    counted = {k: v for k, v in body.items() if k not in ("max_tokens", "stream")}
    request = urllib.request.Request(
        config.base_url.rstrip("/") + COUNT_TOKENS_PATH,
        data=json.dumps(counted).encode("utf-8"),
        headers=api_headers(config),
        method="POST",
    )
    context = ssl.create_default_context()
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s, context=context) as response:
            data = json.loads(response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        raise CountTokensError(f"count_tokens answered HTTP {exc.code}", exc.code) from None
    except (OSError, ValueError) as exc:  # connection, timeout, TLS, a body that is not JSON
        raise CountTokensError(f"count_tokens failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    tokens = data.get("input_tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise CountTokensError(f"count_tokens gave no input_tokens: {str(data)[:200]}")
    return tokens
