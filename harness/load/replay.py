"""``--trace-replay FILE``: a recorded trace's calls at their recorded times, locally and across workers.

The trace is read and checked at start (a bad line stops the run with one line, exit code 2).
The run is open loop: a :class:`ReplayShape` keeps Locust at 0 users, and a
:class:`~harness.load.replay_driver.ReplayDriver` issues each line at its offset from the
test's start. Each call is one of the run's first scenario class (its model, streaming and
``params``; ``--model``, then the line's ``model``, override the model), reported under the line's
``scenario`` or that class's name, and carries its ``trace_line`` and recorded lengths into
``requests.jsonl``. Before the first line the target's ``count_tokens`` calibrates the prompts.

The run ends when every line has been issued and answered (or at ``-t``; ``--replay-loop``
replays until then). Across Locust workers (``--processes``, ``--worker``) the master makes no
calls: each worker replays every ``count``-th line (its index among the workers at the start),
reports what fell due and what was dropped, and says when its share is done; the master ends the
run when every worker has. The ``replay`` section of summary.json is
:class:`~harness.core.replay_stats.ReplayTally`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.shape import LoadTestShape
from locust.util.timespan import parse_timespan

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.options import from_namespace, option
from harness.core.replay_stats import ReplayTally
from harness.core.synth import Calibration
from harness.core.trace import ReplayOptions, Trace, TraceFormat, parse_window
from harness.core.trace_files import load_trace
from harness.load.arrivals import ArrivalOptions
from harness.load.replay_driver import ReplayDriver, ReplayPlan, calibrate
from harness.load.shapes import ShapeOptions
from harness.runtime.features import Feature
from harness.runtime.state import Harness
from harness.runtime.user import AnthropicUser

__all__ = ["FEATURE", "REPLAY_MESSAGE", "ReplayShape", "TraceReplay", "TraceReplayOptions", "install"]

REPLAY_MESSAGE = "llm_harness_replay"  # worker -> master: lines due and dropped since the last one; done
REPORT_S = 0.5
GRACE_S = 30.0  # beyond the last line's offset and --call-timeout: a master's wait for a silent worker

log = logging.getLogger(__name__)


def _window(text: str) -> tuple[float, float | None] | None:
    return parse_window(text) if str(text).strip() else None


@dataclass(frozen=True)
class TraceReplayOptions:
    """``--trace-replay`` and how to replay it."""

    trace_replay: str | None = option(
        "--trace-replay",
        default=None,
        metavar="FILE",
        help="Replay a trace's calls at their recorded times (open loop): Mooncake JSONL, Azure or BurstGPT CSV, "
        "or the harness's JSONL (docs/trace-replay.md). Default: none.",
    )
    replay_format: str = option(
        "--replay-format",
        default="auto",
        choices=("auto", *(f.value for f in TraceFormat)),
        convert=lambda value: value or "auto",
        help="The trace's format; default: detected from its first line's fields or columns.",
    )
    replay_speed: float = option(
        "--replay-speed",
        default=1.0,
        type=float,
        metavar="X",
        help="Replay X times as fast as recorded (2 halves every gap). Default 1.",
    )
    replay_window: tuple[float, float | None] | None = option(
        "--replay-window",
        default="",
        metavar="START:END",
        convert=_window,
        help="Replay only the lines from START to END of trace time, e.g. 30s:5m, :90s, 1m:. Default: all.",
    )
    replay_loop: bool = option(
        "--replay-loop",
        default=False,
        action="store_true",
        help="Replay the trace again and again (each pass one period later) until -t or Ctrl-C.",
    )

    def __post_init__(self) -> None:
        if not self.replay_speed > 0:
            raise ConfigError(f"--replay-speed {self.replay_speed:g} must be above 0, e.g. 2 to replay twice as fast")

    @property
    def replay(self) -> ReplayOptions:
        return ReplayOptions(self.replay_speed, self.replay_window, self.replay_loop)

    def load(self) -> Trace:
        """The trace file, read and checked (ConfigError naming the file and line otherwise)."""
        assert self.trace_replay is not None
        trace = load_trace(self.trace_replay, None if self.replay_format == "auto" else self.replay_format)
        self.replay.apply(trace)  # a window that holds no line is an error now, not an empty run
        return trace

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class TraceReplay:
    """One run's replay: the trace, the driver (local run or worker), the tally (local run or master)."""

    def __init__(self, harness: Harness, options: TraceReplayOptions, trace: Trace | None) -> None:
        self.harness = harness
        self.environment = harness.environment
        self.options = options
        self.trace = trace
        self.tally = ReplayTally()
        self.driver: ReplayDriver | None = None
        self.calibration: dict[str, Any] | None = None
        self.started = False  # a run has started: the summary and the web UI have something to show
        self.running = False  # between its test start and its stop
        self._done_workers: set[str] = set()
        self._reporter: gevent.Greenlet | None = None
        self._sent = (0, 0)

    # -- what the run's end and the summary read ----------------------------------------------

    def finished(self) -> bool:
        """Every line issued and answered: this process's, or on a master every live worker's."""
        if not self.running:
            return False
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            live = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
            return bool(self._done_workers) and live <= self._done_workers
        return self.driver is not None and self.driver.done.is_set()

    def last_due_s(self) -> float | None:
        """Seconds from the start by which every call of a replay without a loop has ended, at the latest."""
        if self.trace is None or self.options.replay_loop or not isinstance(self.environment.runner, MasterRunner):
            return None
        shaped = self.options.replay.apply(self.trace)
        return shaped.lines[-1].offset_s + self.harness.options.call_timeout + GRACE_S

    def about(self) -> dict[str, Any]:
        trace, options = self.trace, self.options
        shaped = options.replay.apply(trace) if trace is not None else None
        return {
            "file": options.trace_replay,
            "format": trace.format.value if trace is not None else options.replay_format,
            "trace_lines": len(shaped.lines) if shaped is not None else None,
            "speed": options.replay_speed,
            "window": list(options.replay_window) if options.replay_window is not None else None,
            "loop": options.replay_loop,
            "trace_rate": shaped.recorded_rate if shaped is not None else None,
            "calibration": self.calibration,
            "notes": list(trace.notes) if trace is not None else [],
        }

    def section(self) -> dict[str, Any]:
        """The ``replay`` section of summary.json (also the web UI's live section)."""
        return self.tally.section(self.about())

    # -- a process that makes the calls ---------------------------------------------------------

    def start_driver(self, slot: tuple[int, int]) -> None:
        """Replay this process's share (``slot`` = index, count) from now."""
        trace = self.trace
        assert trace is not None
        template = _template(self.environment)
        host = self.environment.host or ""

        def make_plan() -> ReplayPlan:
            model = self.harness.options.model or template.model
            calibration, source = calibrate(self.harness, host, model)
            self.calibration = _calibration_info(calibration, source)
            return ReplayPlan(trace, self.options.replay, calibration, slot=slot)

        if self.driver is None:
            arrival = self.harness.options_of(ArrivalOptions)
            self.driver = ReplayDriver(self.environment, arrival, make_plan, template)
        else:
            self.driver.make_plan = make_plan
        self.driver.start()

    def report_to_master(self, final: bool = False) -> None:
        """A worker's lines due and dropped since its last report, and whether its share is done."""
        runner, driver = self.environment.runner, self.driver
        if not isinstance(runner, WorkerRunner) or driver is None:
            return
        due, dropped = driver.due, driver.dropped
        done = driver.done.is_set()
        data = {"due": due - self._sent[0], "dropped": dropped - self._sent[1], "done": done or final}
        data["calibration"] = self.calibration
        self._sent = (due, dropped)
        runner.send_message(REPLAY_MESSAGE, data)

    def _report_loop(self) -> None:
        while True:
            gevent.sleep(REPORT_S)
            try:
                self.report_to_master()
            except Exception:  # keep reporting: the master ends the run on this worker's "done"
                log.exception("trace replay: report to the master failed")

    # -- events ------------------------------------------------------------------------------------

    def on_test_start(self, **_: Any) -> None:
        self.tally = ReplayTally()
        self._done_workers = set()
        self.started = self.running = True
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            return
        if isinstance(runner, WorkerRunner):
            gevent.spawn(self._start_worker)  # after every test_start listener: its slot is set there
            return
        self.start_driver((0, 1))

    def _start_worker(self) -> None:
        try:
            options = from_namespace(TraceReplayOptions, self.environment.parsed_options)
            if options.trace_replay is None:
                return
            self.options = options
            self.trace = options.load()
        except ConfigError as exc:  # the master checked the same file; a worker elsewhere may lack it
            log.error("trace replay on this worker: %s", exc)
            if isinstance(self.environment.runner, WorkerRunner):  # so the master does not wait for it
                self.environment.runner.send_message(REPLAY_MESSAGE, {"due": 0, "dropped": 0, "done": True})
            return
        self._sent = (0, 0)
        self.start_driver(self.harness.worker_slot)
        self._reporter = gevent.spawn(self._report_loop)

    def on_test_stopping(self, **_: Any) -> None:
        self.running = False
        if self._reporter is not None:
            self._reporter.kill(block=False)
            self._reporter = None
        if self.driver is not None:
            self.driver.stop()
            self.report_to_master(final=True)  # before the worker's last batch of records

    def on_record(self, record: CallRecord, **_: Any) -> None:
        self.tally.add(record)

    def on_summary(self, summary: dict[str, Any], **_: Any) -> None:
        runner = self.environment.runner
        if isinstance(runner, WorkerRunner) or not self.started:
            return
        if self.driver is not None:
            self.tally.note(self.driver.due, self.driver.dropped)
        summary["replay"] = self.section()

    def on_worker_message(self, msg: Any, **_: Any) -> None:
        data: Mapping[str, Any] = msg.data
        self.tally.note(int(data.get("due", 0)), int(data.get("dropped", 0)))
        if data.get("calibration") is not None:
            self.calibration = data["calibration"]
        if data.get("done"):
            self._done_workers.add(msg.node_id)


