"""The locustfile of tests/test_study*.py: arms whose simulated speeds differ by a known amount, and an A/A pair.

The simulator config :data:`CONFIG` gives each arm its own model profile: ``study-fast`` and
``study-slow`` differ only in ``base_delay_s``, with the same multiplicative jitter (median
1), so Slow's median TTFT is Fast's plus :data:`SHIFT_S` on the server. The jitter makes the
interval as wide as the server's spread: without it the interval is a fraction of a
millisecond wide, narrower than this machine's own timing noise when it is busy. ``study-same`` serves
SameA and SameB, the same request under two names, with a wide seeded jitter, so the A/A
intervals are about the server's spread rather than this machine's timing noise.
"""

from __future__ import annotations

from typing import Any

from harness import AnthropicUser

SHIFT_S = 0.050
_PROFILE: dict[str, Any] = {
    "family": "haiku",
    "base_delay_jitter": 0.0,
    "step_jitter": 0.0,
    "decode_tokens_per_s": 500,  # 8 tokens over 14 ms: output tokens/s well above the client's timing noise
    "prefill_tokens_per_s": 1_000_000,
}
CONFIG: dict[str, Any] = {
    "models": {
        "study-fast": {**_PROFILE, "base_delay_s": 0.040, "base_delay_jitter": 0.25},
        "study-slow": {**_PROFILE, "base_delay_s": 0.040 + SHIFT_S, "base_delay_jitter": 0.25},
        "study-same": {**_PROFILE, "base_delay_s": 0.030, "base_delay_jitter": 0.5},
    },
    "rate_limits": {"tier": "off"},
}


class _Small(AnthropicUser):
    abstract = True
    max_tokens = 8
    prompt = "Name three colours."  # cut at max_tokens: 8 tokens, 4 ms of decoding


class Fast(_Small):
    """The baseline: TTFT about 40 ms."""

    model = "study-fast"


class Slow(_Small):
    """Fast's request to a model that starts SHIFT_S later."""

    model = "study-slow"


class SameA(_Small):
    """The A/A pair's first name."""

    model = "study-same"


class SameB(_Small):
    """The A/A pair's second name: the very same request."""

    model = "study-same"
