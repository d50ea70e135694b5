"""Per-API-key rate limits: token buckets for requests, input tokens and output tokens per minute.

Every response to a key carries the `anthropic-ratelimit-*` headers the real API sends, and a request
that a bucket cannot cover gets 429 `rate_limit_error` with `retry-after`. With no limit configured the
`default` tier applies: limits far above what one simulator process can serve, so it never refuses but
its headers count down like the real API's (a harness reading them sees the same shape as in
production). Configured limits replace it as a whole (only they are reported); tier `off` sends no
headers and limits nothing.

Buckets hold up to one minute's limit and refill continuously at limit/60 per second (the real API also
refills continuously rather than at minute boundaries). What a request charges:
  requests       1
  input tokens   uncached input + cache creation tokens (cache reads do not count, as for current models)
  output tokens  the response's output tokens, charged at admission (the simulator knows them up front;
                 the real API estimates from max_tokens and corrects afterwards)
A request is refused when its requests or input charge exceeds what is left, or when the output bucket
is empty; the output bucket may go negative, so one long answer delays the following requests.

Tiers are ILLUSTRATIVE, shaped like Anthropic's published usage tiers; check the real limits of your
organisation before drawing conclusions from them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

TIERS: dict[str, dict[str, int]] = {
    # One process serves at most ~20,000 output tokens/s (1.2M a minute) and a few thousand requests a
    # second: these limits are reported, and count down, but are not reached in practice.
    "default": {
        "requests_per_minute": 100_000,
        "input_tokens_per_minute": 100_000_000,
        "output_tokens_per_minute": 20_000_000,
    },
    "tier1": {
        "requests_per_minute": 50,
        "input_tokens_per_minute": 50_000,
        "output_tokens_per_minute": 10_000,
    },
    "tier2": {
        "requests_per_minute": 1_000,
        "input_tokens_per_minute": 450_000,
        "output_tokens_per_minute": 90_000,
    },
    "tier3": {
        "requests_per_minute": 2_000,
        "input_tokens_per_minute": 1_000_000,
        "output_tokens_per_minute": 200_000,
    },
    "tier4": {
        "requests_per_minute": 4_000,
        "input_tokens_per_minute": 4_000_000,
        "output_tokens_per_minute": 800_000,
    },
}
LIMIT_KEYS = ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute")
DEFAULT_TIER = "default"  # applies when no limit is configured
OFF = "off"  # the tier name that turns limits and headers off


class Bucket:
    __slots__ = ("level", "limit", "rate", "updated")

    def __init__(self, limit: int, now: float) -> None:
        self.limit = limit
        self.rate = limit / 60.0
        self.level = float(limit)
        self.updated = now

    def refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the bucket holds `amount` (0 if it does now)."""
        return max(0.0, (min(amount, self.limit) - self.level) / self.rate)

    def full_in(self) -> float:
        return max(0.0, (self.limit - self.level) / self.rate)


@dataclass(slots=True)
class Decision:
    allowed: bool
    headers: list[tuple[str, str]]
    retry_after_s: float = 0.0
    message: str = ""


def key_id(api_key: str | None) -> str:
    """A stable, non-reversible handle for an API key: the key itself is never stored or logged."""
    return hashlib.blake2b((api_key or "").encode(), digest_size=8).hexdigest()


def limits_from_config(cfg: dict[str, Any]) -> dict[str, int]:
    """Resolve {"tier": ..., <limit overrides>} to the per-minute limits; {} (no limits, no headers) for `off`.

    Nothing configured means the generous `default` tier; otherwise exactly the tier and limits given.
    """
    limits: dict[str, int] = {}
    tier = cfg.get("tier")
    if tier == OFF:
        if set(cfg) != {"tier"}:
            raise ValueError("rate_limits: tier 'off' cannot be combined with limits")
        return {}
    if all(cfg.get(k) is None for k in ("tier", *LIMIT_KEYS)):
        tier = DEFAULT_TIER
    if tier is not None:
        if tier not in TIERS:
            raise ValueError(f"rate_limits.tier: unknown tier {tier!r}; known: {sorted([*TIERS, OFF])}")
        limits.update(TIERS[tier])
    for k in LIMIT_KEYS:
        if cfg.get(k) is not None:
            limits[k] = int(cfg[k])
    unknown = set(cfg) - {"tier", *LIMIT_KEYS}
    if unknown:
        raise ValueError(f"rate_limits: unknown key(s) {sorted(unknown)}")
    if any(v <= 0 for v in limits.values()):
        raise ValueError("rate_limits: limits must be > 0")
    return limits


class RateLimiter:
    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self._keys: dict[str, dict[str, Bucket]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.limits)

    def _buckets(self, key: str, now: float) -> dict[str, Bucket]:
        buckets = self._keys.get(key)
        if buckets is None:
            buckets = self._keys[key] = {k: Bucket(v, now) for k, v in self.limits.items()}
        for b in buckets.values():
            b.refill(now)
        return buckets

    def peek(self, key: str, now: float) -> list[tuple[str, str]]:
        """Headers describing the key's buckets, without charging anything."""
        if not self.enabled:
            return []
        return self._headers(self._buckets(key, now))

    def admit(self, key: str, now: float, input_tokens: int, output_tokens: int) -> Decision:
        if not self.enabled:
            return Decision(True, [])
        buckets = self._buckets(key, now)
        need = {
            "requests_per_minute": 1.0,
            "input_tokens_per_minute": float(input_tokens),
            "output_tokens_per_minute": 1e-9,
        }
        waits = {k: b.wait_for(need[k]) for k, b in buckets.items()}
        worst = max(waits, key=lambda k: waits[k])
        if waits[worst] > 0:
            what = {
                "requests_per_minute": "requests",
                "input_tokens_per_minute": "input tokens",
                "output_tokens_per_minute": "output tokens",
            }[worst]
            message = (
                f"This request would exceed the rate limit for your organization of "
                f"{buckets[worst].limit:,} {what} per minute. (simulated limit)"
            )
            return Decision(False, self._headers(buckets), waits[worst], message)
        charge = {
            "requests_per_minute": 1.0,
            "input_tokens_per_minute": float(input_tokens),
            "output_tokens_per_minute": float(output_tokens),
        }
        for k, b in buckets.items():
            b.level -= charge[k]
        return Decision(True, self._headers(buckets))

    @staticmethod
    def _headers(buckets: dict[str, Bucket]) -> list[tuple[str, str]]:
        wall = time.time()
        out: list[tuple[str, str]] = []

        def add(name: str, b: Bucket) -> None:
            reset = datetime.fromtimestamp(wall + b.full_in(), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append((f"anthropic-ratelimit-{name}-limit", str(b.limit)))
            out.append((f"anthropic-ratelimit-{name}-remaining", str(max(0, math.floor(b.level)))))
            out.append((f"anthropic-ratelimit-{name}-reset", reset))

        if "requests_per_minute" in buckets:
            add("requests", buckets["requests_per_minute"])
        token_buckets = [
            (n, buckets[k])
            for n, k in (
                ("input-tokens", "input_tokens_per_minute"),
                ("output-tokens", "output_tokens_per_minute"),
            )
            if k in buckets
        ]
        for name, b in token_buckets:
            add(name, b)
        if token_buckets:
            # The combined `tokens` headers describe whichever token limit is closest to exhaustion.
            add("tokens", min((b for _, b in token_buckets), key=lambda b: b.level / b.limit))
        return out
