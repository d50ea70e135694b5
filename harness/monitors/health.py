"""Generator health: can this process's latency figures be trusted?

A load generator that runs out of CPU stamps every token late, and reports its own delay
as the server's latency. Each process (local, every worker, the master) runs one
:class:`~harness.monitors.sampler.HealthSampler`; at test stop the verdict
(:func:`harness.core.generator_verdict.verdict`) goes into ``summary.json`` under
``generator``: a process whose loop-lag p99 or first-token lateness p99 exceeds
``--generator-max-lag-ms`` (default 10 ms) or whose mean CPU use reaches
``--generator-max-cpu`` (default 80 % of one core) is **generator-bound — latency figures
not trustworthy**, with the reason and what to do. The terminal gets one warning line at
the very end, and ``--fail-on-generator-bound`` turns the verdict into exit code 4 for
pipelines. Workers send their rows to the master with Locust's own worker reports.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.core.errors import ConfigError
from harness.core.exitcodes import EXIT_GENERATOR_BOUND
from harness.core.generator_verdict import ADVICE, GENERATOR_BOUND, Thresholds, verdict
from harness.core.options import option
from harness.monitors.sampler import HealthSampler
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "GeneratorHealth", "HealthOptions"]

DEFAULT_MAX_LAG_MS = 10.0
# Not Locust's 90 %: in benchmarks/generator.py the fast transport at 1,000 streams ran at
# 87-90 % of a core with TTFT error p99 12-21 ms against ground truth, more than the lag
# threshold allows, while the verdict's loop-lag p99 stayed under 10 ms in four runs of
# five; at 43-59 % the error p99 was 0.7-3.7 ms. Near a full core, bursts of deltas queue
# behind each other between the lag probes.
DEFAULT_MAX_CPU = 80.0

_REPORT_KEY = "llm_generator"


@dataclass(frozen=True)
class HealthOptions:
    """When a process counts as generator-bound, and whether that fails the run."""

    fail_on_generator_bound: bool = option(
        "--fail-on-generator-bound",
        default=False,
        action="store_true",
        help=f"Exit with code {EXIT_GENERATOR_BOUND} when the load generator itself was the bottleneck "
        "(its latency figures cannot be trusted). Default: only warn.",
    )
    max_lag_ms: float = option(
        "--generator-max-lag-ms",
        default=DEFAULT_MAX_LAG_MS,
        type=float,
        metavar="MS",
        help="Event-loop lag p99, or p99 of how late first-token stamps may be (fast transport), "
        f"above which a process is generator-bound. Default {DEFAULT_MAX_LAG_MS:g}.",
    )
    max_cpu_percent: float = option(
        "--generator-max-cpu",
        default=DEFAULT_MAX_CPU,
        type=float,
        metavar="PERCENT",
        help=f"Mean CPU use (percent of one core) at which a process is generator-bound. Default {DEFAULT_MAX_CPU:g}.",
    )

    def __post_init__(self) -> None:
        if not self.max_lag_ms > 0 or not 0 < self.max_cpu_percent <= 100 * (os.cpu_count() or 1):
            raise ConfigError(
                "--generator-max-lag-ms must be a positive number of ms and --generator-max-cpu a percentage above 0"
            )

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(max_lag_ms=self.max_lag_ms, max_cpu_percent=self.max_cpu_percent)


class GeneratorHealth:
    """One run's sampler, its workers' figures and the verdict, wired into the run's events."""

    def __init__(self, harness: Harness, options: HealthOptions) -> None:
        environment = harness.environment
        self.environment = environment
        self.options = options
        runner = environment.runner
        name = "master" if isinstance(runner, MasterRunner) else "local"
        if isinstance(runner, WorkerRunner):
            name = f"worker {runner.client_id}"
        self.sampler = HealthSampler(name, lambda: harness.in_flight)
        self.workers: dict[str, dict[str, Any]] = {}
        self.last: dict[str, Any] | None = None
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
        # Locust's stop() may block the loop just before this event, with calls still in flight
        # (it formats its caller's frame with inspect.stack(): ~0.2 s the first time, which a CLI
        # run pays at start-up). Without a --stop-timeout the calls that end from now on are
        # cancelled (Harness.call), so a stall here delays no reported figure and must not make a
        # comfortable run generator-bound; with one they may still finish, late.
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
        self.last = verdict(processes, self.options.thresholds)
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


def install(harness: Harness, options: HealthOptions | None = None) -> GeneratorHealth:
    """The generator-health monitor of ``harness``'s run, from its options unless given."""
    return GeneratorHealth(harness, options or harness.options_of(HealthOptions))


FEATURE = Feature("generator health", install, options=(HealthOptions,), title="LLM harness: generator health")
