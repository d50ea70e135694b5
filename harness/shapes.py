"""Stepped load as Locust ``LoadTestShape``s: ``--load-shape steps|sweep`` from the command line.

``steps`` runs each load of ``--stages`` (closed-loop users) for ``--stage-duration``;
``sweep`` starts at the first load and doubles it after every stage until a stage breaks
the run's criteria (the ``--slo`` objectives in ``harness.slos``, or ``--sweep-ttft-p95``
and ``--sweep-max-error-rate``, or the defaults of :func:`harness.stages.criteria_for`).
With ``--arrival`` (:mod:`harness.arrivals`) the loads are open-loop request rates from
``--rate`` instead of users. Across Locust workers (``--master``/``--worker``,
``--processes N``) the master's shape runs no arrivals itself: each stage's total rate
goes to the workers, and each worker arrives at its equal share
(:func:`harness.distributed.rate_share`), with its own seed and its share of
``--max-in-flight`` and ``--max-backlog``, so the total is the asked rate.

Each stage stamps its label (``u4``, ``r2.5``) on every call through ``harness.stage``
and marks its first ``--warmup`` seconds through ``harness.warmup``. Locust calls a
shape's ``tick`` about once a second, so a stage ends on the first tick within half a
second of its due time; the boundaries actually used are recorded and reported.
"""

from __future__ import annotations

import logging
import math
import re
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.shape import LoadTestShape

from harness import stages as stage_analysis
from harness.arrivals import ArrivalOptions, OpenLoopDriver
from harness.distributed import rate_share, worker_slot
from harness.errors import ConfigError
from harness.runtime import harness_of
from harness.slo import SLO, evaluate, parse_slo

__all__ = [
    "LOAD_SHAPES",
    "ShapeOptions",
    "StageController",
    "StagedShape",
    "WorkerArrivals",
    "add_arguments",
    "configure",
    "parse_duration",
]

