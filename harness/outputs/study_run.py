"""A lever study, run: its arms' blocks round by round on one Locust run, then its verdicts.

:class:`Study` runs the schedule of :mod:`harness.core.schedule` (each round a seeded order
of the arms and its mirror) block by block with :class:`~harness.load.blocks.BlockRunner`,
every block at the same number of users. It stops after a whole round once every arm has
``calls`` measured calls, or, with ``precision``, once every interval's half-width is below
it (checked between rounds, when no call is in flight, so the arithmetic delays no call);
the spend guard's ``--max-cost`` and an interrupt (Ctrl-C, SIGTERM) stop it too. However it
stops, Locust's run is stopped properly (``requests.jsonl`` and ``summary.json`` complete)
and :meth:`Study.finish` writes ``study.json`` and ``study.html`` and prints the table.

The intervals resample the schedule's rounds (a block bootstrap: drift between rounds
counts as noise) once the study has :data:`MIN_ROUNDS` rounds; fewer rounds are too few to
resample, so the calls are resampled, and the page and the table say which.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from locust.env import Environment
from locust.stats import print_error_report, print_percentile_stats, print_stats

from harness.core.compare import precise
from harness.core.measure import CallRecord
from harness.core.schedule import Lever, blocks
from harness.load.blocks import BlockResult, BlockRunner
from harness.monitors.spend import CostTracker, call_estimate, is_real_api
from harness.outputs.study_page import lever_comparisons, study_document, write_study
from harness.outputs.study_table import print_study_table
from harness.runtime.state import harness_of

__all__ = ["MIN_ROUNDS", "Study", "StudyPlan"]

log = logging.getLogger(__name__)

# A block bootstrap over fewer rounds understates its own spread (harness.core.compare.precise).
MIN_ROUNDS = 10


@dataclass(frozen=True)
class StudyPlan:
    """What a study runs: its arms (scenario class names), the levers that pair them, and its budget."""

    arms: tuple[str, ...]
    levers: tuple[Lever, ...]
    users: int
    calls: int  # measured calls per arm; with precision, the most
    block_calls: int | None
    block_seconds: float | None
    seed: int = 0
    precision: float | None = None
    resamples: int = 2000

    @property
    def rounds(self) -> int | None:
        """Rounds that give every arm ``calls`` measured calls, when blocks have a fixed size."""
        if self.block_calls is None or self.block_seconds is not None:
            return None
        return math.ceil(self.calls / (2 * self.block_calls))

    def describe(self) -> str:
        size = []
        if self.block_calls is not None:
            size.append(f"{self.block_calls} measured calls")
        if self.block_seconds is not None:
            size.append(f"{self.block_seconds:g} s")
        rounds = self.rounds
        budget = (
            f"until every interval is within \N{PLUS-MINUS SIGN}{self.precision:.1%} "
            f"(at most {self.calls} calls per arm)"
            if self.precision is not None
            else f"{_plural(rounds, 'round')} ({2 * rounds * len(self.arms)} blocks)"
            if rounds is not None
            else f"until every arm has {self.calls} measured calls"
        )
        return (
            f"lever study: {len(self.arms)} arms at {self.users} users, interleaved in blocks of "
            f"{self.users} warm-up calls + {' or '.join(size)}, seed {self.seed}; {budget}"
        )


class Study:
    """One study on ``environment`` (a local runner, the harness attached, its features installed)."""

    def __init__(self, environment: Environment, plan: StudyPlan) -> None:
        self.environment = environment
        self.plan = plan
        self.harness = harness_of(environment)
        self.records: dict[str, list[CallRecord]] = {arm: [] for arm in plan.arms}
        self.results: list[BlockResult] = []
        self.stopped = ""
        self.interrupted = False
        self._started = 0.0
        self._ended = 0.0
        events: Any = environment.events
        events.llm_request.add_listener(self._on_record)

    def _on_record(self, record: CallRecord, **_: Any) -> None:
        if record.arm in self.records:
            self.records[record.arm].append(record)

    # -- before -----------------------------------------------------------------------

    def estimate(self) -> dict[str, Any]:
        """The rough cost of each arm's planned calls, priced as the spend guard prices (None: no price)."""
        tracker = self.harness.feature(CostTracker)
        prices = tracker.prices if tracker is not None else {}
        rounds = self.plan.rounds
        calls = None if rounds is None else rounds * 2 * (self.plan.users + (self.plan.block_calls or 0))
        per_arm = {}
        for arm in self.plan.arms:
            user_class = self.environment.user_classes_by_name[arm]
            per_call = call_estimate(user_class, self.environment.parsed_options, prices)
            per_arm[arm] = {
                "per_call_usd": per_call,
                "calls": calls,
                "usd": None if per_call is None or calls is None else per_call * calls,
            }
        return per_arm

    def print_estimate(self, estimate: dict[str, Any], out: IO[str]) -> None:
        """Against a paid API (or with --max-cost): each arm's estimate, before any call."""
        host = self.environment.host
        max_cost = tracker.max_cost if (tracker := self.harness.feature(CostTracker)) is not None else None
        if not is_real_api(host) and max_cost is None:
            return
        width = max(len(arm) for arm in estimate)
        lines = ["cost estimate per arm (rough: every call priced at its max_tokens):"]
        for arm, e in estimate.items():
            if e["per_call_usd"] is None:
                lines.append(f"  {arm:<{width}}  no price for its model (add it with --price-file)")
                continue
            line = f"  {arm:<{width}}  ~${e['per_call_usd']:.4f} per call"
            if e["usd"] is not None:
                line += f" x {e['calls']} calls = ~${e['usd']:.2f}"
            lines.append(line)
        total = [e["usd"] for e in estimate.values()]
        if total and None not in total:
            most = " (the most: --precision may stop sooner)" if self.plan.precision is not None else ""
            lines.append(f"  total ~${sum(total):.2f}{most}")
        if max_cost is not None:
            lines.append(f"  --max-cost ${max_cost:.4f} stops the study when the calls' reported usage reaches it")
        out.write("\n".join(lines) + "\n")
        out.flush()

    # -- the run ----------------------------------------------------------------------

    def run(self) -> None:
        """Run the schedule until the plan is met, the cost cap is reached or an interrupt arrives."""
        runner = BlockRunner(
            self.environment,
            users=self.plan.users,
            block_calls=self.plan.block_calls,
            block_seconds=self.plan.block_seconds,
        )
        log.info(self.plan.describe())
        self._started = time.monotonic()
        try:
            runner.start()
            self._run_blocks(runner)
        except KeyboardInterrupt:
            self.interrupted = True
            self.stopped = "interrupted"
            log.warning("Study interrupted: stopping the calls in flight and writing what it has")
        finally:
            runner.stop()
            self._ended = time.monotonic()

    def _run_blocks(self, runner: BlockRunner) -> None:
        current = 0
        planned = self.plan.rounds
        for block in blocks(self.plan.arms, self.plan.seed):
            if block.round != current:
                if self._enough(rounds=block.round):
                    return
                current = block.round
            if self._capped():
                return
            result = runner.run(block)
            self.results.append(result)
            log.info(
                "block %d%s: %s (round %d): %d calls + %d warm-up in %.1f s",
                block.index + 1,
                f"/{2 * planned * len(self.plan.arms)}" if planned is not None and not self.plan.precision else "",
                block.arm,
                block.round + 1,
                len(result.records) - result.warmup_calls,
                result.warmup_calls,
                result.t_end - result.t_start,
            )
        # (the schedule is endless: the loop ends by returning)

    def _capped(self) -> bool:
        tracker = self.harness.feature(CostTracker)
        if tracker is not None and tracker.stopped_by_cap:
            self.stopped = "--max-cost reached"
            return True
        return False

    def measured(self) -> dict[str, int]:
        """Measured (not warm-up) calls per arm so far."""
        return {arm: sum(not r.warmup for r in records) for arm, records in self.records.items()}

    def _enough(self, rounds: int) -> bool:
        """After ``rounds`` whole rounds: is the study done?"""
        if self.plan.precision is not None:
            found, skipped = lever_comparisons(
                self.records,
                self.plan.levers,
                block=_round_of,
                resamples=self.plan.resamples,
                seed=self.plan.seed,
            )
            comparisons = [c for _, _, c in found]
            widest = max((c.half_width or math.inf for c in comparisons), default=math.inf)
            log.info(
                "after %d rounds: widest interval \N{PLUS-MINUS SIGN}%.1f%% (target %.1f%%)%s",
                rounds,
                widest * 100,
                self.plan.precision * 100,
                f"; at least {MIN_ROUNDS} rounds needed" if rounds < MIN_ROUNDS else "",
            )
            if comparisons and not skipped and precise(comparisons, self.plan.precision, min_blocks=MIN_ROUNDS):
                self.stopped = f"every interval within \N{PLUS-MINUS SIGN}{self.plan.precision:.1%}"
                return True
        if min(self.measured().values()) >= self.plan.calls:
            self.stopped = f"{self.plan.calls} measured calls per arm" + (
                " reached before the precision" if self.plan.precision is not None else ""
            )
            return True
        return False

    # -- after ------------------------------------------------------------------------

    @property
    def rounds_run(self) -> int:
        return len({r.block.round for r in self.results})

    def document(self, estimate: dict[str, Any] | None = None) -> dict[str, Any]:
        """study.json: the comparisons (block bootstrap from :data:`MIN_ROUNDS` rounds), the plan, the schedule."""
        rounds = self.rounds_run
        by_blocks = rounds >= MIN_ROUNDS
        summary = self.harness.last_summary or {}
        extra = {
            "study": {
                "arms": list(self.plan.arms),
                "users": self.plan.users,
                "calls": self.plan.calls,
                "block_calls": self.plan.block_calls,
                "block_seconds": self.plan.block_seconds,
                "warmup": "each block's first call per user (the calls started before its first call ended)",
                "precision": self.plan.precision,
                "rounds": rounds,
                "blocks": len(self.results),
                "measured_calls": self.measured(),
                "stopped": self.stopped or "unknown",
                "interrupted": self.interrupted,
                "bootstrap_reason": (
                    f"{rounds} rounds: the intervals resample the rounds (a block bootstrap)"
                    if by_blocks
                    else f"{_plural(rounds, 'round')}, fewer than {MIN_ROUNDS}: the intervals resample "
                    "the calls (too few rounds to resample as blocks)"
                ),
                "host": self.environment.host,
                "duration_s": self._ended - self._started,
                "generator_bound": (summary.get("generator") or {}).get("generator_bound"),
                "estimate": estimate,
            },
            "schedule": [r.to_dict() for r in self.results],
        }
        return study_document(
            self.records,
            self.plan.levers,
            block=_round_of if by_blocks else None,
            resamples=self.plan.resamples,
            seed=self.plan.seed,
            extra=extra,
        )

    def finish(self, directory: Path, out: IO[str], estimate: dict[str, Any] | None = None) -> dict[str, Any]:
        """Print Locust's tables and the study's, write study.json and study.html; returns the document."""
        stats = self.environment.stats
        print_stats(stats, current=False)
        print_percentile_stats(stats)
        print_error_report(stats)
        doc = self.document(estimate)
        json_path, html_path = write_study(directory, doc)
        print_study_table(doc, out)
        study = doc["study"]
        out.write(
            f"  {_plural(study['rounds'], 'round')}, {_plural(study['blocks'], 'block')}, "
            f"{self._ended - self._started:.0f} s; "
            f"stopped: {study['stopped']}.\n  {study['bootstrap_reason']}.\n"
            f"  {json_path}\n  {html_path}\n"
        )
        out.flush()
        return doc


def _round_of(record: CallRecord) -> int | None:
    return record.round


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
