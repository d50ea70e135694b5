"""Stepped load as Locust ``LoadTestShape``s: ``--load-shape steps|sweep`` from the command line.

``steps`` runs each load of ``--stages`` (closed-loop users) for ``--stage-duration``;
``sweep`` starts at the first load and doubles it after every stage until a stage breaks
the run's criteria (the ``--slo`` objectives in ``harness.slos``, or ``--sweep-ttft-p95``
and ``--sweep-max-error-rate``, or the defaults of :func:`harness.core.knee.criteria_for`);
``search`` starts at the first load too, and each stage is a probe of the capacity search
(:mod:`harness.load.search_probes`): it doubles until a probe breaks the SLOs, then bisects to
``--search-precision`` within ``--search-max-probes``.
With ``--arrival`` (:mod:`harness.load.arrivals`) the loads are open-loop request rates from
``--rate`` instead of users; across Locust workers each worker arrives at its share
(:mod:`harness.load.worker_arrivals`).

Locust calls a shape's ``tick`` about once a second, so a stage ends on the first tick
within half a second of its due time; the boundaries actually used are recorded and
reported. What a stage change means is :class:`~harness.load.stage_control.StageController`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.shape import LoadTestShape

from harness.core.errors import ConfigError
from harness.core.knee import criteria_for
from harness.core.options import option
from harness.core.search import LoadKind, SearchConfig
from harness.core.slo import SLO, evaluate, parse_slo
from harness.core.stages import Stage
from harness.core.units import parse_duration, parse_fraction, parse_loads
from harness.load import stages
from harness.load.arrivals import ArrivalOptions, OpenLoopDriver
from harness.load.search_probes import SearchProbes, slos_of
from harness.load.stage_control import STAGE_MESSAGE, StageController
from harness.load.worker_arrivals import ARRIVALS_MESSAGE, WorkerArrivals, on_arrivals_message, on_stage_message
from harness.runtime.features import Feature
from harness.runtime.state import Harness, harness_of

__all__ = ["FEATURE", "LOAD_SHAPES", "ShapeOptions", "StagedShape", "configure", "install"]

LOAD_SHAPES = ("none", "steps", "sweep", "search")
DEFAULT_STAGES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SPAWN_RATE = 100.0  # users/s when a stage changes: fast, and Locust's own advice keeps it at 100 or below
TICK_SLACK_S = 0.5  # Locust ticks a shape about once a second: end a stage on the nearest tick


@dataclass(frozen=True)
class ShapeOptions:
    """The validated load-shape options of one run (durations in seconds)."""

    load_shape: str = option(
        "--load-shape",
        default="none",
        choices=LOAD_SHAPES,
        convert=lambda value: value or "none",
        help="'steps': run each load of --stages for --stage-duration; 'sweep': double the load after each "
        "stage until a stage breaks the SLOs (or --sweep-* limits); 'search': double, then bisect to the most "
        "load that meets the SLOs (--search-precision). Default: none (Locust's -u/-r/-t).",
    )
    stages: tuple[float, ...] = option(
        "--stages",
        default="",
        metavar="LIST",
        convert=lambda text: parse_loads(text, "--stages") if str(text).strip() else (),
        help="Users per stage, e.g. 1,2,4,8,16,32 (the default for steps); sweep and search start at the first.",
    )
    stage_duration: float = option(
        "--stage-duration",
        default="30s",
        metavar="DURATION",
        convert=lambda text: parse_duration(text, "--stage-duration"),
        help="Length of each stage, e.g. 30s, 1m. Default 30s.",
    )
    warmup: float = option(
        "--warmup",
        default="3s",
        metavar="DURATION",
        convert=lambda text: parse_duration(text, "--warmup"),
        help="Start of each stage left out of its figures (kept in requests.jsonl as warmup). Default 3s.",
    )
    sweep_ttft_p95_ms: float = option(
        "--sweep-ttft-p95",
        default=0.0,
        type=float,
        metavar="MS",
        convert=lambda value: float(value or 0.0),
        help="Sweep stop rule: stop after a stage whose TTFT p95 exceeds MS milliseconds. Default: use --slo.",
    )
    sweep_max_error_rate: float | None = option(
        "--sweep-max-error-rate",
        default="",
        metavar="RATE",
        convert=lambda text: parse_fraction(text.strip(), "--sweep-max-error-rate") if str(text).strip() else None,
        help="Sweep stop rule: stop after a stage whose error rate exceeds RATE (0.05 or 5%%). Default: use --slo.",
    )
    sweep_max_stages: int = option(
        "--sweep-max-stages",
        default=10,
        type=int,
        metavar="N",
        help="Longest sweep, in stages (1 user doubled 9 times is 512). Default 10.",
    )

    search_precision: float = option(
        "--search-precision",
        default="5%",
        metavar="FRACTION",
        convert=lambda text: parse_fraction(str(text).strip(), "--search-precision"),
        help="Search: stop bisecting when (breaching - passing) / passing is at most this (0.05 or 5%%); "
        "users stop at adjacent numbers. Default 5%%.",
    )
    search_max_probes: int = option(
        "--search-max-probes",
        default=12,
        type=int,
        metavar="N",
        help="Search: most probes (stages) it runs; it then answers with the bracket it has. Default 12.",
    )

    def __post_init__(self) -> None:
        if self.load_shape not in LOAD_SHAPES:
            raise ConfigError(f"--load-shape {self.load_shape!r} is unknown; choose one of: {', '.join(LOAD_SHAPES)}")
        if self.stage_duration <= 0:
            raise ConfigError("--stage-duration must be longer than 0s")
        if not 0 <= self.warmup < self.stage_duration:
            raise ConfigError(
                f"--warmup ({self.warmup:g}s) must be shorter than --stage-duration ({self.stage_duration:g}s)"
            )
        if self.sweep_ttft_p95_ms < 0:
            raise ConfigError("--sweep-ttft-p95 must be a positive number of milliseconds")
        if self.sweep_max_error_rate is not None and not 0 <= self.sweep_max_error_rate <= 1:
            raise ConfigError("--sweep-max-error-rate must be between 0 and 1 (or 0% and 100%)")
        if self.sweep_max_stages < 1:
            raise ConfigError("--sweep-max-stages must be 1 or more")
        if not 0 < self.search_precision < 1:
            raise ConfigError(f"--search-precision {self.search_precision:g} must be between 0 and 1, e.g. 5%")
        if self.search_max_probes < 1:
            raise ConfigError("--search-max-probes must be 1 or more")

    def sweep_limits(self) -> list[SLO]:
        """The --sweep-* flags as SLOs, so they read like --slo in the verdict."""
        limits = []
        if self.sweep_ttft_p95_ms:
            limits.append(parse_slo(f"ttft_p95<={self.sweep_ttft_p95_ms:g}ms"))
        if self.sweep_max_error_rate is not None:
            limits.append(parse_slo(f"error_rate<={self.sweep_max_error_rate * 100:g}%"))
        return limits

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class StagedShape(LoadTestShape):
    """Steps through stages of users (closed loop) or request rates (open loop); optionally a sweep."""

    abstract = True  # never picked up from a locustfile's namespace; built by configure()

    def __init__(
        self,
        controller: StageController,
        *,
        kind: str,
        loads: tuple[float, ...],
        duration_s: float,
        sweep: bool = False,
        max_stages: int = 10,
        sweep_limits: tuple[SLO, ...] = (),
        search: SearchProbes | None = None,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.kind = kind
        self.loads = loads
        self.duration_s = duration_s
        self.sweep = sweep
        self.max_stages = max_stages
        self.sweep_limits = sweep_limits
        self.search = search
        self._stage: Stage | None = None
        self._count = 0
        self.stop_reason: str | None = None
        self._testing = False
        controller.environment.events.test_start.add_listener(self._on_test_start)
        controller.environment.events.test_stop.add_listener(self._on_test_stop)

    def reset_time(self) -> None:
        super().reset_time()
        if self._testing:
            return  # a master resets the shape right after test_start: the first stage is open already
        self._stage = None
        self._count = 0
        self.stop_reason = None
        if self.search is not None:  # a new run (the web UI's) searches afresh
            self.search.reset()

    @property
    def current_label(self) -> str | None:
        """The running stage's label (None before the first and after the last)."""
        return self._stage.label if self._stage is not None and self._stage.t_end is None else None

    def _on_test_start(self, **_: Any) -> None:
        # The first stage starts here, not at the first tick: Locust fires test_start after that
        # tick, and the harness builds its client then (a second or more), which is no load.
        self._testing = True
        if self._stage is None:
            self._start(self.loads[0])

    def _on_test_stop(self, **_: Any) -> None:
        self._testing = False

    def tick(self) -> tuple[int, float] | None:
        now = time.monotonic()
        if self._stage is None:
            offered = self.loads[0]  # test_start (which this tick causes) opens the stage
        elif now + TICK_SLACK_S >= self._stage.t_start + self.duration_s or self._search_ends(now):
            if self.search is not None and self.search.draining(now):
                return (0, 1.0)
            load = self._next_load()
            if load is None:
                self.controller.finish()
                return None
            self._start(load)
            offered = load
        else:
            offered = self._stage.offered
        if self.kind == "rate":
            return (0, 1.0)  # open loop: no Locust users; the arrival driver makes the calls
        return (round(offered), SPAWN_RATE)

    def _stop(self, reason: str) -> float | None:
        """End the sweep: no next load."""
        self.stop_reason = reason
        self.controller.analysis.notes["stop_reason"] = reason
        return None

    def _start(self, load: float) -> None:
        self._stage = self.controller.begin(self.kind, load)
        self._count += 1

    def _next_load(self) -> float | None:
        assert self._stage is not None
        if self.search is not None:
            load = self.search.next_load(self._stage)
            return load if load is not None else self._stop(self.search.answer)
        if not self.sweep:
            return self.loads[self._count] if self._count < len(self.loads) else None
        self.controller.analysis.end(time.monotonic())
        row = self.controller.finished_row()
        rows = self.controller.analysis.rows()
        criteria = criteria_for(self.controller.harness.slos, self.sweep_limits, rows)
        failed = [r.message for r in evaluate([c for c in criteria if c.stage is None], row) if not r.passed]
        if failed:
            return self._stop(f"stage {row['label']} broke {'; '.join(failed)}")
        if self._count >= self.max_stages:
            return self._stop(f"--sweep-max-stages ({self.max_stages}) reached")
        return self._stage.offered * 2

    def _search_ends(self, now: float) -> bool:
        """A search's probe ends before its time: its calls are finishing, or it clearly breached."""
        if self.search is None or self._stage is None:
            return False
        return self.search.drain_since is not None or self.search.ends_early(self._stage, now)


