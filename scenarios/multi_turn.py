"""Multi-turn chat: a four-turn conversation whose history grows with every turn.

Each turn resends the whole conversation so far, so ``input_tokens`` and TTFT grow turn by
turn; ``think_time`` is the pause while the person reads and types. Run alone:
``locust -f scenarios/multi_turn.py --headless -u 5 -t 2m``.
"""

from harness.conversation import ConversationUser


class MultiTurnChat(ConversationUser):
    """Four turns of trip planning, 1-3 s think time between turns, the history resent each time."""

    model = "claude-haiku-4-5"
    max_tokens = 200
    turns = (
        "I'm going to Kyoto for a week in May. What should I see?",
        "Which of those are best early in the morning?",
        "What should I pack for the weather?",
        "Summarise the plan in three bullet points.",
    )
    think_time = (1.0, 3.0)
    tags = ("multi-turn",)
