"""Latency model and model profiles: how long the simulated service takes, per model family.

The model (formulas also in docs/simulator.md):

    TTFT          = base_delay * J + queue_wait + prefill + step(n)
    prefill       = (uncached + cache_creation tokens) / prefill_tokens_per_s
                    + cache_read tokens / (prefill_tokens_per_s * cache_read_speedup)
    step(n)       = (1 / decode_tokens_per_s) * (1 + batch_slowdown * (n - 1)) * U      (one token per stream)
    per-stream    = decode_tokens_per_s / (1 + batch_slowdown * (n - 1))                 tokens/s
    aggregate     = n * per-stream, for n <= max_batch (admitted requests); more requests wait in a FIFO queue

where n is the number of requests admitted to the model's batch at that moment, J is a seeded log-normal
jitter factor (median 1, sigma `base_delay_jitter`) and U a seeded uniform factor in [1 - step_jitter,
1 + step_jitter]. Aggregate throughput rises with n up to `max_batch`, then stays flat while TTFT grows by
the queue wait: the knee of a throughput-vs-concurrency curve is at max_batch.

The profile numbers are ILLUSTRATIVE, chosen so the families are ordered fastest (Haiku) to slowest (Opus)
as Anthropic's models overview describes them; they are not measurements of the real service.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

from .length import DEFAULT_ASK, Ask, LengthAsk


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Every timing and length parameter of one simulated model; all overridable via --config."""

    name: str
    family: str
    base_delay_s: float  # network + front-end time before the model starts; the TTFT of an empty prompt
    base_delay_jitter: float  # sigma of the log-normal factor on base_delay_s
    prefill_tokens_per_s: float  # uncached input tokens processed per second before the first token
    cache_read_speedup: float  # a cache-read token prefills this many times faster than an uncached one
    decode_tokens_per_s: float  # per-stream output rate when the stream is alone in the batch
    batch_slowdown: float  # fractional slowdown of every stream per extra request in the batch
    max_batch: int  # requests decoded concurrently; beyond this they queue (FIFO)
    step_jitter: float  # +/- fraction of uniform jitter on each inter-token gap
    output_tokens_median: int  # seeded log-normal answer length for a prompt that states no length (length.py)
    output_tokens_sigma: float  # sigma of that log-normal, also for brief and long answers
    output_tokens_min: int
    output_tokens_max: int
    brief_tokens_median: int  # median answer length when the prompt asks for brevity ("briefly", "be concise")
    long_tokens_median: int  # median answer length of an open question ("explain", "describe in detail")
    asked_tokens_sigma: float  # log-normal spread around a stated size ("in 50 words", "in one sentence")
    thinking_tokens_median: int  # extended thinking length with an unlimited budget
    thinking_budget_fraction: float  # a budget B pulls the thinking median down to B * this fraction
    cache_min_tokens: int  # a cache_control prefix shorter than this is not cached, like the real API

    def step_time(self, n: int) -> float:
        """Seconds between two tokens of one stream when `n` requests share the batch."""
        return (1.0 + self.batch_slowdown * max(0, n - 1)) / self.decode_tokens_per_s

    def prefill_s(self, fresh_tokens: int, cached_tokens: int = 0) -> float:
        """Seconds of prefill before the first token: uncached + cache-write tokens, and cache reads."""
        return (fresh_tokens + cached_tokens / self.cache_read_speedup) / self.prefill_tokens_per_s

    def thinking_median(self, budget: int) -> float:
        """Median thinking tokens under `budget_tokens` = budget (the draw is then capped at the budget)."""
        return min(float(self.thinking_tokens_median), self.thinking_budget_fraction * budget)

    def aggregate_tokens_per_s(self, n: int) -> float:
        n = min(n, self.max_batch)
        return n / self.step_time(n) if n else 0.0


