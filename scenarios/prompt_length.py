"""Prompt length: a short prompt versus a long context of about 8,000 tokens.

Input tokens are processed before the first output token, so a long prompt raises TTFT (and,
less, completion time); the answer's length is the same. Compare the classes' ``input_tokens``
and TTFT. Run alone: ``locust -f scenarios/prompt_length.py --headless -u 2 -t 1m``.
"""

from harness import AnthropicUser
from harness.prompts import Synthetic

QUESTION = "Summarise the text above in one sentence."


class ShortPrompt(AnthropicUser):
    """A one-line request: the short-prompt baseline."""

    model = "claude-haiku-4-5"
    max_tokens = 128
    prompt = "Summarise the plot of Hamlet in one sentence."
    tags = ("prompt-length",)


class LongContext(AnthropicUser):
    """About 8,000 tokens of fresh document per call, then a one-line request."""

    model = "claude-haiku-4-5"
    max_tokens = 128
    prompt_source = Synthetic(tokens=8000, question=QUESTION, seed=1)
    tags = ("prompt-length",)
