"""Streaming versus non-streaming: the same request, measured both ways.

A streamed call shows its first token early (TTFT) while the answer is still being written; a
non-streamed call returns only when the whole answer is done, so its only figure is completion
time — the latency guide's baseline latency. Run alone:
``locust -f scenarios/streaming.py --headless -u 2 -t 1m``.
"""

from harness import AnthropicUser

PROMPT = "Give three tips for writing clear error messages."


class Streamed(AnthropicUser):
    """The request streamed: TTFT and completion time."""

    model = "claude-haiku-4-5"
    max_tokens = 300
    prompt = PROMPT
    stream = True
    tags = ("streaming",)


class NonStreamed(AnthropicUser):
    """The same request not streamed: completion time only, no TTFT."""

    model = "claude-haiku-4-5"
    max_tokens = 300
    prompt = PROMPT
    stream = False
    tags = ("streaming",)
