"""Output length: ``max_tokens`` steps, and asking for one sentence versus an open question.

Completion time grows with every output token, so capping or shortening the answer is the
biggest lever on it (TTFT barely moves). ``MaxTokens*`` cap the same long answer at 64, 256 and
1024 tokens (``stop_reason`` becomes ``max_tokens``); ``OneSentence`` and ``OpenQuestion`` ask
about the same topic concisely and openly. Run alone:
``locust -f scenarios/output_length.py --headless -u 5 -t 1m``.
"""

from harness import AnthropicUser

LONG_ANSWER = "Write a detailed guide to tuning a PostgreSQL database for a write-heavy workload."


class _Capped(AnthropicUser):
    abstract = True
    model = "claude-haiku-4-5"
    prompt = LONG_ANSWER
    tags = ("output-length",)


class MaxTokens64(_Capped):
    """A long answer cut at max_tokens = 64."""

    max_tokens = 64


class MaxTokens256(_Capped):
    """A long answer cut at max_tokens = 256."""

    max_tokens = 256


class MaxTokens1024(_Capped):
    """A long answer cut at max_tokens = 1024."""

    max_tokens = 1024


class OneSentence(AnthropicUser):
    """A question that asks for a one-sentence answer: short output, short completion time."""

    model = "claude-haiku-4-5"
    max_tokens = 1024
    prompt = "Answer in one sentence: what is the main benefit of database indexes?"
    tags = ("output-length",)


class OpenQuestion(AnthropicUser):
    """The same topic as an open question: the model decides how long to talk."""

    model = "claude-haiku-4-5"
    max_tokens = 1024
    prompt = "Tell me about database indexes."
    tags = ("output-length",)
