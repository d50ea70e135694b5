"""The capacity search: the most load that still meets the SLOs, as a state machine fed one probe at a time.

A *probe* is one stage at one load (users, closed loop; or an arrival rate, open loop), judged
on its measured window against the run's SLOs. :class:`CapacitySearch` says which load to probe
next (:attr:`~CapacitySearch.next_load`) and takes each probe's outcome (:meth:`~CapacitySearch.record`):

1. start at ``start``; while probes pass, double the load (up to ``max_load``, if set);
2. if the very first probe breaches, halve instead until one passes (users: down to 1);
3. then bisect between the highest passing load and the lowest breaching one until the bracket's
   relative width ``(breaching - passing) / passing`` is at most ``precision`` (5 %), or, for
   users, the two are adjacent whole numbers; or until ``max_probes`` probes have run.

Users are whole numbers (the midpoint rounds down). A rate midpoint is rounded to the fewest
significant digits (3 or more) that keep it within 1 % of the bracket's width of the true
midpoint, so stage labels stay readable (``r11.6``) and each step still halves the bracket.

A probe is *meaningful* when it had enough successful calls past its warm-up for every SLO's
statistic: a pXX needs ``100 / (100 - XX)`` (p95: 20, p99: 100), an error rate below E needs
``1 / E`` calls, anything else one (:func:`calls_needed`). Its pass/breach is used either way; the
answer says which probes were short. :func:`clear_breach` tells a load shape when a running probe
has already breached beyond doubt, so it may end it early.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from harness.core.errors import ConfigError
from harness.core.slo import RATES, SLO, evaluate

__all__ = [
    "CLEAR_BREACH_FACTOR",
    "Bracket",
    "CapacitySearch",
    "LoadKind",
    "Phase",
    "Probe",
    "SearchConfig",
    "SearchResult",
    "StopReason",
    "calls_needed",
    "clear_breach",
    "judge",
]

CLEAR_BREACH_FACTOR = 1.5  # a running probe breaches "clearly" when its figure is 1.5x past the limit
MIDPOINT_TOLERANCE = 0.01  # of the bracket's width: how far a rounded rate midpoint may stray


class LoadKind(str, Enum):
    USERS = "users"
    RATE = "rate"


class Phase(str, Enum):
    DOUBLING = "doubling"
    HALVING = "halving"
    BISECTING = "bisecting"


class StopReason(str, Enum):
    CONVERGED = "converged"  # the bracket is within the precision (or, for users, adjacent)
    MAX_PROBES = "max_probes"
    MAX_LOAD = "max_load"  # max_load itself passed: nothing above it is probed
    NOTHING_PASSES = "nothing_passes"  # users: 1 user breached; rates: min_load breached
    INTERRUPTED = "interrupted"  # the run stopped (-t, Ctrl-C) before the search did


@dataclass(frozen=True)
class SearchConfig:
    """The search's options, checked: ``--search-precision``, ``--search-max-probes``, the first load."""

    kind: LoadKind
    start: float
    precision: float = 0.05
    max_probes: int = 12
    max_load: float | None = None
    min_load: float | None = None  # rates: the lowest rate halving may try

    def __post_init__(self) -> None:
        if not self.start > 0:
            raise ConfigError(f"the search's first load ({self.start:g}) must be above 0")
        if self.kind is LoadKind.USERS and self.start != int(self.start):
            raise ConfigError(f"the search's first load is users and must be whole, not {self.start:g}")
        if not 0 < self.precision < 1:
            raise ConfigError(f"--search-precision {self.precision:g} must be between 0 and 1 (e.g. 0.05 or 5%)")
        if self.max_probes < 1:
            raise ConfigError("--search-max-probes must be 1 or more")
        if self.max_load is not None and self.max_load < self.start:
            raise ConfigError(f"the search's max load ({self.max_load:g}) is below its first load ({self.start:g})")


@dataclass(frozen=True)
class Probe:
    """One probe's outcome; ``index`` and ``phase`` are set by :meth:`CapacitySearch.record`."""

    load: float
    passed: bool
    ok_calls: int = 0
    needed_calls: int = 1
    breaches: tuple[str, ...] = ()  # the SLOs it broke, as written (``ttft_p95<800ms``)
    details: tuple[str, ...] = ()  # every SLO's verdict (SLOResult.message)
    early: bool = False  # ended before its full duration on a clear breach
    stage: str | None = None  # the stage label the load shape gave it
    index: int = -1
    phase: Phase = Phase.DOUBLING

    @property
    def meaningful(self) -> bool:
        return self.ok_calls >= self.needed_calls

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "stage": self.stage,
            "load": self.load,
            "phase": self.phase.value,
            "passed": self.passed,
            "meaningful": self.meaningful,
            "ok_calls": self.ok_calls,
            "needed_calls": self.needed_calls,
            "early": self.early,
            "breaches": list(self.breaches),
            "details": list(self.details),
        }


