"""Prompt caching: a long shared prefix read from the cache (warm) or processed every time (cold).

Both classes send the same ~6,000-token system prompt and a short question. ``CacheWarm`` marks
the prefix with ``cache_control``: the first call writes it (``cache_creation_input_tokens``),
later calls read it (``cache_read_input_tokens``) and skip its prefill, so TTFT drops.
``CacheCold`` sends it unmarked, so every call processes it. The prefix is longer than the
models' minimum cacheable length (1,024 to 4,096 tokens). Run alone:
``locust -f scenarios/prompt_caching.py --headless -u 2 -t 1m``.
"""

import random

from harness import AnthropicUser
from harness.prompts import synthetic_text

# Seeded, so every user, worker and run sends the very same prefix.
HANDBOOK = "You answer questions about this handbook.\n\n" + synthetic_text(6000, random.Random(42))
QUESTION = "Which section of the handbook talks about the cache? Answer in one sentence."


class CacheWarm(AnthropicUser):
    """The long prefix marked with cache_control: written once, then read from the cache."""

    model = "claude-haiku-4-5"
    max_tokens = 128
    system = [{"type": "text", "text": HANDBOOK, "cache_control": {"type": "ephemeral"}}]
    prompt = QUESTION
    tags = ("caching",)


class CacheCold(AnthropicUser):
    """The same long prefix without cache_control: processed in full on every call."""

    model = "claude-haiku-4-5"
    max_tokens = 128
    system = [{"type": "text", "text": HANDBOOK}]
    prompt = QUESTION
    tags = ("caching",)
