"""The capacity search run as stages (``--load-shape search``): each stage is a probe, judged when it ends.

:class:`harness.core.search.CapacitySearch` decides the loads; :class:`SearchProbes` is what a
load shape needs to run it: whether the running probe may end now (it has clearly broken an SLO
after its warm-up, :func:`~harness.core.search.clear_breach`), whether an open-loop probe is
still finishing its calls, and, when a probe ends, its verdict (:func:`~harness.core.search.judge`
on the stage's figures) and the next load. Its result is the ``search`` section of summary.json.

An open-loop probe stops arriving at its end and is judged when every arrival of its measured
window has a record (a worker's counts and records included), or one stage duration later: in
an overload its backlog holds its slowest calls. Closed-loop users cannot pause, so a user probe
is judged on the calls that had ended by its end, as a sweep's stages are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from locust.env import Environment

from harness.core.search import CapacitySearch, SearchConfig, clear_breach, judge
from harness.core.slo import SLO, parse_slos
from harness.core.stages import Stage
from harness.load.stage_control import StageController

__all__ = ["SearchProbes", "search_section", "slos_of"]

log = logging.getLogger(__name__)


class SearchProbes:
    """One run's capacity search, probe by probe (a new run in the same process starts afresh)."""

    def __init__(
        self,
        controller: StageController,
        config: SearchConfig,
        *,
        kind: str,
        duration_s: float,
        slos: Sequence[SLO] = (),
        sweep_limits: Sequence[SLO] = (),
    ) -> None:
        self.controller = controller
        self.config = config
        self.kind = kind
        self.duration_s = duration_s
        self.slos = tuple(slos)  # the --slo objectives, until the SLO gate sets harness.slos at test start
        self.sweep_limits = tuple(sweep_limits)
        self.search = CapacitySearch(config)
        self._early: tuple[str, ...] = ()  # the SLOs the running probe clearly broke, ending it early
        self.drain_since: float | None = None  # an open-loop probe's arrivals stopped; its calls finish
        events: Any = controller.environment.events
        events.llm_summary.add_listener(self._on_summary)

    def reset(self) -> None:
        self.search = CapacitySearch(self.config)
        self._early = ()
        self.drain_since = None

    def criteria(self) -> list[SLO]:
        """What a probe must meet: the run's SLOs and any --sweep-* limits."""
        return [*(self.controller.harness.slos or self.slos), *self.sweep_limits]

    def ends_early(self, stage: Stage, now: float) -> bool:
        """Whether the running probe, past its warm-up, has clearly broken an SLO."""
        if now < stage.t_measure:
            return False
        self._early = clear_breach(self.controller.analysis.running_row(stage.label), self.criteria())
        if self._early:
            log.info("capacity search: probe %s clearly breaches %s; ending it early", stage.label, self._early)
        return bool(self._early)

    def draining(self, now: float) -> bool:
        """Whether an open-loop probe that has ended is still waiting for its calls (see the module doc)."""
        if self.kind != "rate" or self._early:
            return False
        if self.drain_since is None:
            self.drain_since = now
            self.controller.finish()  # rate 0; the stage's measured window ends now
            return True
        row = self.controller.finished_row()
        pending = row["arrivals"] - row["dropped"] - row["overall"]["calls"]
        if pending > 0 and now - self.drain_since < self.duration_s:
            return True
        self.drain_since = None
        return False

    def next_load(self, stage: Stage) -> float | None:
        """Judge the probe that just ended; the next load, or None when the search is done."""
        self.controller.analysis.end(time.monotonic())
        row = self.controller.finished_row()
        probe = judge(stage.offered, row, self.criteria(), early=bool(self._early))
        self._early = ()
        probe = self.search.record(probe)
        log.info(
            "capacity search: probe %d at %s %s%s",
            probe.index + 1,
            row["label"],
            "passed" if probe.passed else "breached " + ", ".join(probe.breaches),
            "" if probe.meaningful else f" (only {probe.ok_calls} ok calls of the {probe.needed_calls} the SLOs need)",
        )
        return self.search.next_load

    @property
    def answer(self) -> str:
        return self.search.result().answer

    def _on_summary(self, summary: dict[str, Any], **_: Any) -> None:
        if self.search.probes:
            summary["search"] = search_section(self.search)


def search_section(search: CapacitySearch) -> dict[str, Any]:
    """The ``search`` section of summary.json: the result, and the stage label of its answer."""
    result = search.result()
    passing = result.bracket.passing
    answer = next((p.stage for p in reversed(result.probes) if p.passed and p.load == passing), None)
    return {**result.to_dict(), "answer_stage": answer}


def slos_of(environment: Environment) -> list[SLO]:
    """The run's --slo objectives, read before the SLO gate parses them (it checks them too)."""
    value = getattr(environment.parsed_options, "slo", None)
    texts = [value] if isinstance(value, str) else list(value or ())
    return parse_slos(texts)
