"""The per-stage analysis of a live run: stage boundaries and calls in, summary sections out.

:class:`~harness.core.stages.StageAnalysis` does the arithmetic; this feature feeds it the
run's records (``llm_request``) and, at test stop, adds its ``stages`` and
``load_analysis`` sections to summary.json. Writing ``stages.csv``, ``report.html`` and
the terminal table is an output's job (:mod:`harness.outputs.run_files`), which reads
the last result from the run's :class:`StageTracking`.

Each stage's samples are spilled to disk like the run's own (small buffers: a sweep may
have tens of stages), and a run without stages reuses the run's summary for its one
whole-run row rather than keeping every sample twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.core.measure import CallRecord
from harness.core.slo import SLO
from harness.core.spillstore import SpilledSampleStore
from harness.core.stages import StageAnalysis
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "StageTracking", "install"]

STAGE_BUFFER_VALUES = 2048
"""Samples a stage's column holds before it spills (16 KB; 128 KB for the inter-token gaps)."""


def _stage_store(good: Callable[[CallRecord], bool]) -> SpilledSampleStore:
    return SpilledSampleStore(good, buffer_values=STAGE_BUFFER_VALUES, itl_buffer_values=8 * STAGE_BUFFER_VALUES)


def _live_analysis() -> StageAnalysis:
    return StageAnalysis(store_factory=_stage_store, whole_run_samples=False)


class StageTracking:
    """One run's :class:`StageAnalysis`, and what it concluded when the run last stopped."""

    def __init__(self, sweep_limits: Sequence[SLO] = ()) -> None:
        self.analysis = _live_analysis()
        self.sweep_limits = tuple(sweep_limits)
        self.result: dict[str, Any] | None = None  # the last stop's sections
        self.shaped = False  # whether that run had stages (a run without a load shape gets no table)


def install(harness: Harness, sweep_limits: Sequence[SLO] = ()) -> StageTracking:
    """Analyse ``harness``'s run by stage; on a worker the analysis stays idle (the master's counts)."""
    tracking = StageTracking(sweep_limits)
    analysis = tracking.analysis

    def on_test_start(**_: Any) -> None:
        # Not a reset: a load shape opens its first stage just before Locust fires test_start.
        analysis.slos = list(harness.slos)

    def on_request(record: CallRecord, **_: Any) -> None:
        analysis.add(record)

    def on_summary(summary: dict[str, Any], **_: Any) -> None:
        analysis.slos = list(harness.slos)
        analysis.end(time.monotonic())
        tracking.shaped = bool(analysis.stages)
        result = analysis.analyse(tracking.sweep_limits, whole_run=summary)
        summary.update(result)
        tracking.result = result
        # Ready for the next run in this process (the web UI can start another).
        options = analysis.notes.get("options")
        analysis.close()
        analysis.__dict__.update(_live_analysis().__dict__)
        if options is not None:
            analysis.notes["options"] = options

    events: Any = harness.environment.events
    events.test_start.add_listener(on_test_start)
    events.llm_request.add_listener(on_request)
    events.llm_summary.add_listener(on_summary)
    return tracking


FEATURE = Feature("stage analysis", install)