_COMMON: dict[str, Any] = {
    "base_delay_jitter": 0.25,
    "cache_read_speedup": 10.0,
    "step_jitter": 0.15,
    "output_tokens_sigma": 0.6,
    "output_tokens_min": 8,
    "output_tokens_max": 8192,
    "brief_tokens_median": 30,
    "long_tokens_median": 1000,
    "asked_tokens_sigma": 0.15,
    "thinking_tokens_median": 3000,
    "thinking_budget_fraction": 0.5,
    "cache_min_tokens": 1024,
}

# Illustrative figures only (see module docstring). Haiku: TTFT ~0.25 s, ~170 tokens/s alone.
DEFAULT_PROFILES: dict[str, ModelProfile] = {
    "claude-haiku-4-5": ModelProfile(
        name="claude-haiku-4-5",
        family="haiku",
        base_delay_s=0.25,
        prefill_tokens_per_s=40_000,
        decode_tokens_per_s=170,
        batch_slowdown=0.02,
        max_batch=64,
        output_tokens_median=160,
        **_COMMON,
    ),
    "claude-sonnet-4-5": ModelProfile(
        name="claude-sonnet-4-5",
        family="sonnet",
        base_delay_s=0.45,
        prefill_tokens_per_s=20_000,
        decode_tokens_per_s=75,
        batch_slowdown=0.02,
        max_batch=48,
        output_tokens_median=200,
        **_COMMON,
    ),
    "claude-opus-4-5": ModelProfile(
        name="claude-opus-4-5",
        family="opus",
        base_delay_s=0.8,
        prefill_tokens_per_s=10_000,
        decode_tokens_per_s=45,
        batch_slowdown=0.02,
        max_batch=32,
        output_tokens_median=220,
        **_COMMON,
    ),
}

FAMILIES = ("haiku", "sonnet", "opus")
PROFILE_FIELDS = {f.name for f in fields(ModelProfile)}


def build_profiles(
    overrides: dict[str, dict[str, Any]] | None = None,
    all_models: dict[str, Any] | None = None,
) -> dict[str, ModelProfile]:
    """Default profiles with `all_models` applied to each, then per-model `overrides`.

    An override naming an unknown model defines a new one; it starts from its `family` profile (default
    sonnet), so a config can add e.g. a custom model id with its own numbers.
    """
    profiles = dict(DEFAULT_PROFILES)
    if all_models:
        common = _clean(all_models, "all_models")
        if {"name", "family"} & set(common):
            raise ValueError("all_models: `name` and `family` can only be set per model")
        profiles = {k: replace(p, **common) for k, p in profiles.items()}
    for name, values in (overrides or {}).items():
        clean = _clean(values, f"models.{name}")
        if name in profiles:
            base = profiles[name]
        else:
            family = str(clean.get("family", "sonnet"))
            base = next((p for p in profiles.values() if p.family == family), profiles["claude-sonnet-4-5"])
        profiles[name] = replace(base, **{**clean, "name": name})
    for p in profiles.values():
        if p.decode_tokens_per_s <= 0 or p.prefill_tokens_per_s <= 0 or p.max_batch < 1:
            raise ValueError(f"model {p.name}: rates must be > 0 and max_batch >= 1")
        if p.base_delay_s < 0 or not 0 <= p.step_jitter < 1 or p.output_tokens_min < 1:
            raise ValueError(f"model {p.name}: needs base_delay_s >= 0, 0 <= step_jitter < 1, output_tokens_min >= 1")
        medians = (p.output_tokens_median, p.brief_tokens_median, p.long_tokens_median, p.thinking_tokens_median)
        if min(medians) < 1 or p.output_tokens_max < p.output_tokens_min:
            raise ValueError(f"model {p.name}: token medians must be >= 1 and output_tokens_max >= output_tokens_min")
        if p.cache_read_speedup < 1 or not 0 < p.thinking_budget_fraction <= 1:
            raise ValueError(f"model {p.name}: needs cache_read_speedup >= 1 and 0 < thinking_budget_fraction <= 1")
        if min(p.output_tokens_sigma, p.asked_tokens_sigma, p.base_delay_jitter) < 0:
            raise ValueError(f"model {p.name}: sigmas and jitters must be >= 0")
    return profiles


