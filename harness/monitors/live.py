"""Live figures of the run in progress: what the web UI's LLM tab and ``GET /llm/stats`` show.

Two scopes of figure (:class:`~harness.core.window.Scope`), both in bounded memory whatever
the run's length:

* ``run``: since the run began. Counts, rates, means and maxima are the run's running
  counters (exact, cheap); the run-wide *percentiles* come from the last reduction of the
  run's spilled samples (:meth:`~harness.runtime.state.Harness.reduce`, in gevent's
  threadpool, started again once the last is older than ``max(5 s, 10 x its cost)``, or
  from a ``--summary-every`` rewrite), so the document says when they were taken
  (``run_percentiles_at_s``); after the stop they are summary.json's own;
* ``window``: over the calls that ended in the last 30 s (:class:`~harness.core.window.RecentWindow`,
  one-second slots), exact unless the window held more than a million samples
  (``window_exact``).

Besides: calls in flight, the current stage, rate-limit headroom from the
``anthropic-ratelimit-*`` headers, a time series for the charts (bounded: it halves its
resolution past :data:`MAX_POINTS`), and throughput against latency per stage (each stage's
latencies reservoir-sampled past :data:`harness.core.stage_points.STAGE_SAMPLES`).

Everything is computed from the ``llm_request`` event, so on a master, which re-fires the
workers' records there, the figures are the merged ones. Calls in flight on workers reach
the master through Locust's own worker reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.core.measure import CallRecord
from harness.core.ratelimits import parse_ratelimit
from harness.core.slo import call_meets
from harness.core.spillstore import SpilledSampleStore
from harness.core.stage_points import StagePoint
from harness.core.summary import LATENCY_METRICS, PERCENTILES, SampleStore
from harness.core.window import RecentWindow
from harness.runtime.features import Feature
from harness.runtime.state import Harness, harness_of

__all__ = ["FEATURE", "WINDOW_S", "InFlight", "LiveStats", "install", "live_of"]

WINDOW_S = 30.0
"""The recent window of the table's "last 30 s" figures."""

CHART_WINDOW_S = 10.0
"""The window of each chart point: Locust's own "current" percentiles use 10 s too."""

MAX_POINTS = 600
"""Chart points kept; past it the series halves its resolution, so memory stays bounded."""

PERCENTILE_REFRESH_S = 5.0
"""Run-wide percentiles are reduced again at most this often (or 10x the last reduction's time)."""

_REPORT_KEY = "llm_in_flight"

Section = Callable[[], dict[str, Any] | None]


