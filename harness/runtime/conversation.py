"""Multi-turn conversations: the history grows turn by turn, with think time between turns.

The common case is a class attribute list of user turns::

    class TripPlanner(ConversationUser):
        model = "claude-haiku-4-5"
        max_tokens = 300
        turns = ["I'm going to Kyoto in May.", "What should I pack?", "And for a rainy day?"]
        think_time = (2.0, 5.0)   # seconds between turns, uniform; Locust's wait_time is between conversations

Each turn is one measured call that sends the whole history so far, so ``input_tokens`` grows
call by call. The harness measures timing, not content: it does not keep the reply's text, so
the assistant turn added to the history is seeded filler of the reply's ``output_tokens``
length, which is what the next turn's prefill and latency depend on. For anything else, build a
:class:`Conversation` in your own ``@task``.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import gevent
from locust import task

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.prompts import synthetic_text
from harness.core.request import user_message
from harness.runtime.user import AnthropicUser

__all__ = ["Conversation", "ConversationUser", "ThinkTime"]

ThinkTime = float | tuple[float, float]


class Conversation:
    """One conversation of one user: ``say()`` sends a turn with the whole history so far.

    ``call_options`` (``system=``, ``name=``, ``max_tokens=``…) go with every call.
    """

    def __init__(
        self,
        user: AnthropicUser,
        *,
        think_time: ThinkTime = 0.0,
        rng: random.Random | None = None,
        **call_options: Any,
    ) -> None:
        self.user = user
        self.think_time = think_time
        self.call_options = call_options
        self.history: list[dict[str, Any]] = []
        self._rng = rng or random.Random()

    def say(self, content: str | Sequence[Mapping[str, Any]], **options: Any) -> CallRecord:
        """Think (after the first turn), add a user turn, make the call, add the reply to the history.

        A failed call leaves the history as it was before the turn, so the conversation can go on.
        """
        if self.history:
            self.think()
        self.history.append(user_message(content) if isinstance(content, str) else {"role": "user", "content": content})
        record = self.user.messages(messages=list(self.history), **{**self.call_options, **options})
        if record.ok:
            self.history.append({"role": "assistant", "content": self.stand_in_reply(record)})
        else:
            self.history.pop()
        return record

    def play(self, turns: Iterable[str | Sequence[Mapping[str, Any]]]) -> list[CallRecord]:
        """Say each turn in order; stop at the first failed call (as a user would give up)."""
        records = []
        for turn in turns:
            record = self.say(turn)
            records.append(record)
            if not record.ok:
                break
        return records

    def think(self) -> None:
        """Sleep for the think time: a fixed number of seconds or a uniform (low, high) range."""
        low, high = _bounds(self.think_time)
        delay = low if low == high else self._rng.uniform(low, high)
        if delay > 0:
            gevent.sleep(delay)

    def stand_in_reply(self, record: CallRecord) -> str:
        """Filler of the reply's length, as the reply's text is not kept (see the module docstring)."""
        return synthetic_text(max(1, record.output_tokens or 1), self._rng).rstrip() or "OK."


class ConversationUser(AnthropicUser):
    """A user that plays ``turns`` as one conversation per iteration, ``think_time`` between turns."""

    abstract = True

    turns: ClassVar[Sequence[str]] = ()
    think_time: ClassVar[ThinkTime] = 0.0

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.think_rng = random.Random(self.user_id)  # seeded: the same user thinks the same way every run

    @classmethod
    def validate(cls) -> None:
        super().validate()
        where = f"scenario {cls.__name__} ({inspect.getsourcefile(cls) or cls.__module__})"
        if not cls.turns or not all(isinstance(t, str) and t.strip() for t in cls.turns):
            raise ConfigError(f'{where}: turns must be a list of non-empty strings, e.g. ["Hi", ...]')
        try:
            low, high = _bounds(cls.think_time)
        except (TypeError, ValueError):
            low, high = -1.0, -1.0
        if not 0 <= low <= high:
            raise ConfigError(f"{where}: think_time must be seconds >= 0 or a (low, high) pair")

    @task
    def converse(self) -> None:
        """One conversation: every turn in order, with the whole history each time."""
        Conversation(self, think_time=self.think_time, rng=self.think_rng).play(self.turns)


def _bounds(think_time: ThinkTime) -> tuple[float, float]:
    if isinstance(think_time, tuple):
        low, high = think_time
        return float(low), float(high)
    return float(think_time), float(think_time)
