"""Per-stage analysis of a run: one row per load stage, the knee and the max sustainable load.

A *stage* is a stretch of the run at one offered load: a number of closed-loop users
(``--load-shape steps|sweep``) or an open-loop arrival rate (``--arrival ... --rate``).
Its first ``warmup_s`` seconds are left out of its figures (the records stay in
``requests.jsonl`` with ``warmup: true``); the rest is its *measured window*.

Definitions (also in docs/load-analysis.md):

* a call belongs to the stage whose label it carries (the stage it started in); the
  stage's counts, errors and exact latency percentiles are over its non-warm-up calls;
* rates are what the service delivered in the measured window: requests/s counts the
  calls (ok or failed, not cancelled) that *ended* in the window, output tokens/s their
  output tokens and goodput/s those of them that were good, each divided by the window;
* achieved concurrency is the time-average of calls in flight over the window: the sum of
  every call's overlap with the window (from the moment the harness began it to its end)
  divided by the window;
* a call is *late* when it began more than :data:`LATE_AFTER_S` after its scheduled time
  (open loop only; closed-loop calls are never late by construction).

The knee and the max sustainable load are computed by :func:`find_knee` and
:func:`max_sustainable` (rules in their docstrings). The same :class:`StageAnalysis` runs
live (fed by ``llm_request``) and offline (fed from ``requests.jsonl``), so both give the
same figures.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness.measure import CANCELLED, CallRecord
from harness.slo import SLO, call_meets, evaluate, parse_slo
from harness.summary import SampleStore

__all__ = [
    "KNEE_MAX_EFFICIENCY",
    "KNEE_MIN_LATENCY_RISE",
    "LATE_AFTER_S",
    "Stage",
    "StageAnalysis",
    "criteria_for",
    "find_knee",
    "format_table",
    "max_sustainable",
    "parse_label",
    "stage_label",
    "stages_csv",
]

LATE_AFTER_S = 0.025
# The knee rule's two thresholds (see find_knee).
KNEE_MAX_EFFICIENCY = 0.5
KNEE_MIN_LATENCY_RISE = 0.10
# Default criteria for "sustainable" when the run has no SLO and no sweep limits.
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_TTFT_FACTOR = 2.0
WHOLE_RUN = "all"


@dataclass
class Stage:
    """The boundaries of one stage as it ran (monotonic seconds)."""

    label: str
    index: int
    kind: str  # "users" (closed loop) or "rate" (open loop, requests/s)
    offered: float
    t_start: float
    warmup_s: float = 0.0
    t_end: float | None = None
    arrivals: int = 0  # open loop: arrivals due in the measured window
    dropped: int = 0  # open loop: of those, dropped at the in-flight cap

    @property
    def t_measure(self) -> float:
        return self.t_start + self.warmup_s

    @property
    def window_s(self) -> float:
        return max(0.0, (self.t_end or self.t_measure) - self.t_measure)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "index": self.index,
            "kind": self.kind,
            "offered": self.offered,
            "t_start": self.t_start,
            "warmup_s": self.warmup_s,
            "t_end": self.t_end,
            "arrivals": self.arrivals,
            "dropped": self.dropped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def offered_text(kind: str, offered: float) -> str:
    if offered <= 0:
        return "not shaped"  # the whole run of a run without a load shape: no one offered load
    if kind == "rate":
        return f"{offered:g} req/s"
    return f"{offered:g} user" + ("" if offered == 1 else "s")


@dataclass
class _StageData:
    store: SampleStore
    warmup_calls: int = 0
    late: int = 0
    lateness: list[float] = field(default_factory=list)


class StageAnalysis:
    """Collects stage boundaries and calls; computes the per-stage rows and the verdicts."""

    def __init__(self, slos: Sequence[SLO] = ()) -> None:
        self.slos: list[SLO] = list(slos)
        self.stages: list[Stage] = []
        self.notes: dict[str, Any] = {}  # e.g. the sweep's stop reason and the load options, for summary.json
        self._data: dict[str, _StageData] = {}
        self._begins = array("d")
        self._ends = array("d")
        # (t_end, scenario, finished, good, output tokens) of every call, for completion-based rates.
        self._done: list[tuple[float, str, bool, bool, int]] = []

    # -- feeding ----------------------------------------------------------------------

    @property
    def current(self) -> Stage | None:
        return self.stages[-1] if self.stages and self.stages[-1].t_end is None else None

    def begin_stage(self, label: str, kind: str, offered: float, warmup_s: float, t: float) -> Stage:
        """Close the running stage at ``t`` and open the next one."""
        self.end(t)
        stage = Stage(label, len(self.stages), kind, offered, t, warmup_s)
        self.stages.append(stage)
        return stage

    def end(self, t: float) -> None:
        if self.current is not None:
            self.stages[-1].t_end = t

    def stage(self, label: str | None) -> Stage | None:
        return next((s for s in self.stages if s.label == label), None)

    def note_arrival(self, label: str | None, warmup: bool, dropped: bool) -> None:
        """An open-loop arrival fell due (and was dropped at the cap, if ``dropped``)."""
        stage = self.stage(label)
        if stage is not None and not warmup:
            stage.arrivals += 1
            stage.dropped += dropped

    def add(self, record: CallRecord) -> None:
        began = record.t_start - record.queue_s
        self._begins.append(began)
        self._ends.append(record.t_end)
        finished = record.outcome != CANCELLED
        self._done.append(
            (record.t_end, record.scenario, finished, call_meets(record, self.slos), record.output_tokens or 0)
        )
        data = self._data_for(record.stage or WHOLE_RUN)
        if record.warmup:
            data.warmup_calls += 1
            return
        data.store.add(record)
        lateness = began - record.t_scheduled
        if lateness > LATE_AFTER_S:
            data.late += 1
            data.lateness.append(lateness)

    def _data_for(self, label: str) -> _StageData:
        data = self._data.get(label)
        if data is None:
            data = self._data[label] = _StageData(SampleStore(good=lambda r: call_meets(r, self.slos)))
        return data

    # -- results ----------------------------------------------------------------------

    def _stages_or_whole_run(self) -> list[Stage]:
        if self.stages:
            return self.stages
        if not self._begins:
            return []
        # A run without a load shape is one stage: the whole run, with no warm-up.
        return [Stage(WHOLE_RUN, 0, "users", 0.0, min(self._begins), 0.0, max(self._ends))]

    def _concurrency(self, stage: Stage) -> float:
        lo, hi = stage.t_measure, stage.t_end or stage.t_measure
        if hi <= lo:
            return 0.0
        overlaps = (min(e, hi) - max(b, lo) for b, e in zip(self._begins, self._ends, strict=True))
        return math.fsum(o for o in overlaps if o > 0) / (hi - lo)

    def _completion_rates(self, stage: Stage, block: dict[str, Any]) -> None:
        """Replace the block's rates by calls *ending* in the measured window, per second.

        Throughput is what the service delivered in the window, whichever stage a call
        started in; so the last stage is not short of the calls the run's end cancelled.
        """
        lo, hi, window = stage.t_measure, stage.t_end or stage.t_measure, stage.window_s
        totals: dict[str | None, list[int]] = {None: [0, 0, 0]}
        for t_end, scenario, finished, good, tokens in self._done:
            if finished and lo <= t_end < hi:
                for key in (None, scenario):
                    counts = totals.setdefault(key, [0, 0, 0])
                    counts[0] += 1
                    counts[1] += good
                    counts[2] += tokens
        targets = [(None, block["overall"]), *block["scenarios"].items()]
        for key, target in targets:
            n, n_good, n_tokens = totals.get(key, [0, 0, 0])
            target["requests_per_s"] = n / window if window > 0 else 0.0
            target["goodput_per_s"] = n_good / window if window > 0 else 0.0
            target["output_tokens_per_s"] = n_tokens / window if window > 0 else 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One summary block per stage (``summary.json``'s ``stages`` values), in run order."""
        rows = []
        for stage in self._stages_or_whole_run():
            data = self._data.get(stage.label) or _StageData(SampleStore())
            block = data.store.summary(duration_s=stage.window_s)
            self._completion_rates(stage, block)
            lateness = sorted(data.lateness)
            rows.append(
                {
                    **stage.to_dict(),
                    "t_measure": stage.t_measure,
                    "window_s": stage.window_s,
                    "warmup_calls": data.warmup_calls,
                    "concurrency_mean": self._concurrency(stage),
                    "late": data.late,
                    "late_max_s": lateness[-1] if lateness else 0.0,
                    "overall": block["overall"],
                    "scenarios": block["scenarios"],
                }
            )
        return rows

    def analyse(self, sweep_limits: Sequence[SLO] = ()) -> dict[str, Any]:
        """The ``stages`` section and the ``load_analysis`` verdicts of summary.json."""
        rows = self.rows()
        criteria = criteria_for(self.slos, sweep_limits, rows)
        for row in rows:
            results = evaluate([replace(c, stage=None) for c in criteria if c.stage in (None, row["label"])], row)
            row["meets_criteria"] = all(r.passed for r in results)
            row["breaches"] = [r.message for r in results if not r.passed]
        knee = find_knee(rows)
        sustainable = max_sustainable(rows)
        return {
            "stages": {row["label"]: row for row in rows},
            "load_analysis": {
                "order": [row["label"] for row in rows],
                "kind": rows[0]["kind"] if rows else "users",
                "knee": knee,
                "max_sustainable": sustainable,
                "criteria": [c.text for c in criteria],
                "slos": [s.text for s in self.slos],
                "sweep_limits": [s.text for s in sweep_limits],
                "knee_rule": KNEE_RULE,
                "late_after_s": LATE_AFTER_S,
                **self.notes,
            },
        }

    @classmethod
    def from_records(
        cls, records: Iterable[CallRecord], stages: Sequence[Stage] = (), slos: Sequence[SLO] = ()
    ) -> StageAnalysis:
        """Rebuild an analysis offline from ``requests.jsonl`` records and known boundaries."""
        analysis = cls(slos)
        analysis.stages = [replace(s) for s in stages]
        kept = list(records)
        for record in kept:
            analysis.add(record)
        if not analysis.stages:
            analysis.stages = _stages_from_records(analysis, kept)
        return analysis