def configure(
    environment: Environment,
    shape: ShapeOptions,
    arrival: ArrivalOptions | None = None,
    slos: Sequence[SLO] = (),
) -> StagedShape | None:
    """Install the stage analysis and, if asked for, the shape (and the open-loop driver) on ``environment``.

    ``slos`` are what a search probes against (a CLI run's come from ``--slo``).
    """
    arrival = arrival or ArrivalOptions()
    harness_of(environment).install(stages.FEATURE, shape.sweep_limits())
    if shape.load_shape == "none" and not arrival.open_loop:
        return None
    if environment.shape_class is not None and not isinstance(environment.shape_class, StagedShape):
        name = type(environment.shape_class).__name__
        raise ConfigError(f"the locustfile defines the load shape {name}; drop --load-shape/--arrival or the class")
    driver: OpenLoopDriver | None = None
    distributed = isinstance(environment.runner, MasterRunner)
    if arrival.open_loop:
        if shape.stages:
            raise ConfigError("with --arrival the stages are the rates of --rate; drop --stages")
        if not distributed:  # a master's workers make the arrivals (WorkerArrivals)
            driver = OpenLoopDriver(environment, arrival)
        kind, loads = "rate", arrival.rates
    else:
        kind, loads = "users", shape.stages or DEFAULT_STAGES
        if any(v != round(v) for v in loads):
            raise ConfigError(f"--stages are numbers of users and must be whole: {loads}")
    controller = StageController(environment, shape.warmup, driver, open_loop=arrival.open_loop and distributed)
    if controller.open_loop:
        assert isinstance(environment.runner, MasterRunner)
        environment.runner.register_message(ARRIVALS_MESSAGE, on_arrivals_message(controller.analysis))
    search: SearchProbes | None = None
    if shape.load_shape == "search":
        slos = list(slos) or slos_of(environment)
        if not slos and not shape.sweep_limits():
            raise ConfigError("--load-shape search needs an SLO to search against, e.g. --slo 'ttft_p95<800ms'")
        kind_of = LoadKind.RATE if kind == "rate" else LoadKind.USERS
        config = SearchConfig(kind_of, loads[0], shape.search_precision, shape.search_max_probes)
        search = SearchProbes(
            controller, config, kind=kind, duration_s=shape.stage_duration, slos=slos, sweep_limits=shape.sweep_limits()
        )
    staged = StagedShape(
        controller,
        kind=kind,
        loads=loads,
        duration_s=shape.stage_duration,
        sweep=shape.load_shape == "sweep",
        max_stages=shape.sweep_max_stages,
        sweep_limits=tuple(shape.sweep_limits()),
        search=search,
    )
    staged.runner = environment.runner
    environment.shape_class = staged
    controller.analysis.notes["options"] = {**shape.public(), **arrival.public()}
    return staged


def install(harness: Harness) -> StagedShape | None:
    """The run's load shape from its options; on a worker, its part of the master's stages and rates."""
    environment = harness.environment
    if isinstance(environment.runner, WorkerRunner):
        arrivals = WorkerArrivals(environment)
        environment.runner.register_message(STAGE_MESSAGE, on_stage_message(environment, arrivals))
        return None
    return configure(environment, harness.options_of(ShapeOptions), harness.options_of(ArrivalOptions))


# Arrivals' options are declared in their own group, as the load shapes' are.
ARRIVAL_OPTIONS = Feature(
    "open-loop arrivals", lambda harness: None, options=(ArrivalOptions,), title="LLM harness open-loop arrivals"
)
FEATURE = Feature("load shape", install, options=(ShapeOptions,), title="LLM harness load shapes")
