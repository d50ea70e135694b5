"""Opening and closing stages: the label and warm-up on every call, the analysis, the workers, the rate.

A load shape (:mod:`harness.load.shapes`) decides *when* a stage changes; the
:class:`StageController` does what a change means: the stage's label (``u4``, ``r2.5``)
stamped on every call through ``harness.stage``, its first ``--warmup`` seconds marked
through ``harness.warmup``, its boundaries in the stage analysis, its rate to the
open-loop driver, and on a master the label (and rate) sent to every worker.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import MasterRunner

from harness.core.stages import Stage, stage_label
from harness.load import stages
from harness.load.arrivals import OpenLoopDriver
from harness.load.context import update_context
from harness.runtime.features import Feature
from harness.runtime.state import harness_of

__all__ = ["STAGE_MESSAGE", "StageController", "Warmup", "apply_stage"]

STAGE_MESSAGE = "llm_harness_stage"  # master -> workers: label, warm-up, and the open-loop total rate


class StageController:
    """Opens and closes stages: the label and warm-up on every call, the analysis, the workers, the rate."""

    def __init__(
        self,
        environment: Environment,
        warmup_s: float,
        driver: OpenLoopDriver | None = None,
        *,
        open_loop: bool = False,
    ) -> None:
        self.environment = environment
        self.harness = harness_of(environment)
        self.analysis = self.harness.install(stages.FEATURE).analysis
        self.warmup_s = warmup_s
        self.driver = driver
        self.open_loop = open_loop  # the stage's rate goes to the workers (a master has no driver)
        self._warmup_timer: gevent.Greenlet | None = None

    def begin(self, kind: str, offered: float) -> Stage:
        label = stage_label(kind, offered)
        stage = self.analysis.begin_stage(label, kind, offered, self.warmup_s, time.monotonic())
        apply_stage(self.environment, label, self.warmup_s)
        message: dict[str, Any] = {"label": label, "warmup_s": self.warmup_s}
        if self.open_loop and kind == "rate":
            message["rate"] = offered
        self._tell_workers(message)
        if self.driver is not None:
            self.driver.set_rate(offered)
        return stage

    def finish(self) -> None:
        self.analysis.end(time.monotonic())
        if self.open_loop:
            self._tell_workers({"rate": 0.0})
        if self.driver is not None:
            self.driver.set_rate(0.0)

    def _tell_workers(self, message: dict[str, Any]) -> None:
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return
        if "rate" in message:
            # Spawn messages carry it to workers that start (or join) after this message.
            update_context(self.environment.parsed_options, arrival_rate=message["rate"])
        runner.send_message(STAGE_MESSAGE, message)

    def finished_row(self) -> Mapping[str, Any]:
        """The figures of the stage that just ended (calls still in flight are not in them yet)."""
        return self.analysis.rows()[-1]


class Warmup:
    """The timer that ends the current stage's warm-up in this process."""

    def __init__(self) -> None:
        self.timer: gevent.Greenlet | None = None


WARMUP = Feature("stage warm-up", lambda harness: Warmup())


def apply_stage(environment: Environment, label: str | None, warmup_s: float) -> None:
    """Stamp ``label`` on this process's calls and mark the next ``warmup_s`` seconds as warm-up."""
    harness = harness_of(environment)
    warmup = harness.install(WARMUP)
    if warmup.timer is not None:
        warmup.timer.kill(block=False)
    harness.stage = label
    harness.warmup = warmup_s > 0

    def end_warmup() -> None:
        harness.warmup = False

    warmup.timer = gevent.spawn_later(warmup_s, end_warmup) if warmup_s > 0 else None