def _stages_from_records(analysis: StageAnalysis, records: Sequence[CallRecord]) -> list[Stage]:
    """Boundaries guessed when none were saved: each label from its first call to the next label's first.

    The offered load is read back from the label (``u4`` = 4 users, ``r2.5`` = 2.5 req/s) and
    the warm-up from the first call not marked ``warmup``.
    """
    firsts: dict[str, float] = {}
    measured: dict[str, float] = {}
    for r in records:
        label, began = r.stage or WHOLE_RUN, r.t_start - r.queue_s
        firsts[label] = min(began, firsts.get(label, began))
        if not r.warmup:
            measured[label] = min(began, measured.get(label, began))
    if set(firsts) <= {WHOLE_RUN}:
        return []
    order = sorted(firsts, key=firsts.__getitem__)
    end = max(analysis._ends)
    stages = []
    for i, label in enumerate(order):
        kind, offered = parse_label(label)
        t_end = firsts[order[i + 1]] if i + 1 < len(order) else end
        warmup = max(0.0, measured.get(label, t_end) - firsts[label])
        stages.append(Stage(label, i, kind, offered, firsts[label], warmup, t_end))
    return stages


def stage_label(kind: str, offered: float) -> str:
    """``u4`` for 4 users, ``r2.5`` for 2.5 requests/s: short, and valid in an SLO's ``stage=`` scope."""
    return f"{'r' if kind == 'rate' else 'u'}{offered:g}"