LOAD_SHAPES = ("none", "steps", "sweep")
DEFAULT_STAGES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
SPAWN_RATE = 100.0  # users/s when a stage changes: fast, and Locust's own advice keeps it at 100 or below
TICK_SLACK_S = 0.5  # Locust ticks a shape about once a second: end a stage on the nearest tick
STAGE_MESSAGE = "llm_harness_stage"  # master -> workers: label, warm-up, and the open-loop total rate
ARRIVALS_MESSAGE = "llm_harness_arrivals"  # worker -> master: arrivals due and dropped, per stage
OPT_RATE = "llm_arrival_rate"  # the open-loop total rate, in the options every spawn message carries
ARRIVALS_REPORT_S = 0.5

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``30``, ``2.5s``, ``500ms``, ``1m30s`` or ``1h``; ConfigError otherwise."""
    raw = str(text).strip()
    try:
        if raw.endswith("ms"):
            return float(raw[:-2]) / 1000.0
        return float(raw)
    except ValueError:
        pass
    match = _DURATION.match(raw)
    if not raw or match is None or not any(match.groupdict().values()):
        raise ConfigError(f"{option} {raw!r} is not a duration; write e.g. 30s, 2.5s, 500ms or 1m30s")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return parts.get("h", 0.0) * 3600 + parts.get("m", 0.0) * 60 + parts.get("s", 0.0)


def parse_loads(text: str, option: str) -> tuple[float, ...]:
    """A comma-separated list of positive numbers, all different."""
    try:
        loads = tuple(float(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r} must be numbers separated by commas, e.g. 1,2,4,8") from None
    if not loads or any(not (v > 0) for v in loads):
        raise ConfigError(f"{option} {text!r} must be positive numbers separated by commas, e.g. 1,2,4,8")
    if len(set(loads)) != len(loads):
        raise ConfigError(f"{option} {text!r} repeats a load; each stage needs its own")
    return loads


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("LLM harness load shapes")
    group.add_argument(
        "--load-shape",
        choices=LOAD_SHAPES,
        env_var="LOCUST_LOAD_SHAPE",
        default="none",
        help="'steps': run each load of --stages for --stage-duration; 'sweep': double the load after each "
        "stage until a stage breaks the SLOs (or --sweep-* limits). Default: none (Locust's -u/-r/-t).",
    )
    group.add_argument(
        "--stages",
        metavar="LIST",
        env_var="LOCUST_STAGES",
        default="",
        help="Users per stage, e.g. 1,2,4,8,16,32 (the default for steps); sweep starts at the first.",
    )
    group.add_argument(
        "--stage-duration",
        metavar="DURATION",
        env_var="LOCUST_STAGE_DURATION",
        default="30s",
        help="Length of each stage, e.g. 30s, 1m. Default 30s.",
    )
    group.add_argument(
        "--warmup",
        metavar="DURATION",
        env_var="LOCUST_WARMUP",
        default="3s",
        help="Start of each stage left out of its figures (kept in requests.jsonl as warmup). Default 3s.",
    )
    group.add_argument(
        "--sweep-ttft-p95",
        metavar="MS",
        type=float,
        env_var="LOCUST_SWEEP_TTFT_P95",
        default=0.0,
        help="Sweep stop rule: stop after a stage whose TTFT p95 exceeds MS milliseconds. Default: use --slo.",
    )
    group.add_argument(
        "--sweep-max-error-rate",
        metavar="RATE",
        env_var="LOCUST_SWEEP_MAX_ERROR_RATE",
        default="",
        help="Sweep stop rule: stop after a stage whose error rate exceeds RATE (0.05 or 5%%). Default: use --slo.",
    )
    group.add_argument(
        "--sweep-max-stages",
        metavar="N",
        type=int,
        env_var="LOCUST_SWEEP_MAX_STAGES",
        default=10,
        help="Longest sweep, in stages (1 user doubled 9 times is 512). Default 10.",
    )


@dataclass(frozen=True)
class ShapeOptions:
    """The validated load-shape options of one run (durations in seconds)."""

    load_shape: str = "none"
    stages: tuple[float, ...] = ()
    stage_duration: float = 30.0
    warmup: float = 3.0
    sweep_ttft_p95_ms: float = 0.0
    sweep_max_error_rate: float | None = None
    sweep_max_stages: int = 10

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

    @classmethod
    def from_namespace(cls, ns: Namespace | None) -> ShapeOptions:
        if ns is None:
            return cls()

        def get(name: str, default: Any) -> Any:
            return getattr(ns, name, default)

        stages_text = get("stages", "") or ""
        rate_text = str(get("sweep_max_error_rate", "") or "").strip()
        return cls(
            load_shape=get("load_shape", "none") or "none",
            stages=parse_loads(stages_text, "--stages") if stages_text.strip() else (),
            stage_duration=parse_duration(get("stage_duration", "30s"), "--stage-duration"),
            warmup=parse_duration(get("warmup", "3s"), "--warmup"),
            sweep_ttft_p95_ms=float(get("sweep_ttft_p95", 0.0) or 0.0),
            sweep_max_error_rate=_parse_rate(rate_text) if rate_text else None,
            sweep_max_stages=int(get("sweep_max_stages", 10)),
        )

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


def _parse_rate(text: str) -> float:
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--sweep-max-error-rate {text!r} must be a fraction (0.05) or a percentage (5%)") from None


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
        self.analysis = stage_analysis.install(environment)
        self.warmup_s = warmup_s
        self.driver = driver
        self.open_loop = open_loop  # the stage's rate goes to the workers (a master has no driver)
        self._warmup_timer: gevent.Greenlet | None = None

    def begin(self, kind: str, offered: float) -> stage_analysis.Stage:
        label = stage_analysis.stage_label(kind, offered)
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
        options = self.environment.parsed_options
        if "rate" in message and options is not None:
            # Spawn messages carry it to workers that start (or join) after this message.
            setattr(options, OPT_RATE, message["rate"])
        runner.send_message(STAGE_MESSAGE, message)

    def finished_row(self) -> Mapping[str, Any]:
        """The figures of the stage that just ended (calls still in flight are not in them yet)."""
        return self.analysis.rows()[-1]


def apply_stage(environment: Environment, label: str | None, warmup_s: float) -> None:
    """Stamp ``label`` on this process's calls and mark the next ``warmup_s`` seconds as warm-up."""
    harness = harness_of(environment)
    timer: gevent.Greenlet | None = getattr(harness, "_warmup_timer", None)
    if timer is not None:
        timer.kill(block=False)
    harness.stage = label
    harness.warmup = warmup_s > 0

    def end_warmup() -> None:
        harness.warmup = False

    harness._warmup_timer = gevent.spawn_later(warmup_s, end_warmup) if warmup_s > 0 else None  # type: ignore[attr-defined]


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
    ) -> None:
        super().__init__()
        self.controller = controller
        self.kind = kind
        self.loads = loads
        self.duration_s = duration_s
        self.sweep = sweep
        self.max_stages = max_stages
        self.sweep_limits = sweep_limits
        self._stage: stage_analysis.Stage | None = None
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
        elif now + TICK_SLACK_S >= self._stage.t_start + self.duration_s:
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
        if not self.sweep:
            return self.loads[self._count] if self._count < len(self.loads) else None
        self.controller.analysis.end(time.monotonic())
        row = self.controller.finished_row()
        rows = self.controller.analysis.rows()
        criteria = stage_analysis.criteria_for(self.controller.harness.slos, self.sweep_limits, rows)
        failed = [r.message for r in evaluate([c for c in criteria if c.stage is None], row) if not r.passed]
        if failed:
            return self._stop(f"stage {row['label']} broke {'; '.join(failed)}")
        if self._count >= self.max_stages:
            return self._stop(f"--sweep-max-stages ({self.max_stages}) reached")
        return self._stage.offered * 2


