"""A lever study's blocks on a real Locust runner: one arm at a time, at one concurrency, warm-up marked.

:class:`BlockRunner` drives an :class:`~locust.env.Environment`'s ``LocalRunner`` through
the study's schedule, one :class:`~harness.core.schedule.Block` at a time. One Locust run
(one ``test_start``, one ``test_stop``) holds every block, so ``requests.jsonl``,
``summary.json`` and Locust's stats cover the whole study, each arm in its own rows. A
block:

1. stamps the block on the run's :class:`~harness.runtime.state.Harness`, so every call
   it starts carries ``arm``, ``round`` and ``block``, and raises the harness's warm-up flag;
2. spawns ``users`` users of the arm's class at once (Locust's ``spawn_users``);
3. lowers the warm-up flag when its first call ends: the calls started before then are the
   users' synchronised first calls (one per user), unlike any later call, so they are
   marked ``warmup: true`` and left out of the figures, as a stage's warm-up is;
4. lets each user start calls until the block has started ``warmup + block_calls`` calls
   (or ``block_seconds`` have passed); then each user finishes the call it is in and
   stops. No call is cut short: cutting the calls in flight would keep the short ones and
   drop the long ones;
5. ends when its last user has stopped, so blocks never overlap.

A user whose task raises is stopped too (Locust reports the error), so a broken scenario
cannot keep a block open.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_CLEANUP, STATE_RUNNING, LocalRunner
from locust.user.users import LOCUST_STATE_RUNNING, User

from harness.core.measure import CallRecord
from harness.core.schedule import Block
from harness.runtime.state import Harness, harness_of

__all__ = ["BlockResult", "BlockRunner"]

log = logging.getLogger(__name__)


@dataclass
class BlockResult:
    """What one block ran: its calls (warm-up included), and when, on the monotonic clock."""

    block: Block
    t_start: float
    t_end: float = 0.0
    records: list[CallRecord] = field(default_factory=list)
    user_errors: int = 0

    @property
    def warmup_calls(self) -> int:
        return sum(r.warmup for r in self.records)

    def to_dict(self) -> dict[str, Any]:
        """The block as study.json's schedule lists it."""
        return {
            "index": self.block.index,
            "round": self.block.round,
            "arm": self.block.arm,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "calls": len(self.records) - self.warmup_calls,
            "warmup_calls": self.warmup_calls,
            "user_errors": self.user_errors,
        }


class BlockRunner:
    """Runs blocks of one arm each on ``environment``'s local runner, one after another."""

    def __init__(
        self,
        environment: Environment,
        *,
        users: int,
        block_calls: int | None,
        block_seconds: float | None = None,
    ) -> None:
        if users < 1:
            raise ValueError(f"users={users}: a block needs one user or more")
        if block_calls is None and block_seconds is None:
            raise ValueError("give block_calls, block_seconds or both: a block must end")
        runner = environment.runner
        if not isinstance(runner, LocalRunner):
            raise TypeError("a study runs in one process: create the environment's local runner first")
        self.environment = environment
        self.runner: LocalRunner = runner
        self.harness: Harness = harness_of(environment)
        self.users = users
        self.block_calls = block_calls
        self.block_seconds = block_seconds
        self._current: BlockResult | None = None
        self._admitted = 0  # calls the block has let start
        self._members: dict[int, User] = {}  # user_id -> user, this block's users
        self._stopping: set[int] = set()
        events: Any = environment.events
        events.llm_request.add_listener(self._on_record)
        events.user_error.add_listener(self._on_user_error)

    # -- the run -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the Locust run (``test_start``: files opened, monitors started) with no user yet."""
        self.runner.start(0, spawn_rate=1)
        while self.runner.state != STATE_RUNNING:
            gevent.sleep(0.01)

    def run(self, block: Block) -> BlockResult:
        """Run ``block`` to its end; an exception (an interrupt) leaves its users to :meth:`stop`."""
        user_class = self.environment.user_classes_by_name[block.arm]
        result = BlockResult(block, t_start=time.monotonic())
        self._current = result
        self._admitted = self.users  # the first call of each user: the warm-up
        self._stopping = set()
        self.harness.block = block
        self.harness.warmup = True
        try:
            spawned = self.runner.spawn_users({user_class.__name__: self.users})
            self._members = {getattr(u, "user_id", id(u)): u for u in spawned}
            self.runner.user_greenlets.join()
        finally:
            result.t_end = time.monotonic()
            self.harness.block = None
            self.harness.warmup = False
            self._current = None
        return result

    def stop(self) -> None:
        """End the run now: users still running are killed (their calls recorded ``cancelled``), then Locust's stop."""
        # The spend guard's cap may have begun Locust's stop in a greenlet of its own: let it finish, not run twice.
        while self.runner.state == STATE_CLEANUP:
            gevent.sleep(0.01)
        self.runner.user_greenlets.kill(block=True)
        self.runner.quit()

    # -- inside a block ----------------------------------------------------------------

    def _on_record(self, record: CallRecord, **_: Any) -> None:
        result = self._current
        if result is None or record.block != result.block.index:
            return
        result.records.append(record)
        # The first call to end closes the warm-up: every call started from now on is measured.
        self.harness.warmup = False
        if self._admit(result):
            self._admitted += 1
            return
        user = self._members.get(record.user_id) if record.user_id is not None else None
        if user is not None:
            self._stop_after_this_call(user)

    def _admit(self, result: BlockResult) -> bool:
        """May the user whose call just ended start another one in this block?"""
        if self.block_seconds is not None and time.monotonic() - result.t_start >= self.block_seconds:
            return False
        return self.block_calls is None or self._admitted < self.users + self.block_calls

    def _on_user_error(self, user_instance: Any, **_: Any) -> None:
        if self._current is not None:
            self._current.user_errors += 1
            # Locust passes the task set the error came from; its user is the one to stop.
            user = getattr(user_instance, "user", user_instance)
            if isinstance(user, User):
                self._stop_after_this_call(user)

    def _stop_after_this_call(self, user: User) -> None:
        key = id(user)
        if key in self._stopping:
            return
        self._stopping.add(key)
        if user._state == LOCUST_STATE_RUNNING:
            user.stop(force=False)  # it ends the task it is in (this call), then stops
        elif user.greenlet is not gevent.getcurrent():
            user.stop(force=True)  # between tasks: nothing of it is in flight