class ReplayShape(LoadTestShape):
    """Keeps Locust at 0 users (the replay makes the calls) until the replay is done, or ``-t``."""

    abstract = True
    use_common_options = True  # it reads --run-time itself: Locust ignores -t for a shape

    def __init__(self, replay: TraceReplay) -> None:
        super().__init__()
        self.replay = replay
        self._ticks = 0
        self._last = (0, 1.0)

    def tick(self) -> tuple[int, float] | None:
        if self.replay.finished():
            return None
        limit = _run_time(self.runner.environment if self.runner is not None else None)
        if limit and self.get_run_time() >= limit:
            return None
        last = self.replay.last_due_s()
        if last is not None and self.get_run_time() > last:
            # The longest a call may take is past: a worker that never says it is done must not
            # keep the run waiting for ever.
            log.warning("trace replay: ending the run; some workers never reported their share done")
            return None
        self._ticks += 1
        if not self.replay.running:
            # Locust starts the test only when a tick changes, and a master with no worker ready
            # refuses the start: until it has started, make each tick a new one so it asks again.
            self._last = (0, 1.0 + (self._ticks % 2) / 1000)
        return self._last


def _run_time(environment: Environment | None) -> float | None:
    value = getattr(getattr(environment, "parsed_options", None), "run_time", None)
    if not value:
        return None
    return float(parse_timespan(value)) if isinstance(value, str) else float(value)


