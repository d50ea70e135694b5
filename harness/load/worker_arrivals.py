"""A worker's part of an open-loop run: its share of the master's rate, its own seed and caps.

The master's load shape runs no arrivals itself: each stage's total rate goes to the
workers (:mod:`harness.load.stage_control`), and each worker arrives at its equal share
(:func:`harness.load.distributed.rate_share`), with its own seed and its share of
``--max-in-flight`` and ``--max-backlog``, so the total is the asked rate. Arrival counts
go back to the master's stage analysis.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.core.errors import ConfigError
from harness.core.options import from_namespace
from harness.core.stages import StageAnalysis
from harness.load.arrivals import ArrivalOptions, OpenLoopDriver
from harness.load.channel import rate_share
from harness.load.context import read_context
from harness.load.stage_control import apply_stage
from harness.runtime.state import harness_of

__all__ = ["ARRIVALS_MESSAGE", "WorkerArrivals", "on_arrivals_message", "on_stage_message"]

ARRIVALS_MESSAGE = "llm_harness_arrivals"  # worker -> master: arrivals due and dropped, per stage
ARRIVALS_REPORT_S = 0.5

log = logging.getLogger(__name__)


class WorkerArrivals:
    """A worker's part of an open-loop run: its share of the master's rate, its own seed and caps.

    The driver is built at the worker's first test start, from the options the master's
    spawn message carries (a ``--worker`` process is started without them), and follows
    the master's stage messages; the share is read again as workers join or leave.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.driver: OpenLoopDriver | None = None
        self.total = 0.0
        self._share = -1.0
        self._counts: Counter[tuple[str | None, bool, bool]] = Counter()
        self._follower: gevent.Greenlet | None = None
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stopping.add_listener(self._on_test_stopping)

    def on_message(self, data: Mapping[str, Any]) -> None:
        if "rate" in data:
            self.total = float(data["rate"])
            self._follow_share()

    def _on_test_start(self, **_: Any) -> None:
        # After every test_start listener: the distributed reporter sets this worker's slot there.
        gevent.spawn(self._start)

    def _start(self) -> None:
        options = self.environment.parsed_options
        try:
            arrival = from_namespace(ArrivalOptions, options)
        except ConfigError as exc:  # the master checked the same options; only a mismatch lands here
            log.error("open-loop options rejected on this worker: %s", exc)
            return
        if not arrival.open_loop:
            return
        context = read_context(options)
        if context is not None and context.arrival_rate is not None:
            self.total = float(context.arrival_rate)
        if self.driver is None:
            self.driver = OpenLoopDriver(self.environment, self._own(arrival), follow_test=False, note=self._note)
        self._share = -1.0
        self._follow_share()
        self.driver.start()
        self._follower = gevent.spawn(self._follow_loop)

    def _own(self, arrival: ArrivalOptions) -> ArrivalOptions:
        """This worker's options: a seed of its own (no lockstep) and its share of the caps."""
        index, count = harness_of(self.environment).worker_slot
        runner = self.environment.runner
        seed_index = runner.worker_index if isinstance(runner, WorkerRunner) else index
        return replace(
            arrival,
            arrival_seed=arrival.arrival_seed + max(seed_index, 0),
            max_in_flight=max(1, math.ceil(arrival.max_in_flight / count)),
            max_backlog=math.ceil(arrival.max_backlog / count),
        )

    def _follow_share(self) -> None:
        share = rate_share(self.environment, self.total)
        if self.driver is not None and share != self._share:
            self._share = share
            self.driver.set_rate(share)

    def _follow_loop(self) -> None:
        while True:
            gevent.sleep(ARRIVALS_REPORT_S)
            self._follow_share()
            self._report()

    def _note(self, label: str | None, warmup: bool, dropped: bool) -> None:
        self._counts[(label, warmup, dropped)] += 1

    def _report(self) -> None:
        if self._counts and isinstance(self.environment.runner, WorkerRunner):
            rows = [[label, warmup, dropped, n] for (label, warmup, dropped), n in self._counts.items()]
            self._counts.clear()
            self.environment.runner.send_message(ARRIVALS_MESSAGE, {"rows": rows})

    def _on_test_stopping(self, **_: Any) -> None:
        if self._follower is not None:
            self._follower.kill(block=False)
            self._follower = None
        if self.driver is not None:
            self.driver.stop()
        self._report()  # before the worker's last batch of records, on the same channel


def on_arrivals_message(analysis: StageAnalysis) -> Any:
    """The master's handler of its workers' arrival counts."""

    def handler(msg: Any, **_: Any) -> None:
        for label, warmup, dropped, n in msg.data["rows"]:
            for _i in range(int(n)):
                analysis.note_arrival(label, bool(warmup), bool(dropped))

    return handler


def on_stage_message(environment: Environment, arrivals: WorkerArrivals) -> Any:
    """A worker's handler of the master's stage messages."""

    def handler(msg: Any, **_: Any) -> None:
        if "label" in msg.data:
            apply_stage(environment, msg.data.get("label"), float(msg.data.get("warmup_s", 0.0)))
        arrivals.on_message(msg.data)

    return handler
