"""Open-loop load: calls issued on a schedule of arrivals, whatever is still in flight.

``--arrival constant|poisson|gamma --rate R[,R2,...]`` makes arrivals at R requests/s
(one stage per rate, see :mod:`harness.load.shapes`). Gaps between arrivals are constant,
exponential (Poisson process) or gamma-distributed with coefficient of variation
``--burstiness`` (1 is Poisson, above 1 burstier, below 1 smoother), from a seeded
generator so two runs offer the same schedule.

Each arrival becomes one call of a scenario (picked by the classes' Locust ``weight``),
sent with the class's own request (its prompt/conversation and attributes; custom
``@task`` methods are closed-loop only) through ``Harness.call(..., t_scheduled=...)``,
so TTFT and completion time are measured from the *scheduled* time (METRICS.md): a
client or server that falls behind shows up in the latency instead of hiding in a
slower request rate (coordinated omission).

At most ``--max-in-flight`` calls run at once; an arrival beyond that waits in a backlog
of at most ``--max-backlog`` and starts late; an arrival that finds the backlog full is
dropped. Late and dropped arrivals are counted per stage.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import gevent
from gevent.pool import Group
from locust.env import Environment

from harness.core.errors import ConfigError
from harness.core.options import option
from harness.core.units import parse_loads
from harness.load.stages import StageTracking
from harness.runtime.state import harness_of
from harness.runtime.user import AnthropicUser

__all__ = ["ARRIVALS", "ArrivalOptions", "Gaps", "OpenLoopDriver"]

ARRIVALS = ("none", "constant", "poisson", "gamma")


def _rates(text: str) -> tuple[float, ...]:
    return parse_loads(text, "--rate") if str(text).strip() else ()


@dataclass(frozen=True)
class ArrivalOptions:
    """The validated open-loop options of one run."""

    arrival: str = option(
        "--arrival",
        default="none",
        choices=ARRIVALS,
        convert=lambda value: value or "none",
        help="Open-loop load: issue calls at --rate whatever is in flight; latency counts from the scheduled "
        "time. Default: none (closed loop: Locust users).",
    )
    rates: tuple[float, ...] = option(
        "--rate",
        default="",
        metavar="R[,R2,...]",
        convert=_rates,
        help="Arrivals per second; several rates are stages of --stage-duration each.",
    )
    burstiness: float = option(
        "--burstiness",
        default=1.0,
        type=float,
        metavar="CV",
        help="gamma arrivals: coefficient of variation of the gaps (1 = Poisson, >1 bursty). Default 1.",
    )
    max_in_flight: int = option(
        "--max-in-flight",
        default=256,
        type=int,
        metavar="N",
        help="Open loop: most calls in flight at once; later arrivals wait and start late. Default 256.",
    )
    max_backlog: int = option(
        "--max-backlog",
        default=1000,
        type=int,
        metavar="N",
        help="Open loop: most arrivals waiting for a free slot; more are dropped (and counted). Default 1000.",
    )
    arrival_seed: int = option(
        "--arrival-seed",
        default=0,
        type=int,
        metavar="N",
        help="Seed of the arrival schedule and scenario picks. Default 0.",
    )

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise ConfigError(f"--arrival {self.arrival!r} is unknown; choose one of: {', '.join(ARRIVALS)}")
        if self.open_loop and not self.rates:
            raise ConfigError(f"--arrival {self.arrival} needs --rate, e.g. --rate 5 or --rate 1,2,4,8")
        if self.rates and not self.open_loop:
            raise ConfigError("--rate needs --arrival constant|poisson|gamma")
        if not self.burstiness > 0:
            raise ConfigError(f"--burstiness must be above 0, got {self.burstiness}")
        if self.max_in_flight < 1 or self.max_backlog < 0:
            raise ConfigError("--max-in-flight must be 1 or more and --max-backlog 0 or more")

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def open_loop(self) -> bool:
        return self.arrival != "none"


class Gaps:
    """Seconds between arrivals at ``rate``/s: constant, exponential or gamma with CV ``burstiness``."""

    def __init__(self, kind: str, rate: float, burstiness: float, rng: random.Random) -> None:
        self.kind = kind
        self.mean = 1.0 / rate
        self.rng = rng
        # Gamma with shape k has CV 1/sqrt(k): k = 1/CV^2, and scale = mean/k keeps the mean.
        self.shape = 1.0 / (burstiness * burstiness)

    def next(self) -> float:
        if self.kind == "constant":
            return self.mean
        if self.kind == "poisson":
            return self.rng.expovariate(1.0 / self.mean)
        return self.rng.gammavariate(self.shape, self.mean / self.shape)


class OpenLoopDriver:
    """Issues one call per arrival, capped at ``max_in_flight``, with a bounded backlog."""

    def __init__(
        self,
        environment: Environment,
        options: ArrivalOptions,
        *,
        follow_test: bool = True,
        note: Callable[[str | None, bool, bool], None] | None = None,
    ) -> None:
        self.environment = environment
        self.options = options
        self.harness = harness_of(environment)
        self.rng = random.Random(options.arrival_seed)
        self.rate = 0.0
        self.in_flight = 0
        # (scheduled time, what to call): a scenario class here, a trace line for a replay.
        self.backlog: deque[tuple[float, Any]] = deque()
        self.calls = Group()
        self._loop: gevent.Greenlet | None = None
        self._running = False
        # Where each arrival is counted: this process's stage analysis, or (a worker) the master's.
        self._note = note
        if follow_test:  # else the owner calls start() and stop() (a worker, see harness.load.shapes)
            environment.events.test_start.add_listener(self.start)
            environment.events.test_stopping.add_listener(self.stop)

    # -- control -----------------------------------------------------------------------

    def set_rate(self, rate: float) -> None:
        """Switch to ``rate`` arrivals/s now (0 stops arriving); the backlog carries over."""
        self.rate = rate
        if self._running:
            self._restart()

    def start(self, **_: Any) -> None:
        """Start arriving at the current rate (at test start)."""
        self._running = True
        self._restart()

    def stop(self, **_: Any) -> None:
        """Stop arriving, drop the backlog and cancel the calls in flight (at test stop)."""
        self._running = False
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None
        self.backlog.clear()
        # Harness.call records each killed call as cancelled.
        self.calls.kill(block=True, timeout=5)

    def _restart(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None
        if self.rate > 0:
            self._loop = gevent.spawn(self._arrive, self.rate)

    # -- the schedule --------------------------------------------------------------------

    def _arrive(self, rate: float) -> None:
        gaps = Gaps(self.options.arrival, rate, self.options.burstiness, self.rng)
        due = time.monotonic() + gaps.next()
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(delay)
            # A loop woken late issues every arrival it owes, each with its own scheduled time.
            self._dispatch(due)
            due += gaps.next()

    def _dispatch(self, t_scheduled: float, item: Any = None) -> None:
        """One arrival due at ``t_scheduled``: of ``item`` (see :meth:`_issue`), else of a picked scenario."""
        harness = self.harness
        item = self._pick_scenario() if item is None else item
        dropped = False
        if self.in_flight < self.options.max_in_flight:
            self._start(t_scheduled, item)
        elif len(self.backlog) < self.options.max_backlog:
            self.backlog.append((t_scheduled, item))
        else:
            dropped = True
        if self._note is not None:
            self._note(harness.stage, harness.warmup, dropped)
            return
        tracking = harness.feature(StageTracking)
        if tracking is not None:
            tracking.analysis.note_arrival(harness.stage, harness.warmup, dropped)

    def _pick_scenario(self) -> type:
        classes = [c for c in self.environment.user_classes if issubclass(c, AnthropicUser)]
        if not classes:
            raise ConfigError("open-loop arrivals need at least one AnthropicUser scenario")
        weights = [max(getattr(c, "weight", 1), 0) or 1 for c in classes]
        return self.rng.choices(classes, weights)[0]

    def _start(self, t_scheduled: float, item: Any) -> None:
        self.in_flight += 1
        self.calls.spawn(self._call, t_scheduled, item)

    def _call(self, t_scheduled: float, item: Any) -> None:
        try:
            self._issue(t_scheduled, item)
        finally:
            self.in_flight -= 1
            if self.backlog and self._running:
                self._start(*self.backlog.popleft())

    def _issue(self, t_scheduled: float, scenario: Any) -> None:
        """Make the measured call of one arrival: here one call of the scenario class ``scenario``."""
        user = scenario(self.environment)
        host = user.host or self.environment.host or ""
        self.harness.call(user.build_request(), host=host, scenario=user.name(), t_scheduled=t_scheduled)
