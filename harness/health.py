"""Generator health: can this process's latency figures be trusted?

A load generator that runs out of CPU stamps every token late, and reports its own delay
as the server's latency. Each process (local, every worker, the master) runs one sampler
greenlet that wakes every ``PROBE_INTERVAL_S`` and measures how late it woke — the gevent
loop lag, i.e. how long any greenlet waits for its turn before it can stamp what it
read — and once a second records a row of the time series: loop lag, CPU use of the
process (percent of one core), calls in flight and resident memory. Lag and CPU count
only while calls are in flight: an idle process (start-up imports, users between calls)
delays no measurement. Nor does a stall once the run stops, whose calls end cancelled.
The fast transport adds a measure taken on the reads themselves: how long each call's
first token waited in the socket before it was stamped (:data:`FIRST_TOKEN_LATE`).

At test stop the verdict goes into ``summary.json`` under ``generator``: a process whose
loop-lag p99 or first-token lateness p99 exceeds ``--generator-max-lag-ms`` (default
10 ms) or whose mean CPU use
reaches ``--generator-max-cpu`` (default 80 % of one core) is **generator-bound — latency
figures not trustworthy**, with the reason and what to do. The terminal gets one warning
line at the very end, and ``--fail-on-generator-bound`` turns the verdict into exit code 4
for pipelines. Workers send their rows to the master with Locust's own worker reports.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gevent
import psutil
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness import events as llm_events
from harness.errors import ConfigError
from harness.exitcodes import EXIT_GENERATOR_BOUND

__all__ = [
    "EXIT_GENERATOR_BOUND",
    "FIRST_TOKEN_LATE",
    "GENERATOR_BOUND",
    "HealthOptions",
    "HealthSampler",
    "install",
    "sampler_of",
    "timer_overshoots",
    "verdict",
]

log = logging.getLogger(__name__)

GENERATOR_BOUND = "generator-bound — latency figures not trustworthy"
ADVICE = (
    "run fewer users per process: add processes (--processes N) or workers (--master/--worker), or use --transport fast"
)

PROBE_INTERVAL_S = 0.05
SAMPLE_INTERVAL_S = 1.0
DEFAULT_MAX_LAG_MS = 10.0
# Not Locust's 90 %: in benchmarks/generator.py the fast transport at 1,000 streams ran at
# 87-90 % of a core with TTFT error p99 12-21 ms against ground truth, more than the lag
# threshold allows, while the verdict's loop-lag p99 stayed under 10 ms in four runs of
# five; at 43-59 % the error p99 was 0.7-3.7 ms. Near a full core, bursts of deltas queue
# behind each other between the lag probes.
DEFAULT_MAX_CPU = 80.0

# Loop lag histogram: 0.1 ms buckets up to 2 s (anything later counts in the last one and in max),
# so a day-long run keeps the same 160 KB instead of a sample per probe.
_LAG_BUCKET_S = 0.0001
_LAG_BUCKETS = 20_000
_ATTR = "llm_generator_health"
_REPORT_KEY = "llm_generator"


@dataclass(frozen=True)
class HealthOptions:
    max_lag_ms: float = DEFAULT_MAX_LAG_MS
    max_cpu_percent: float = DEFAULT_MAX_CPU
    fail_on_generator_bound: bool = False

    def __post_init__(self) -> None:
        if not self.max_lag_ms > 0 or not 0 < self.max_cpu_percent <= 100 * (os.cpu_count() or 1):
            raise ConfigError(
                "--generator-max-lag-ms must be a positive number of ms and --generator-max-cpu a percentage above 0"
            )

    @classmethod
    def from_namespace(cls, parsed: Any) -> HealthOptions:
        lag = getattr(parsed, "generator_max_lag_ms", None)
        cpu = getattr(parsed, "generator_max_cpu", None)
        return cls(
            max_lag_ms=DEFAULT_MAX_LAG_MS if lag is None else float(lag),
            max_cpu_percent=DEFAULT_MAX_CPU if cpu is None else float(cpu),
            fail_on_generator_bound=bool(getattr(parsed, "fail_on_generator_bound", False)),
        )


class LagHistogram:
    """Timer overshoots in fixed 0.1 ms buckets: exact enough for ms thresholds, constant memory."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts = array("Q", bytes(8 * (_LAG_BUCKETS + 1)))
        self.total = 0
        self.max_s = 0.0

    def copy(self) -> LagHistogram:
        other = LagHistogram()
        other.counts, other.total, other.max_s = array("Q", self.counts), self.total, self.max_s
        return other

    def figures(self) -> dict[str, float | None]:
        """p50, p99 and max, as summary.json gives them (``None`` with no samples)."""
        return {"p50": self.percentile(50), "p99": self.percentile(99), "max": self.max_s if self.total else None}

    def add(self, lag: float) -> None:
        i = int(lag / _LAG_BUCKET_S) if lag > 0 else 0
        self.counts[min(i, _LAG_BUCKETS)] += 1
        self.total += 1
        if lag > self.max_s:
            self.max_s = lag

    def percentile(self, q: float) -> float | None:
        """Upper edge of the bucket holding the q-th percentile (0-100), capped at the max."""
        if not self.total:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.total))
        seen = 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                # The last bucket holds every lag past its range: only the max says how long.
                return self.max_s if i == _LAG_BUCKETS else min((i + 1) * _LAG_BUCKET_S, self.max_s)
        return self.max_s


