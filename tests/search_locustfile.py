"""The locustfile of tests/test_capacity_search.py: answers of a fixed length, so a call's slot time is known."""

from __future__ import annotations

from harness import AnthropicUser

ANSWER_TOKENS = 30


class Explain(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = ANSWER_TOKENS
    prompt = "Explain load testing in detail."  # an open question: the simulator answers at length, cut at max_tokens
