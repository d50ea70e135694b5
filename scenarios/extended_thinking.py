"""Extended thinking: thinking budget steps, and TTFT versus time to first text.

With thinking on, the first tokens are thinking, not answer: TTFT (first token of any kind)
stays low while time to first text (``first_text_s``) and completion time grow with the budget.
Compare ``ttft_s`` with ``first_text_s`` per class. ``max_tokens`` must exceed the budget
(so a ``--max-tokens`` override below it makes these calls fail with ``http_400``).
Run alone: ``locust -f scenarios/extended_thinking.py --headless -u 3 -t 1m``.
"""

from harness import AnthropicUser

PUZZLE = (
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
    "How much does the ball cost? Give the answer in one sentence."
)


class _Puzzle(AnthropicUser):
    abstract = True
    model = "claude-haiku-4-5"
    prompt = PUZZLE
    tags = ("thinking",)


class NoThinking(_Puzzle):
    """The puzzle without extended thinking: the baseline."""

    max_tokens = 512


class Thinking1k(_Puzzle):
    """The puzzle with a 1,024-token thinking budget."""

    max_tokens = 1024 + 512
    params = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


class Thinking2k(_Puzzle):
    """The puzzle with a 2,048-token thinking budget (the lever study's top arm: it shows the
    budget's effect in half the time of ``Thinking4k``)."""

    max_tokens = 2048 + 512
    params = {"thinking": {"type": "enabled", "budget_tokens": 2048}}


class Thinking4k(_Puzzle):
    """The puzzle with a 4,096-token thinking budget."""

    max_tokens = 4096 + 512
    params = {"thinking": {"type": "enabled", "budget_tokens": 4096}}