@dataclass(frozen=True)
class Bracket:
    """The highest load that passed and the lowest that breached (either may be unknown)."""

    passing: float | None
    breaching: float | None

    @property
    def relative_width(self) -> float | None:
        if self.passing is None or self.breaching is None:
            return None
        return (self.breaching - self.passing) / self.passing


@dataclass(frozen=True)
class SearchResult:
    config: SearchConfig
    probes: tuple[Probe, ...]
    bracket: Bracket
    stop: StopReason

    @property
    def answer(self) -> str:
        """One line: ``max sustainable: 11.5 req/s; 12.1 req/s breaches ttft_p95<800ms``."""
        lo, hi, kind = self.bracket.passing, self.bracket.breaching, self.config.kind
        breach = self._probe_at(hi)
        broke = f"{_load_text(kind, hi, verb=True)} {', '.join(breach.breaches) or 'the SLOs'}" if breach else ""
        if lo is None:
            text = f"no sustainable load: {broke}, the lightest load probed"
        elif hi is None:
            why = {StopReason.MAX_LOAD: "the max load", StopReason.INTERRUPTED: "the run's time"}.get(
                self.stop, f"{len(self.probes)} probes"
            )
            text = f"max sustainable: at least {_load_text(kind, lo)} (no probe breached within {why})"
        else:
            text = f"max sustainable: {_load_text(kind, lo)}; {broke}"
            if self.stop is not StopReason.CONVERGED:
                width = self.bracket.relative_width or 0.0
                why = "the run stopped first" if self.stop is StopReason.INTERRUPTED else "max probes reached"
                text += f" (bracket {width:.0%} wide, not {self.config.precision:.0%}: {why})"
        short = [p for p in self.probes if not p.meaningful]
        if short:
            loads = ", ".join(f"{_load_text(kind, p.load)} ({p.ok_calls} of {p.needed_calls})" for p in short)
            text += f"; too few ok calls for the SLO statistics at {loads}"
        return text

    def _probe_at(self, load: float | None) -> Probe | None:
        return next((p for p in reversed(self.probes) if p.load == load), None)

    def to_dict(self) -> dict[str, Any]:
        """The ``search`` section of summary.json."""
        return {
            "kind": self.config.kind.value,
            "start": self.config.start,
            "precision": self.config.precision,
            "max_probes": self.config.max_probes,
            "stop_reason": self.stop.value,
            "answer": self.answer,
            "max_sustainable": self.bracket.passing,
            "bracket": {
                "passing": self.bracket.passing,
                "breaching": self.bracket.breaching,
                "relative_width": self.bracket.relative_width,
            },
            "probes": [p.to_dict() for p in self.probes],
        }


def _load_text(kind: LoadKind, load: float | None, verb: bool = False) -> str:
    if load is None:
        return "-"
    if kind is LoadKind.RATE:
        return f"{load:g} req/s" + (" breaches" if verb else "")
    n = round(load)
    return f"{n} user" + ("" if n == 1 else "s") + ((" breaches" if n == 1 else " breach") if verb else "")