def configure(
    environment: Environment, shape: ShapeOptions, arrival: ArrivalOptions | None = None
) -> StagedShape | None:
    """Install the stage analysis and, if asked for, the shape (and the open-loop driver) on ``environment``."""
    arrival = arrival or ArrivalOptions()
    stage_analysis.install(environment, shape.sweep_limits(), print_table=environment.parsed_options is not None)
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
        environment.runner.register_message(ARRIVALS_MESSAGE, _on_arrivals_message(controller.analysis))
    staged = StagedShape(
        controller,
        kind=kind,
        loads=loads,
        duration_s=shape.stage_duration,
        sweep=shape.load_shape == "sweep",
        max_stages=shape.sweep_max_stages,
        sweep_limits=tuple(shape.sweep_limits()),
    )
    staged.runner = environment.runner
    environment.shape_class = staged
    controller.analysis.notes["options"] = {**shape.public(), **arrival.public()}
    return staged


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
            arrival = ArrivalOptions.from_namespace(options)
        except ConfigError as exc:  # the master checked the same options; only a mismatch lands here
            log.error("open-loop options rejected on this worker: %s", exc)
            return
        if not arrival.open_loop:
            return
        self.total = float(getattr(options, OPT_RATE, self.total) or 0.0)
        if self.driver is None:
            self.driver = OpenLoopDriver(self.environment, self._own(arrival), follow_test=False, note=self._note)
        self._share = -1.0
        self._follow_share()
        self.driver.start()
        self._follower = gevent.spawn(self._follow_loop)

    def _own(self, arrival: ArrivalOptions) -> ArrivalOptions:
        """This worker's options: a seed of its own (no lockstep) and its share of the caps."""
        index, count = worker_slot(self.environment)
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


def _on_arrivals_message(analysis: stage_analysis.StageAnalysis) -> Any:
    def handler(msg: Any, **_: Any) -> None:
        for label, warmup, dropped, n in msg.data["rows"]:
            for _i in range(int(n)):
                analysis.note_arrival(label, bool(warmup), bool(dropped))

    return handler


def _on_stage_message(environment: Environment, arrivals: WorkerArrivals) -> Any:
    def handler(msg: Any, **_: Any) -> None:
        if "label" in msg.data:
            apply_stage(environment, msg.data.get("label"), float(msg.data.get("warmup_s", 0.0)))
        arrivals.on_message(msg.data)

    return handler


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    from harness.plugin import fail_start

    if isinstance(environment.runner, WorkerRunner):
        arrivals = WorkerArrivals(environment)
        environment.runner.register_message(STAGE_MESSAGE, _on_stage_message(environment, arrivals))
        return
    try:
        configure(
            environment,
            ShapeOptions.from_namespace(environment.parsed_options),
            ArrivalOptions.from_namespace(environment.parsed_options),
        )
    except ConfigError as exc:
        fail_start(str(exc))