FIRST_TOKEN_LATE = LagHistogram()
"""How long each call's first token waited in this process, from the kernel's receipt of
its bytes to its stamp: the generator's own share of that TTFT, measured on the reads
themselves. A lag probe wakes at even times and can miss moments when many streams'
tokens arrive at once (lockstep streams starting together); this cannot. Filled by the
fast transport on plain HTTP (kernel receive timestamps, Linux); reset at each test start."""

MIN_FIRST_TOKENS = 100  # fewer first tokens than this say too little about a p99 to judge by


class HealthSampler:
    """The per-process sampler greenlet and the series it records."""

    def __init__(self, environment: Environment, name: str) -> None:
        self.environment = environment
        self.name = name
        self._process = psutil.Process(os.getpid())
        self._greenlet: gevent.Greenlet[Any, None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.lag = LagHistogram()
        FIRST_TOKEN_LATE.reset()
        self.series: dict[str, array[float]] = {
            "t_s": array("d"),
            "loop_lag_max_s": array("d"),
            "cpu_percent": array("d"),
            "in_flight": array("d"),
            "rss_bytes": array("d"),
        }
        self._t0 = 0.0
        self._sent_rows = 0
        self.stopping = False  # set once the run stops: lag from then on falsifies no figure
        self._late_at_stop: LagHistogram | None = None

    # -- running ----------------------------------------------------------------------

    def start(self) -> None:
        self.stop()
        self._reset()  # a fresh series per test
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def begin_stopping(self) -> None:
        """The run stops and its calls in flight are cancelled: lateness from now on falsifies no figure."""
        self.stopping = True
        self._late_at_stop = FIRST_TOKEN_LATE.copy()

    @property
    def running(self) -> bool:
        return self._greenlet is not None and not self._greenlet.dead

    def _run(self) -> None:
        cpu_clock = time.process_time
        self._t0 = last_row = time.monotonic()
        last_cpu = cpu_clock()
        second_max = 0.0
        for now, lag in timer_overshoots():
            if _in_flight(self.environment) and not self.stopping:
                # Lag only falsifies a figure while a call is being timed; a start-up import
                # with nothing in flight delays no measurement.
                self.lag.add(lag)
                second_max = max(second_max, lag)
            if now - last_row >= SAMPLE_INTERVAL_S:
                cpu = cpu_clock()
                self._row(now, second_max, 100.0 * (cpu - last_cpu) / (now - last_row))
                last_row, last_cpu, second_max = now, cpu, 0.0

    def _row(self, now: float, lag_max: float, cpu_percent: float) -> None:
        s = self.series
        s["t_s"].append(round(now - self._t0, 3))
        s["loop_lag_max_s"].append(lag_max)
        s["cpu_percent"].append(cpu_percent)
        s["in_flight"].append(float(_in_flight(self.environment)))
        try:
            s["rss_bytes"].append(float(self._process.memory_info().rss))
        except psutil.Error:
            s["rss_bytes"].append(math.nan)

    # -- results ----------------------------------------------------------------------

    def snapshot(self, series: bool = True) -> dict[str, Any]:
        """This process's figures (and its time series), JSON-ready."""
        busy = self.series["in_flight"]
        cpu = [c for c, n in zip(self.series["cpu_percent"], busy, strict=True) if n > 0]
        rss = [v for v in self.series["rss_bytes"] if not math.isnan(v)]
        doc: dict[str, Any] = {
            "probes": self.lag.total,
            "loop_lag_s": self.lag.figures(),
            "cpu_percent": {
                "mean": math.fsum(cpu) / len(cpu) if cpu else None,
                "max": max(cpu) if cpu else None,
            },
            "in_flight_max": int(max(self.series["in_flight"])) if self.series["in_flight"] else 0,
            "rss_bytes_max": int(max(rss)) if rss else None,
        }
        late = self._late_at_stop or FIRST_TOKEN_LATE
        if late.total and self.name != "master":  # a master makes no calls (in tests it shares a process)
            doc["first_token_late_s"] = {"count": late.total, **late.figures()}
        if series:
            doc["series"] = {k: list(v) for k, v in self.series.items()}
        return doc

    def new_rows(self) -> dict[str, list[float]]:
        """Series rows not yet sent to the master (workers only)."""
        start = self._sent_rows
        self._sent_rows = len(self.series["t_s"])
        return {k: list(v[start:]) for k, v in self.series.items()}


def timer_overshoots(interval_s: float = PROBE_INTERVAL_S) -> Iterator[tuple[float, float]]:
    """Sleep ``interval_s`` again and again; yield each wake-up's time and how late it came.

    The lateness is the gevent loop lag: how long a greenlet that became ready waited for
    its turn. Used by the sampler, and by the benchmark's bare clients as their probe.
    """
    clock = time.monotonic
    while True:
        before = clock()
        gevent.sleep(interval_s)
        now = clock()
        yield now, max(0.0, now - before - interval_s)


def _in_flight(environment: Environment) -> int:
    harness = getattr(environment, "llm_harness", None)
    return int(getattr(harness, "in_flight", 0)) if harness is not None else 0


def verdict(processes: dict[str, dict[str, Any]], options: HealthOptions) -> dict[str, Any]:
    """The ``generator`` section of summary.json from every process's snapshot."""
    reasons: list[str] = []
    for name, doc in sorted(processes.items()):
        p99 = (doc.get("loop_lag_s") or {}).get("p99")
        cpu = (doc.get("cpu_percent") or {}).get("mean")
        if p99 is not None and p99 * 1000.0 > options.max_lag_ms:
            reasons.append(f"{name}: event-loop lag p99 {p99 * 1000.0:.1f} ms > {options.max_lag_ms:g} ms")
        late = doc.get("first_token_late_s") or {}
        if late.get("count", 0) >= MIN_FIRST_TOKENS and late["p99"] * 1000.0 > options.max_lag_ms:
            reasons.append(
                f"{name}: first tokens stamped p99 {late['p99'] * 1000.0:.1f} ms after they arrived"
                f" > {options.max_lag_ms:g} ms"
            )
        if cpu is not None and cpu >= options.max_cpu_percent:
            reasons.append(f"{name}: CPU {cpu:.0f}% of one core (mean) >= {options.max_cpu_percent:g}%")
    bound = bool(reasons)
    return {
        "verdict": "generator-bound" if bound else "ok",
        "generator_bound": bound,
        "message": GENERATOR_BOUND if bound else "the load generator kept up; latency figures can be trusted",
        "reasons": reasons,
        "advice": ADVICE if bound else None,
        "thresholds": {
            "loop_lag_p99_s": options.max_lag_ms / 1000.0,
            "first_token_late_p99_s": options.max_lag_ms / 1000.0,
            "cpu_percent_mean": options.max_cpu_percent,
        },
        "processes": processes,
    }


class _Health:
    """Wires one sampler into one Environment's events."""

    def __init__(self, environment: Environment, options: HealthOptions) -> None:
        self.environment = environment
        self.options = options
        runner = environment.runner
        name = "master" if isinstance(runner, MasterRunner) else "local"
        if isinstance(runner, WorkerRunner):
            name = f"worker {runner.client_id}"
        self.sampler = HealthSampler(environment, name)
        self.workers: dict[str, dict[str, Any]] = {}
        self.last: dict[str, Any] | None = None
        llm_events.install(environment.events)
        ev = environment.events
        ev.test_start.add_listener(self._on_test_start)
        ev.test_stopping.add_listener(self._on_test_stopping)
        ev.llm_summary.add_listener(self._on_summary)  # type: ignore[attr-defined]
        ev.report_to_master.add_listener(self._on_report_to_master)
        ev.worker_report.add_listener(self._on_worker_report)
        ev.quitting.add_listener(self._on_quitting)
        ev.quit.add_listener(self._on_quit)

    def _on_test_start(self, **_: Any) -> None:
        self.workers = {}
        self.last = None
        self.sampler.start()

    def _on_test_stopping(self, **_: Any) -> None:
        # Locust's stop() blocks the loop for ~0.2 s (it formats its caller's frame with
        # inspect.stack()) just before this event, with calls still in flight. Without a
        # --stop-timeout those calls are cancelled, so that stall delays no reported figure and
        # must not make a comfortable run generator-bound; with one they may still finish, late.
        if not self.environment.stop_timeout:
            self.sampler.begin_stopping()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self.sampler.running or self.sampler.lag.total:
            data[_REPORT_KEY] = {"snapshot": self.sampler.snapshot(series=False), "rows": self.sampler.new_rows()}

    def _on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        report = data.get(_REPORT_KEY)
        if not isinstance(report, dict):
            return
        doc = self.workers.setdefault(f"worker {client_id}", {"series": {}})
        series = doc["series"]
        doc.update(report.get("snapshot") or {})
        doc["series"] = series
        for key, values in (report.get("rows") or {}).items():
            series.setdefault(key, []).extend(values)

    def _on_summary(self, summary: dict[str, Any], **_: Any) -> None:
        processes = {self.sampler.name: self.sampler.snapshot()}
        processes.update(self.workers)
        self.last = verdict(processes, self.options)
        summary["generator"] = self.last
        if not isinstance(self.environment.runner, WorkerRunner):
            self.sampler.stop()

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.options.fail_on_generator_bound and self.bound and not environment.process_exit_code:
            environment.process_exit_code = EXIT_GENERATOR_BOUND

    def _on_quit(self, **_: Any) -> None:
        # Last, after Locust's tables: the one line a reader must not miss.
        if self.bound and self.last is not None:
            sys.stderr.write(f"WARNING: {GENERATOR_BOUND}: {'; '.join(self.last['reasons'])}. Fix: {ADVICE}.\n")
            sys.stderr.flush()

    @property
    def bound(self) -> bool:
        return bool(self.last and self.last["generator_bound"])


def install(environment: Environment, options: HealthOptions | None = None) -> _Health:
    """Attach the health sampler to ``environment`` (once) and return it."""
    existing: _Health | None = getattr(environment, _ATTR, None)
    if existing is not None:
        return existing
    health = _Health(environment, options or HealthOptions.from_namespace(environment.parsed_options))
    setattr(environment, _ATTR, health)
    return health


def sampler_of(environment: Environment) -> _Health | None:
    """The environment's health wiring, if installed: ``.sampler``, ``.last`` (the summary section)."""
    return getattr(environment, _ATTR, None)


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    group = parser.add_argument_group("LLM harness: generator health")
    group.add_argument(
        "--fail-on-generator-bound",
        action="store_true",
        env_var="LOCUST_FAIL_ON_GENERATOR_BOUND",
        default=False,
        help=f"Exit with code {EXIT_GENERATOR_BOUND} when the load generator itself was the bottleneck "
        "(its latency figures cannot be trusted). Default: only warn.",
    )
    group.add_argument(
        "--generator-max-lag-ms",
        metavar="MS",
        type=float,
        env_var="LOCUST_GENERATOR_MAX_LAG_MS",
        default=DEFAULT_MAX_LAG_MS,
        help="Event-loop lag p99, or p99 of how long first tokens waited to be read (fast transport), "
        f"above which a process is generator-bound. Default {DEFAULT_MAX_LAG_MS:g}.",
    )
    group.add_argument(
        "--generator-max-cpu",
        metavar="PERCENT",
        type=float,
        env_var="LOCUST_GENERATOR_MAX_CPU",
        default=DEFAULT_MAX_CPU,
        help=f"Mean CPU use (percent of one core) at which a process is generator-bound. Default {DEFAULT_MAX_CPU:g}.",
    )


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    try:
        install(environment)
    except ConfigError as exc:
        from harness.plugin import fail_start

        fail_start(str(exc))