@dataclass
class CapacitySearch:
    """Double, then bisect; see the module docstring. Probe :attr:`next_load` until it is None."""

    config: SearchConfig
    probes: list[Probe] = field(default_factory=list, init=False)
    next_load: float | None = field(default=None, init=False)
    stop: StopReason | None = field(default=None, init=False)
    _phase: Phase = field(default=Phase.DOUBLING, init=False, repr=False)

    def __post_init__(self) -> None:
        self.next_load = self._whole(self.config.start)

    @property
    def done(self) -> bool:
        return self.next_load is None

    @property
    def bracket(self) -> Bracket:
        passing = [p.load for p in self.probes if p.passed]
        breaching = [p.load for p in self.probes if not p.passed]
        # Only probes inside the bracket are ever run, so these are its ends even if results are noisy.
        return Bracket(max(passing, default=None), min(breaching, default=None))

    def record(self, probe: Probe) -> Probe:
        """Take the outcome of the probe at :attr:`next_load`; returns it numbered and phased."""
        if self.next_load is None or probe.load != self.next_load:
            raise ValueError(f"probe at {probe.load:g} but the search asked for {self.next_load}")
        probe = replace(probe, index=len(self.probes), phase=self._phase)
        self.probes.append(probe)
        self.next_load = self._advance()
        return probe

    def result(self) -> SearchResult:
        """The search so far; a search asked for before it is done was interrupted."""
        stop = self.stop or StopReason.INTERRUPTED
        return SearchResult(self.config, tuple(self.probes), self.bracket, stop)

    def _advance(self) -> float | None:
        cfg, b = self.config, self.bracket
        lo, hi = b.passing, b.breaching
        if lo is not None and hi is not None:
            self._phase = Phase.BISECTING
            adjacent = cfg.kind is LoadKind.USERS and hi - lo <= 1
            if adjacent or (hi - lo) / lo <= cfg.precision:
                return self._finish(StopReason.CONVERGED)
        elif lo is not None:  # everything passed so far: double
            if cfg.max_load is not None and lo >= cfg.max_load:
                return self._finish(StopReason.MAX_LOAD)
        elif hi is not None:  # everything breached so far: halve
            self._phase = Phase.HALVING
            floor = 1.0 if cfg.kind is LoadKind.USERS else (cfg.min_load or 0.0)
            if hi <= floor or (cfg.kind is LoadKind.USERS and hi <= 1):
                return self._finish(StopReason.NOTHING_PASSES)
        if len(self.probes) >= cfg.max_probes:
            return self._finish(StopReason.MAX_PROBES)
        if lo is not None and hi is not None:
            return self._midpoint(lo, hi)
        if lo is not None:
            doubled = lo * 2 if cfg.max_load is None else min(lo * 2, cfg.max_load)
            return self._whole(doubled)
        assert hi is not None
        halved = hi / 2 if cfg.kind is LoadKind.RATE else float(math.floor(hi / 2))
        return max(halved, cfg.min_load or 0.0) if cfg.kind is LoadKind.RATE else halved

    def _finish(self, reason: StopReason) -> float | None:
        self.stop = reason
        return None

    def _whole(self, load: float) -> float:
        return float(math.floor(load)) if self.config.kind is LoadKind.USERS else load

    def _midpoint(self, lo: float, hi: float) -> float:
        if self.config.kind is LoadKind.USERS:
            return float((int(lo) + int(hi)) // 2)
        mid = (lo + hi) / 2
        for digits in range(3, 16):
            rounded = float(f"{mid:.{digits}g}")
            if lo < rounded < hi and abs(rounded - mid) <= MIDPOINT_TOLERANCE * (hi - lo):
                return rounded
        return mid


def calls_needed(slos: Sequence[SLO]) -> int:
    """Successful calls a probe needs for every SLO's statistic to mean something (at least 1)."""
    need = 1
    for slo in slos:
        if slo.stat is not None and slo.stat.startswith("p"):
            q = float(slo.stat[1:])
            need = max(need, math.ceil(100 / (100 - q) - 1e-9))
        elif slo.metric == "error_rate" and slo.op in ("<", "<=") and slo.threshold > 0:
            need = max(need, math.ceil(1 / slo.threshold - 1e-9))
    return need


def judge(load: float, row: Mapping[str, Any], slos: Sequence[SLO], *, early: bool = False) -> Probe:
    """A probe from a stage's figures (a ``stages`` row of summary.json, or any block with ``overall``)."""
    results = evaluate(_applicable(slos, row), row)
    overall = row.get("overall", row)
    return Probe(
        load=load,
        passed=all(r.passed for r in results),
        ok_calls=int(overall.get("ok", 0)),
        needed_calls=calls_needed(slos),
        breaches=tuple(r.slo.text for r in results if not r.passed),
        details=tuple(r.message for r in results),
        early=early,
        stage=row.get("label"),
    )


def clear_breach(row: Mapping[str, Any], slos: Sequence[SLO]) -> tuple[str, ...]:
    """The SLOs a running probe has already broken beyond doubt: enough calls, 1.5x past the limit.

    Latency and error-rate SLOs only: a rate (``rps``, ``output_tps``, ``goodput``) is per second
    of the probe's whole window, so it is judged when the probe ends.
    """
    overall = row.get("overall", row)
    if int(overall.get("ok", 0)) < calls_needed(slos):
        return ()
    clear = []
    for result in evaluate(_applicable(slos, row), row):
        slo, value = result.slo, result.measured
        # A running probe's rates are not known until its window closes: judge them at its end only.
        if result.passed or value is None or slo.metric in RATES:
            continue
        upper = slo.op in ("<", "<=")
        if (upper and value > slo.threshold * CLEAR_BREACH_FACTOR) or (
            not upper and value * CLEAR_BREACH_FACTOR < slo.threshold
        ):
            clear.append(slo.text)
    return tuple(clear)


def _applicable(slos: Sequence[SLO], row: Mapping[str, Any]) -> list[SLO]:
    """The SLOs for this stage (unscoped, or scoped to its label), measured on the row itself."""
    return [replace(s, stage=None) for s in slos if s.stage in (None, row.get("label"))]
