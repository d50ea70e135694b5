"""A production-like mix: mostly short chats, some long-context questions, a few agents and reasoners.

One user class whose weighted tasks are the kinds of request a typical application sends —
6 short chats : 2 long-context (RAG-style) questions : 1 tool round trip : 1 extended-thinking
call — each under its own name, so the table shows every kind's latency under the shared load.
Change the weights to match your traffic. Run alone:
``locust -f scenarios/mixed.py --headless -u 20 -r 5 -t 5m``.
"""

from locust import task

from harness import AnthropicUser
from harness.prompts import Synthetic, Template
from scenarios import tool_use

CHATS = Template(
    "In {n} sentences, {ask}",
    n=[1, 2, 3],
    ask=["what is a race condition?", "how do I undo a git commit?", "why is the sky blue?"],
    seed=3,
)
DOCUMENTS = Synthetic(tokens=4000, question="Which three facts in the text above matter most?", seed=4)
THINKING = {"type": "enabled", "budget_tokens": 1024}


class ProductionMix(AnthropicUser):
    """A weighted mix 6:2:1:1 of short chats, long-context questions, tool round trips and thinking."""

    model = "claude-haiku-4-5"
    max_tokens = 300
    tags = ("mixed",)

    @task(6)
    def chat(self) -> None:
        self.messages(**CHATS.next_request(), name="ProductionMix.chat")

    @task(2)
    def long_context(self) -> None:
        self.messages(**DOCUMENTS.next_request(), name="ProductionMix.long_context")

    @task(1)
    def agent(self) -> None:
        tool_use.round_trip(self, "ProductionMix.tool")

    @task(1)
    def reasoning(self) -> None:
        self.messages(
            "Is 1,001 a prime number? Answer yes or no with the reason.",
            max_tokens=1024 + 300,
            thinking=THINKING,
            name="ProductionMix.thinking",
        )
