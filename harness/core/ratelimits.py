"""The ``anthropic-ratelimit-*`` response headers: parsed per call, followed over a run.

The Messages API reports the remaining request and token budgets on every response
(``anthropic-ratelimit-requests-remaining``, ``-tokens-remaining``, ``-input-tokens-*``,
``-output-tokens-*``, each with ``-limit`` and ``-reset``). :func:`ratelimit_headers`
turns them into a small ``dict[str, int]`` that each :class:`~harness.core.measure.CallRecord`
carries as ``ratelimit`` (``requests_remaining``, ``tokens_limit``, …; ``*_reset`` as
epoch seconds); :func:`parse_ratelimit` groups a record's values by dimension for the
web UI. Following them over a run is :mod:`harness.monitors.ratelimits`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["HEADER_PREFIX", "parse_ratelimit", "ratelimit_headers"]

HEADER_PREFIX = "anthropic-ratelimit-"


def _to_int(name: str, value: str) -> int | None:
    if name.endswith("_reset"):
        # RFC 3339, e.g. 2026-11-29T19:41:27Z; kept as epoch seconds so it stays an int.
        try:
            return int(datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def ratelimit_headers(headers: Mapping[str, str]) -> dict[str, int] | None:
    """``{"requests_remaining": 49, ...}`` from a response's headers; ``None`` if it has none."""
    found: dict[str, int] = {}
    for raw_name, value in headers.items():
        lower = raw_name.lower()
        if not lower.startswith(HEADER_PREFIX):
            continue
        name = lower[len(HEADER_PREFIX) :].replace("-", "_")
        number = _to_int(name, value)
        if number is not None:
            found[name] = number
    return found or None


def parse_ratelimit(limits: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """A record's ``ratelimit`` (``{"requests_limit": 50, ...}``, see :func:`ratelimit_headers`)
    grouped by dimension: ``{"requests": {"limit": 50, "remaining": ..., "reset": "2030-...Z"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for name, value in limits.items():
        dimension, _, field = name.rpartition("_")
        if not dimension or field not in ("limit", "remaining", "reset"):
            continue
        entry = out.setdefault(dimension, {})
        if field == "reset":
            entry["reset"] = datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            entry[field] = value
    return out