class InFlight:
    """Calls in flight per scenario: this process's and, on a master, every connected worker's.

    Workers send theirs with each Locust stats report (:func:`install` adds that on a
    worker), so a master's figure is at most one report interval old. Call it to read.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self._workers: dict[str, dict[str, int]] = {}
        environment.events.worker_report.add_listener(self._on_worker_report)

    def _on_worker_report(self, *, client_id: str, data: dict[str, Any], **_: Any) -> None:
        counts = data.get(_REPORT_KEY)
        if isinstance(counts, dict):
            self._workers[client_id] = {str(k): int(v) for k, v in counts.items()}

    def __call__(self) -> dict[str, int]:
        counts = dict(harness_of(self.environment).in_flight_by_scenario)
        runner = self.environment.runner
        live_clients = set(runner.clients) if isinstance(runner, MasterRunner) else set()
        for client_id, per_scenario in self._workers.items():
            if client_id not in live_clients:
                continue
            for name, n in per_scenario.items():
                counts[name] = counts.get(name, 0) + n
        return counts


class LiveStats:
    """The live figures of one Environment; :meth:`snapshot` is the ``/llm/stats`` document."""

    def __init__(
        self,
        environment: Environment,
        *,
        window_s: float = WINDOW_S,
        chart_window_s: float = CHART_WINDOW_S,
        tick_s: float = 2.0,
    ) -> None:
        self.environment = environment
        self.window_s = window_s
        self.chart_window_s = min(chart_window_s, window_s)
        self.tick_s = tick_s
        self.sections: dict[str, Section] = {}
        self._reset()
        self._cache: dict[str, Any] | None = None
        self._cache_at = 0.0
        self._cost = 0.0
        self._reducing: gevent.Greenlet | None = None
        self._reduce_cost = 0.0
        self._ticker: gevent.Greenlet | None = None
        harness_of(environment)  # the run's state and its llm_* events exist from here on
        events = environment.events
        events.llm_request.add_listener(self._on_record)  # type: ignore[attr-defined]
        events.llm_summary.add_listener(self._on_summary)  # type: ignore[attr-defined]
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)
        self.in_flight = InFlight(environment)

    @property
    def harness(self) -> Harness:
        return harness_of(self.environment)

    def add_section(self, name: str, provider: Section) -> None:
        """Show ``provider()`` (a flat dict, or None to hide it) as a live section of the tab."""
        self.sections[name] = provider

    # -- events ---------------------------------------------------------------------

    def _clock(self) -> float:
        # The window stops moving when the run stops: it then shows the run's last window_s.
        return self._stopped if self._stopped is not None else time.monotonic()

    def _reset(self) -> None:
        self._stopped: float | None = None
        self._recent = RecentWindow(
            self.window_s,
            slot_s=min(1.0, self.window_s / 30),
            good=lambda record: call_meets(record, self.harness.slos),
            clock=self._clock,
        )
        self._stages: dict[str, StagePoint] = {}
        self._series: list[dict[str, Any]] = []
        self._stride = 1
        self._ticks = 0
        self._last_tick: float | None = None
        self._ratelimit: dict[str, dict[str, dict[str, Any]]] = {}
        self._started: float | None = None
        self._summary_sections: dict[str, Any] = {}

    def _on_record(self, *, record: CallRecord, **_: Any) -> None:
        self._recent.add(record)
        if record.stage is not None:
            stage = self._stages.get(record.stage)
            if stage is None:
                stage = self._stages[record.stage] = StagePoint(record.stage)
            stage.add(record)
        if record.ratelimit:
            per_model = self._ratelimit.setdefault(record.model, {})
            for dimension, entry in parse_ratelimit(record.ratelimit).items():
                merged = {**per_model.get(dimension, {}), **entry}
                limit, remaining = merged.get("limit"), merged.get("remaining")
                if isinstance(limit, int) and isinstance(remaining, int) and limit > 0:
                    headroom = merged["headroom"] = remaining / limit
                    merged["lowest_headroom"] = min(merged.get("lowest_headroom", headroom), headroom)
                per_model[dimension] = merged

    def _on_summary(self, *, summary: dict[str, Any], **_: Any) -> None:
        # Sections other analyses add at the end (generator health, stages, SLOs) show as they are.
        self._summary_sections = {k: v for k, v in summary.items() if k in ("generator",)}
        self._cache = None

    def _on_test_start(self, **_: Any) -> None:
        if isinstance(self.environment.runner, WorkerRunner):
            return
        self._reset()
        self._started = time.monotonic()
        self._cache = None
        if self._ticker is None or self._ticker.dead:
            self._ticker = gevent.spawn(self._tick_loop)

    def _on_test_stop(self, **_: Any) -> None:
        if self._started is not None and self._stopped is None:
            self._tick()
            self._stopped = time.monotonic()
        self._cache = None

    # -- the time series --------------------------------------------------------------

    def _tick_loop(self) -> None:
        while self._started is not None and self._stopped is None:
            gevent.sleep(self.tick_s)
            if self._stopped is None:
                self._tick()

    def _tick(self) -> None:
        if self._started is None:
            return
        now = time.monotonic()
        since = now - (self._last_tick if self._last_tick is not None else self._started)
        self._last_tick = now
        stage_name = self.harness.stage
        if stage_name is not None:
            stage = self._stages.get(stage_name)
            if stage is None:
                stage = self._stages[stage_name] = StagePoint(stage_name)
            stage.seen_s += since
        self._ticks += 1
        if self._ticks % self._stride:
            return
        span = min(self.chart_window_s, now - self._started)
        recent = self._recent.summary(self.chart_window_s, duration_s=span)["overall"]
        calls, ttft = recent["calls"], recent["ttft_s"]
        runner = self.environment.runner
        self._series.append(
            {
                "t": round(now - self._started, 3),
                "stage": stage_name,
                "users": runner.user_count if runner is not None else 0,
                "in_flight": sum(self.in_flight().values()),
                "requests_per_s": calls / span if span > 0 else 0.0,
                "output_tokens_per_s": recent["output_tokens"] / span if span > 0 else 0.0,
                "ttft_p50_s": ttft["p50"],
                "ttft_p95_s": ttft["p95"],
                "errors_per_s": (calls - recent["ok"]) / span if span > 0 else 0.0,
            }
        )
        if len(self._series) > MAX_POINTS:
            self._series = self._series[::2]
            self._stride *= 2

    # -- figures ----------------------------------------------------------------------

    def snapshot(self, *, max_age_s: float = 0.5) -> dict[str, Any]:
        """The ``/llm/stats`` document; recomputed at most every ``max_age_s`` (or 10x its last cost)."""
        now = time.monotonic()
        if self._cache is not None and now - self._cache_at < max(max_age_s, 10 * self._cost):
            return self._cache
        began = time.perf_counter()
        self._cache = self._compute(now)
        self._cost = time.perf_counter() - began
        self._cache_at = now
        return self._cache

    def _compute(self, now: float) -> dict[str, Any]:
        harness = self.harness
        run, percentiles_at = self._run_figures()
        window, window_len = self._window_summary(now)
        empty = SampleStore().summary(duration_s=window_len)["overall"]
        in_flight = self.in_flight()
        names = sorted(set(run["scenarios"]) | set(window["scenarios"]) | set(in_flight))
        runner = self.environment.runner
        sections = {name: provider() for name, provider in self.sections.items()}
        sections.update(self._summary_sections)
        return {
            "state": runner.state if runner is not None else None,
            "stage": harness.stage,
            "users": runner.user_count if runner is not None else 0,
            "elapsed_s": harness.duration_s,
            "window_s": window_len,
            "window_exact": window["exact"],
            "run_percentiles_at_s": percentiles_at,
            "total": {**_row(run["overall"], window["overall"]), "in_flight": sum(in_flight.values())},
            "scenarios": {
                name: {
                    **_row(run["scenarios"].get(name, empty), window["scenarios"].get(name, empty)),
                    "in_flight": in_flight.get(name, 0),
                }
                for name in names
            },
            "ratelimit": self._ratelimit,
            "sections": {k: v for k, v in sections.items() if v},
            "series": list(self._series),
            "stages": [s.summary() for s in self._stages.values()],
        }

    def _window_summary(self, now: float) -> tuple[dict[str, Any], float]:
        end = self._stopped if self._stopped is not None else now
        started = self._started if self._started is not None else end
        window_len = max(0.0, min(self.window_s, end - started))
        return self._recent.summary(duration_s=window_len), window_len

    def _run_figures(self) -> tuple[dict[str, Any], float | None]:
        """The run-wide document and the run's elapsed seconds its percentiles were reduced at."""
        harness = self.harness
        if not harness.running and harness.last_summary is not None:
            return harness.last_summary, harness.last_summary["duration_s"]  # the stopped run's summary.json
        store = harness.store
        if not isinstance(store, SpilledSampleStore):
            return store.summary(duration_s=harness.duration_s), harness.duration_s
        run = store.summary(duration_s=harness.duration_s, percentiles=False)
        self._refresh_percentiles(run["overall"]["ok"])
        if harness.reduced is None:
            return run, None
        reduced, at = harness.reduced
        for name, block in [("", run["overall"]), *run["scenarios"].items()]:
            source = reduced["overall"] if not name else reduced["scenarios"].get(name)
            if source is None:
                continue
            for metric in LATENCY_METRICS:
                for q in PERCENTILES:
                    block[f"{metric}_s"][f"p{q}"] = source[f"{metric}_s"][f"p{q}"]
        return run, at

    def _refresh_percentiles(self, ok_now: int) -> None:
        """Reduce the run's samples again in the background once the last reduction is old enough.

        Early in a run, when the samples at least doubled since the last reduction, sooner: a
        reduction of a few samples costs nothing, and the first calls' figures then show at once.
        """
        harness = self.harness
        if self._reducing is not None and not self._reducing.dead:
            return
        if harness.reduced is not None:
            age = harness.duration_s - harness.reduced[1]
            doubled = ok_now > 2 * harness.reduced[0]["overall"]["ok"]
            if age < max(PERCENTILE_REFRESH_S, 10 * self._reduce_cost) and not doubled:
                return
        self._reducing = gevent.spawn(self._reduce)

    def _reduce(self) -> None:
        began = time.perf_counter()
        harness = self.harness
        if harness.running:
            harness.reduce()
            self._reduce_cost = time.perf_counter() - began
            self._cache = None


def _row(run: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    return {"run": run, "window": window}


def _report_in_flight(environment: Environment) -> None:
    """On a worker: send the calls in flight to the master with each stats report."""

    def on_report(*, data: dict[str, Any], **_: Any) -> None:
        data[_REPORT_KEY] = harness_of(environment).in_flight_by_scenario

    environment.events.report_to_master.add_listener(on_report)


def install(harness: Harness, *, always: bool = False) -> LiveStats | None:
    """The live figures where a web UI shows them (or ``always``); on a worker, its side of them."""
    environment = harness.environment
    if isinstance(environment.runner, WorkerRunner):
        _report_in_flight(environment)
        return None
    return LiveStats(environment) if always or environment.web_ui is not None else None


FEATURE = Feature("live figures", install)


def live_of(environment: Environment) -> LiveStats:
    """The run's :class:`LiveStats`, created (and listening) on first use."""
    harness = harness_of(environment)
    live = harness.feature(LiveStats)
    if live is None:
        live = LiveStats(environment)
        harness.install(Feature("live figures (asked for)", lambda _: live))
    return live
