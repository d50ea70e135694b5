"""The locustfile of tests/test_openloop_distributed.py: one small scenario for open-loop arrivals."""

from __future__ import annotations

from harness import AnthropicUser


class Small(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = 8
    prompt = "hi"
