"""Prompt caching: which part of a prompt is read from, written to or missing from the cache.

A prompt is the sequence of units from messages.py (tools, system, messages). Every unit carrying
`cache_control` is a breakpoint; the cached object is the whole prefix up to and including it, keyed by
a running hash of the units (and the model and API key, as caches are not shared across them). On a
request the longest prefix still in the cache is read (`cache_read_input_tokens`), the part between it
and the last breakpoint is written (`cache_creation_input_tokens`), and what follows the last breakpoint
is ordinary `input_tokens`. A prefix shorter than the profile's `cache_min_tokens` is not cached, like
the real API. Entries live for their TTL (5 minutes, or 1 hour with `"ttl": "1h"`), refreshed on a hit.
Only written and uncached tokens need prefill time: a hit skips its share of the TTFT.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .messages import PromptUnit

MAX_ENTRIES = 200_000  # memory bound; expired entries are dropped first


@dataclass(slots=True)
class CacheUsage:
    read: int
    created: int
    uncached: int


class PromptCache:
    def __init__(self) -> None:
        self._expiry: dict[bytes, float] = {}

    def apply(self, scope: str, units: list[PromptUnit], min_tokens: int, now: float) -> CacheUsage:
        total = max(1, sum(u.tokens for u in units))
        h = hashlib.blake2b(scope.encode(), digest_size=16)
        tokens = 0
        breakpoints: list[tuple[bytes, int, float]] = []
        for u in units:
            h.update(u.digest)
            tokens += u.tokens
            if u.cache_ttl_s is not None:
                breakpoints.append((h.copy().digest(), tokens, u.cache_ttl_s))
        if not breakpoints or breakpoints[-1][1] < min_tokens:
            return CacheUsage(0, 0, total)
        read = 0
        for digest, upto, ttl in reversed(breakpoints):
            exp = self._expiry.get(digest)
            if exp is not None and exp > now:
                read = upto
                self._expiry[digest] = now + ttl
                break
        last = breakpoints[-1][1]
        for digest, upto, ttl in breakpoints:
            if upto >= min_tokens and upto > read:
                self._expiry[digest] = now + ttl
        if len(self._expiry) > MAX_ENTRIES:
            self._evict(now)
        return CacheUsage(read=read, created=last - read, uncached=total - last)

    def _evict(self, now: float) -> None:
        live = {k: v for k, v in self._expiry.items() if v > now}
        if len(live) > MAX_ENTRIES // 2:
            live = dict(sorted(live.items(), key=lambda kv: kv[1])[-(MAX_ENTRIES // 2) :])
        self._expiry = live