def parse_label(label: str) -> tuple[str, float]:
    kind = "rate" if label.startswith("r") else "users"
    try:
        return kind, float(label[1:])
    except ValueError:
        return kind, 0.0


KNEE_RULE = (
    f"the knee is the first stage S whose next stage N has throughput efficiency "
    f"(relative throughput gain / relative offered-load gain) below {KNEE_MAX_EFFICIENCY} while TTFT p50 "
    f"rises by more than {KNEE_MIN_LATENCY_RISE:.0%}; throughput is output tokens/s (requests/s when no "
    "tokens were counted), TTFT falls back to completion time for non-streaming runs"
)


def _throughput(row: Mapping[str, Any], use_tokens: bool) -> float:
    o = row["overall"]
    return float(o["output_tokens_per_s"] if use_tokens else o["requests_per_s"])


def _latency(row: Mapping[str, Any]) -> float | None:
    o = row["overall"]
    value = o["ttft_s"]["p50"]
    if value is None:
        value = o["completion_s"]["p50"]
    return None if value is None else float(value)


def find_knee(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The stage after which throughput stops rising meaningfully while TTFT keeps rising.

    Stages are taken in order of offered load. For each stage S and the next stage N:
    ``efficiency = (X_N / X_S - 1) / (load_N / load_S - 1)`` where X is output tokens/s
    (requests/s if no stage counted tokens) and load is users or the arrival rate. S is the
    knee if ``efficiency < KNEE_MAX_EFFICIENCY`` (throughput grew by less than half as much
    as the load did) and TTFT p50 rose by more than ``KNEE_MIN_LATENCY_RISE`` (10 %) from S
    to N. The first such S wins; ``None`` when throughput was still rising at the last stage.
    """
    ordered = sorted((r for r in rows if r["offered"] > 0), key=lambda r: r["offered"])
    use_tokens = any(r["overall"]["output_tokens"] for r in ordered)
    for here, nxt in itertools.pairwise(ordered):
        load_gain = nxt["offered"] / here["offered"] - 1
        x_here, x_next = _throughput(here, use_tokens), _throughput(nxt, use_tokens)
        l_here, l_next = _latency(here), _latency(nxt)
        if load_gain <= 0 or x_here <= 0:
            continue
        efficiency = (x_next / x_here - 1) / load_gain
        latency_rise = (l_next / l_here - 1) if l_here and l_next is not None else math.inf
        if efficiency < KNEE_MAX_EFFICIENCY and latency_rise > KNEE_MIN_LATENCY_RISE:
            return {
                "stage": here["label"],
                "offered": here["offered"],
                "kind": here["kind"],
                "next_stage": nxt["label"],
                "efficiency": efficiency,
                "throughput_gain": x_next / x_here - 1,
                "load_gain": load_gain,
                "ttft_p50_rise": latency_rise if math.isfinite(latency_rise) else None,
            }
    return None


def max_sustainable(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The highest offered load whose stage met every criterion (``meets_criteria``), or None."""
    passing = [r for r in rows if r.get("meets_criteria") and r["overall"]["ok"] > 0]
    if not passing:
        return None
    best = max(passing, key=lambda r: r["offered"])
    return {"stage": best["label"], "offered": best["offered"], "kind": best["kind"]}


def criteria_for(slos: Sequence[SLO], sweep_limits: Sequence[SLO], rows: Sequence[Mapping[str, Any]]) -> list[SLO]:
    """What "sustainable" means for this run: the SLOs, else the sweep limits, else the defaults.

    The defaults (no ``--slo`` and no sweep limit) are an error rate below 1 % and a TTFT
    p95 at most twice the first stage's, i.e. "the service still answers, and latency has
    not doubled from the lightest load".
    """
    if slos or sweep_limits:
        return [*slos, *sweep_limits]
    criteria = [parse_slo(f"error_rate<{DEFAULT_MAX_ERROR_RATE * 100:g}%")]
    first = next((r for r in rows if r["overall"]["ttft_s"]["p95"] is not None), None)
    if first is not None:
        limit_ms = first["overall"]["ttft_s"]["p95"] * 1000 * DEFAULT_TTFT_FACTOR
        criteria.append(parse_slo(f"ttft_p95<={limit_ms:.1f}ms"))
    return criteria


# -- files and terminal ---------------------------------------------------------------

_DISTS = ("ttft", "completion", "itl", "tpot")
_STATS = ("p50", "p90", "p95", "p99", "max")


def stages_csv(analysis: Mapping[str, Any]) -> str:
    """``stages.csv``: one row per stage; durations in seconds; one ``errors_CLASS`` column per class."""
    rows = [analysis["stages"][label] for label in analysis["load_analysis"]["order"]]
    classes = sorted({c for r in rows for c in r["overall"]["errors"]})
    knee = (analysis["load_analysis"]["knee"] or {}).get("stage")
    best = (analysis["load_analysis"]["max_sustainable"] or {}).get("stage")
    header = [
        "stage",
        "index",
        "kind",
        "offered",
        "t_start",
        "t_measure",
        "t_end",
        "warmup_s",
        "window_s",
        "calls",
        "warmup_calls",
        "ok",
        "failed",
        "cancelled",
        "error_rate",
        *(f"errors_{c}" for c in classes),
        "concurrency_mean",
        "requests_per_s",
        "output_tokens",
        "output_tokens_per_s",
        "good",
        "goodput_per_s",
        *(f"{m}_{s}_s" for m in _DISTS for s in ("mean", *_STATS)),
        "arrivals",
        "late",
        "late_max_s",
        "dropped",
        "meets_criteria",
        "knee",
        "max_sustainable",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        o = r["overall"]
        writer.writerow(
            [
                r["label"],
                r["index"],
                r["kind"],
                r["offered"],
                r["t_start"],
                r["t_measure"],
                r["t_end"],
                r["warmup_s"],
                r["window_s"],
                o["calls"],
                r["warmup_calls"],
                o["ok"],
                o["failed"],
                o["cancelled"],
                o["error_rate"],
                *(o["errors"].get(c, 0) for c in classes),
                r["concurrency_mean"],
                o["requests_per_s"],
                o["output_tokens"],
                o["output_tokens_per_s"],
                o["good"],
                o["goodput_per_s"],
                *(_blank(o[f"{m}_s"][s]) for m in _DISTS for s in ("mean", *_STATS)),
                r["arrivals"],
                r["late"],
                r["late_max_s"],
                r["dropped"],
                r.get("meets_criteria", ""),
                r["label"] == knee,
                r["label"] == best,
            ]
        )
    return out.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def format_table(analysis: Mapping[str, Any]) -> str:
    """The per-stage table, the knee and the max sustainable load, for the terminal."""
    la = analysis["load_analysis"]
    rows = [analysis["stages"][label] for label in la["order"]]
    open_loop = la["kind"] == "rate"
    head = (
        f"{'stage':<8} {'offered':>12} {'conc':>6} {'req/s':>7} {'out tok/s':>9} {'good/s':>7} "
        f"{'TTFT p50':>9} {'p95':>6} {'compl p50':>9} {'p95':>6} {'TPOT p50':>8} {'err%':>5}"
        + (f" {'late':>5} {'drop':>5}" if open_loop else "")
        + "  verdict"
    )
    lines = ["Per-stage results (latencies in ms, warm-up excluded)", head, "-" * len(head)]
    for r in rows:
        o = r["overall"]
        mark = ("ok" if r.get("meets_criteria") else "breach") + (
            " <- knee" if la["knee"] and la["knee"]["stage"] == r["label"] else ""
        )
        lines.append(
            f"{r['label']:<8} {offered_text(r['kind'], r['offered']):>12} {r['concurrency_mean']:>6.1f} "
            f"{o['requests_per_s']:>7.2f} {o['output_tokens_per_s']:>9.1f} {o['goodput_per_s']:>7.2f} "
            f"{_ms(o['ttft_s']['p50']):>9} {_ms(o['ttft_s']['p95']):>6} {_ms(o['completion_s']['p50']):>9} "
            f"{_ms(o['completion_s']['p95']):>6} {_ms(o['tpot_s']['p50']):>8} {o['error_rate'] * 100:>5.1f}"
            + (f" {r['late']:>5} {r['dropped']:>5}" if open_loop else "")
            + f"  {mark}"
        )
    lines.append("")
    lines.append("Knee: " + describe_knee(la["knee"]))
    lines.append("Max sustainable load: " + describe_sustainable(la))
    return "\n".join(lines)


def describe_knee(knee: Mapping[str, Any] | None) -> str:
    if knee is None:
        return "not reached (throughput still rose with load at the last stage)"
    rise = knee["ttft_p50_rise"]
    return (
        f"{knee['stage']} ({offered_text(knee['kind'], knee['offered'])}): going to {knee['next_stage']} "
        f"added {knee['load_gain']:+.0%} load for {knee['throughput_gain']:+.0%} throughput"
        + ("" if rise is None else f", TTFT p50 {rise:+.0%}")
    )


def describe_sustainable(la: Mapping[str, Any]) -> str:
    best = la["max_sustainable"]
    criteria = ", ".join(la["criteria"]) or "none"
    if best is None:
        return f"none (no stage met: {criteria})"
    return f"{best['stage']} ({offered_text(best['kind'], best['offered'])}) meeting {criteria}"


# -- wiring into a run ----------------------------------------------------------------

_ATTR = "llm_stage_analysis"


def analysis_of(environment: Any) -> StageAnalysis | None:
    """The run's analysis, if :func:`install` put one on the environment."""
    return getattr(environment, _ATTR, None)


def install(environment: Any, sweep_limits: Sequence[SLO] = (), print_table: bool = False) -> StageAnalysis:
    """Analyse ``environment``'s run by stage (once); on a worker it only returns an idle analysis.

    At test stop it adds ``stages`` and ``load_analysis`` to summary.json, writes
    ``stages.csv`` and ``report.html`` next to it, and (``print_table``) prints the table
    when Locust quits, after Locust's own.
    """
    existing = analysis_of(environment)
    if existing is not None:
        return existing
    from harness.runtime import harness_of  # Locust is imported only when a run is wired

    harness = harness_of(environment)
    analysis = StageAnalysis()
    setattr(environment, _ATTR, analysis)
    state: dict[str, Any] = {}

    def on_test_start(**_: Any) -> None:
        # Not a reset: a load shape opens its first stage just before Locust fires test_start.
        analysis.slos = list(harness.slos)

    def on_request(record: CallRecord, **_: Any) -> None:
        analysis.add(record)

    def on_summary(summary: dict[str, Any], **_: Any) -> None:
        import time

        analysis.slos = list(harness.slos)
        analysis.end(time.monotonic())
        shaped = bool(analysis.stages)
        result = analysis.analyse(sweep_limits)
        summary.update(result)
        state["result"] = result if shaped else None  # a run without a load shape gets no stage table
        if harness.writes_artefacts and harness.options.report_dir:
            _write_files(harness.options.report_dir, summary, shaped)
        # Ready for the next run in this process (the web UI can start another).
        options = analysis.notes.get("options")
        analysis.__dict__.update(StageAnalysis().__dict__)
        if options is not None:
            analysis.notes["options"] = options

    def on_quit(**_: Any) -> None:
        result = state.get("result")
        if print_table and result and result["stages"]:
            import logging

            out = logging.getLogger("locust.stats_logger")
            for line in format_table(result).splitlines():
                out.info(line)
            out.info("")

    events = environment.events
    events.test_start.add_listener(on_test_start)
    events.llm_request.add_listener(on_request)
    events.llm_summary.add_listener(on_summary)
    events.quit.add_listener(on_quit)
    return analysis


def _write_files(report_dir: str, summary: Mapping[str, Any], shaped: bool) -> None:
    import logging
    from pathlib import Path

    from harness.artefacts import write_atomic

    directory = Path(report_dir)
    if shaped:
        write_atomic(directory / "stages.csv", stages_csv(summary))
    from harness.shutdown import flushing_at_exit

    if flushing_at_exit():
        # A second Ctrl-C asked to exit now: the data files are written, the report can wait
        # (and plotting during interpreter exit turned Python's Ctrl-C status 130 into 1).
        logging.getLogger(__name__).warning(
            "report.html not written for an interrupted run; build it with: python -m harness.report %s", report_dir
        )
        return
    try:
        from harness.report import write_report

        write_report(directory, summary=summary)
    except Exception:  # the report must never cost the run its other files
        logging.getLogger(__name__).exception("report.html could not be written")
