"""Where the live metrics' run-state gauges come from: the run's own objects, read at each scrape.

:func:`run_sources` builds the :class:`~harness.outputs.metrics.LiveSources` of one run
from its :class:`~harness.runtime.state.Harness` and the monitors installed in it, so a
scrape reads the figures the rest of the harness already keeps and computes nothing new:

* calls in flight per scenario: :class:`~harness.monitors.live.InFlight` (on a master,
  the workers' counts from their Locust reports);
* users: Locust's runner (on a master, the sum over its workers);
* the stage label: :attr:`Harness.stage <harness.runtime.state.Harness.stage>`;
* rate-limit remaining: the last headers :class:`~harness.monitors.ratelimits.RateLimitTracker` saw;
* cost: :class:`~harness.monitors.spend.CostTracker`'s running total;
* loop lag and CPU per process, and generator-bound:
  :class:`~harness.monitors.health.GeneratorHealth`'s sampler rows (a worker's reach
  the master with its reports) and its verdict over the run so far.

A monitor that is not installed (a run built in code without it) gives no source, so its
metric has no series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.core.generator_verdict import verdict
from harness.monitors.health import GeneratorHealth
from harness.monitors.live import InFlight, LiveStats
from harness.monitors.ratelimits import RateLimitTracker
from harness.monitors.spend import CostTracker
from harness.outputs.metrics import LiveSources, remaining_by_dimension
from harness.runtime.state import Harness

__all__ = ["run_sources"]


def run_sources(harness: Harness) -> LiveSources:
    """The run-state sources of ``harness``'s run, from the monitors installed in it."""
    environment = harness.environment
    stats = harness.feature(LiveStats)
    in_flight = stats.in_flight if stats is not None else InFlight(environment)

    def users() -> int:
        runner = environment.runner
        return runner.user_count if runner is not None else 0

    def stage() -> str | None:
        return harness.stage

    tracker = harness.feature(RateLimitTracker)
    cost = harness.feature(CostTracker)
    health = harness.feature(GeneratorHealth)
    return LiveSources(
        in_flight=in_flight,
        users=users,
        stage=stage,
        ratelimit_remaining=(lambda: remaining_by_dimension(tracker.last)) if tracker is not None else None,
        cost_usd=(lambda: cost.total_usd) if cost is not None else None,
        loop_lag_s=_per_process(health, "loop_lag_max_s", 1.0) if health is not None else None,
        cpu_ratio=_per_process(health, "cpu_percent", 0.01) if health is not None else None,
        generator_bound=(lambda: _bound_now(health)) if health is not None else None,
    )


def _last(values: Sequence[float] | None) -> float | None:
    return values[-1] if values else None


def _per_process(health: GeneratorHealth, key: str, scale: float) -> Callable[[], Mapping[str, float]]:
    """Each process's last one-second row of the sampler's series ``key``, times ``scale``, while a run goes on.

    Outside a run there is no series: a gauge frozen at the last run's figure would read as
    the generator's state now.
    """

    def read() -> dict[str, float]:
        sampler = health.sampler
        if not sampler.running:
            return {}
        out: dict[str, float] = {}
        own = _last(sampler.series[key])
        if own is not None:
            out[sampler.name] = own * scale
        for name, doc in health.workers.items():
            value = _last((doc.get("series") or {}).get(key))
            if value is not None:
                out[name] = value * scale
        return out

    return read


def _bound_now(health: GeneratorHealth) -> bool:
    """The generator verdict over the run so far (every process); after the run, the run's own verdict."""
    sampler = health.sampler
    if not sampler.running and health.last is not None:
        return bool(health.last["generator_bound"])
    processes: dict[str, dict[str, Any]] = {sampler.name: sampler.snapshot(series=False), **health.workers}
    return bool(verdict(processes, health.options.thresholds)["generator_bound"])
