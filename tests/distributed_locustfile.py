"""The locustfile of tests/test_distributed.py: small scenarios, and each worker counting its own calls.

Environment variables pick what a run uses:

* ``DIST_COUNT_DIR`` — every worker process appends ``call_id outcome`` for each call it
  makes to ``DIR/calls-<pid>.txt`` (line-buffered, so a killed worker leaves whole lines):
  the workers' own count, independent of what reaches the master.
* ``DIST_SHAPE=steps`` — a two-step LoadTestShape (2 users labelled ``s1``, then 4 labelled ``s2``).
* ``DIST_RATE=R`` — an open-loop user issuing R calls/s in total, split across workers
  with :func:`harness.load.distributed.rate_share`; otherwise a closed-loop user.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import gevent
from locust import LoadTestShape, constant, events
from locust.env import Environment
from locust.runners import WorkerRunner

from harness import AnthropicUser, CallRecord, harness_of
from harness.load.channel import rate_share
from harness.runtime import events as llm_events

COUNT_DIR = os.environ.get("DIST_COUNT_DIR")
SHAPE = os.environ.get("DIST_SHAPE")
RATE = float(os.environ.get("DIST_RATE") or 0)


@events.init.add_listener
def _count_own_calls(environment: Environment, **_: Any) -> None:
    if COUNT_DIR is None or not isinstance(environment.runner, WorkerRunner):
        return
    log = open(Path(COUNT_DIR) / f"calls-{os.getpid()}.txt", "a", buffering=1)  # noqa: SIM115

    def write(record: CallRecord, **_: Any) -> None:
        log.write(f"{record.call_id} {record.outcome}\n")

    llm_events.install(environment.events)
    environment.events.llm_request.add_listener(write)  # type: ignore[attr-defined]


if RATE:

    class Paced(AnthropicUser):
        """This worker's share of RATE, split over its users, each on a fixed schedule."""

        model = "claude-haiku-4-5"
        max_tokens = 8
        prompt = "hi"
        wait_time = constant(0)

        def on_start(self) -> None:
            self._next = time.monotonic()

        def paced(self) -> None:
            users_here = max(1, self.environment.runner.user_count if self.environment.runner else 1)
            share = rate_share(self.environment, RATE)
            self._next += users_here / share
            if COUNT_DIR is not None:
                (Path(COUNT_DIR) / f"share-{os.getpid()}.txt").write_text(f"{share}\n")
            gevent.sleep(max(0.0, self._next - time.monotonic()))
            self.messages()

        tasks = [paced]  # only this one: not AnthropicUser's unpaced default task

else:

    class Steady(AnthropicUser):
        model = "claude-haiku-4-5"
        max_tokens = 16
        prompt = "hi"
        wait_time = constant(0.05)


if SHAPE == "steps":

    class TwoSteps(LoadTestShape):
        """2 users for 3 s (stage s1), then 4 users for 3 s (stage s2), then stop."""

        steps = ((3.0, 2, "s1"), (6.0, 4, "s2"))

        def tick(self) -> tuple[int, float] | None:
            now = self.get_run_time()
            for end, users, label in self.steps:
                if now < end:
                    harness = harness_of(self.runner.environment)
                    if harness.stage != label:
                        harness.stage = label
                    return users, 20.0
            return None
