"""Short chat: one brief question to Haiku, the fastest model — the default scenario.

Run alone: ``locust -f scenarios/chat.py --headless -u 5 -t 20s``.
"""

from harness import AnthropicUser


class ShortChat(AnthropicUser):
    """A short question with a short answer, streamed: the baseline for every lever."""

    model = "claude-haiku-4-5"
    max_tokens = 256
    prompt = "In two sentences, why does streaming make a chat interface feel faster?"
    tags = ("chat",)