def _template(environment: Environment) -> type[AnthropicUser]:
    """The scenario class replayed calls are made as: the run's first AnthropicUser."""
    for cls in environment.user_classes:
        if issubclass(cls, AnthropicUser):
            return cls
    raise ConfigError("--trace-replay needs an AnthropicUser scenario for its model, e.g. locustfile.py's ShortChat")


def _calibration_info(calibration: Calibration, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "tokens_per_char": calibration.tokens_per_char,
        "overhead_tokens": calibration.overhead_tokens,
    }


def install(harness: Harness, options: TraceReplayOptions | None = None) -> TraceReplay | None:
    """Check and load ``--trace-replay`` (or ``options``, a run built in code); a worker waits for
    the master's options at each test start."""
    environment = harness.environment
    runner = environment.runner
    options = options or harness.options_of(TraceReplayOptions)
    if not isinstance(runner, WorkerRunner):
        if options.trace_replay is None:
            return None
        shaped, arrival = harness.options_of(ShapeOptions), harness.options_of(ArrivalOptions)
        if shaped.load_shape != "none" or arrival.open_loop:
            raise ConfigError("--trace-replay sets the load itself; drop --load-shape and --arrival")
        if environment.shape_class is not None:
            name = type(environment.shape_class).__name__
            raise ConfigError(f"the locustfile defines the load shape {name}; drop --trace-replay or the class")
        _template(environment)
    replay = TraceReplay(harness, options, options.load() if options.trace_replay is not None else None)
    events: Any = environment.events
    events.test_start.add_listener(replay.on_test_start)
    events.test_stopping.add_listener(replay.on_test_stopping)
    if not isinstance(runner, WorkerRunner):
        shape = ReplayShape(replay)
        shape.runner = runner
        environment.shape_class = shape
        events.llm_request.add_listener(replay.on_record)
        events.llm_summary.add_listener(replay.on_summary)
    if isinstance(runner, MasterRunner):
        runner.register_message(REPLAY_MESSAGE, replay.on_worker_message)
    return replay


FEATURE = Feature("trace replay", install, options=(TraceReplayOptions,), title="LLM harness trace replay")