# Declared types (annotations are strings here, from `from __future__ import annotations`).
_TYPES: dict[str, type] = {f.name: {"str": str, "int": int, "float": float}[str(f.type)] for f in fields(ModelProfile)}


def _clean(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Check names and coerce types, so a bad config fails at start-up rather than as a 500 later."""
    unknown = set(values) - PROFILE_FIELDS
    if unknown:
        known = sorted(PROFILE_FIELDS)
        raise ValueError(f"{where}: unknown profile parameter(s) {sorted(unknown)}; known: {known}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        want = _TYPES[key]
        if want is str:
            ok = isinstance(value, str)
        else:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and (want is float or value == int(value))
        if not ok:
            raise ValueError(f"{where}.{key}: expected {want.__name__}, got {value!r}")
        out[key] = want(value)
    return out


def resolve_model(name: str, profiles: dict[str, ModelProfile]) -> ModelProfile | None:
    """The profile serving a requested model id, or None (the API answers 404 not_found_error).

    Exact ids first, then dated/suffixed variants of a known id (`claude-haiku-4-5-20251001`), then any id
    containing a family word (`claude-3-5-haiku-latest`) maps to that family's default profile.
    """
    if name in profiles:
        return profiles[name]
    for key in sorted(profiles, key=len, reverse=True):
        if name.startswith(key + "-") or name.startswith(key + "@"):
            return profiles[key]
    lowered = name.lower()
    if lowered.startswith("claude"):
        for family in FAMILIES:
            if family in lowered:
                for p in DEFAULT_PROFILES.values():
                    if p.family == family:
                        return profiles.get(p.name, p)
    return None


def sample_output_tokens(profile: ModelProfile, rng: random.Random, ask: LengthAsk = DEFAULT_ASK) -> int:
    """Natural answer length (before max_tokens): one seeded log-normal draw around what the prompt asks for.

    A stated size ("in 50 words") is met within `asked_tokens_sigma` and may go below output_tokens_min
    (one word is one token); the other classes use `output_tokens_sigma` and the [min, max] clip.
    """
    if ask.ask is Ask.EXACT:
        n = round(rng.lognormvariate(math.log(ask.tokens), profile.asked_tokens_sigma))
        return max(1, min(profile.output_tokens_max, n))
    median = {
        Ask.DEFAULT: profile.output_tokens_median,
        Ask.BRIEF: profile.brief_tokens_median,
        Ask.LONG: profile.long_tokens_median,
    }[ask.ask]
    n = round(rng.lognormvariate(math.log(median), profile.output_tokens_sigma))
    return max(profile.output_tokens_min, min(profile.output_tokens_max, n))


def sample_base_delay(profile: ModelProfile, rng: random.Random) -> float:
    return profile.base_delay_s * rng.lognormvariate(0.0, profile.base_delay_jitter)


class Waiter(Protocol):
    abandoned: bool

    def on_slot(self) -> None:
        """Called when the engine hands this request a batch slot."""


class Engine:
    """One model's batch: at most max_batch admitted requests; the rest wait FIFO for a slot.

    `active` is the n of the latency model. Callback-based rather than a Future per waiter because a
    queued request must cost as few objects as possible. A slot is handed directly to the oldest waiter on
    release, so a newcomer cannot overtake the queue; waiters whose client has gone are skipped.
    """

    def __init__(self, profile: ModelProfile) -> None:
        self.profile = profile
        self.active = 0
        # step_time(active), kept current on every change: the send loop reads it once per token.
        self.step = profile.step_time(0)
        self._waiters: deque[Waiter] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def acquire(self, waiter: Waiter) -> bool:
        """True if admitted now; otherwise queued, and `waiter.on_slot()` is called later."""
        if self.active < self.profile.max_batch and not self._waiters:
            self.active += 1
            self.step = self.profile.step_time(self.active)
            return True
        self._waiters.append(waiter)
        return False

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.abandoned:
                waiter.on_slot()  # the slot moves to the waiter; `active` is unchanged
                return
        self.active -= 1
        self.step = self.profile.step_time(self.active)

    def step_time(self) -> float:
        return self.step
