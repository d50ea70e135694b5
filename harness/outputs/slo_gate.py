"""``--slo`` and ``--junit-xml``: objectives on LLM latency that decide a run's exit code.

At Locust's ``init`` every expression is parsed and its scenario checked, so a bad one
stops the run with one line and exit code 2 before anything is sent. When the test
stops (the ``llm_summary`` event) each SLO is evaluated on the exact figures of
``summary.json``; the results become its ``slo`` section and the JUnit file, and a
breach sets the process exit code to 3. Everything is written either way: a breached
run is still a complete run. The terminal verdict is printed as Locust exits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from locust import log as locust_log
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from harness.core.exitcodes import EXIT_CONFIG, EXIT_COST_CAP, EXIT_GENERATOR_BOUND, EXIT_SLO_BREACH
from harness.core.options import option
from harness.core.slo import SLO, VALID_METRICS, SLOResult, check_scopes, evaluate, parse_slos
from harness.outputs.junit import write_junit
from harness.outputs.verdict import print_verdict
from harness.runtime.features import Feature
from harness.runtime.state import Harness, harness_of

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_CONFIG",
    "EXIT_SLO_BREACH",
    "FEATURE",
    "SLOGate",
    "SLOOptions",
    "scenario_names",
    "search_scope",
    "slo_section",
    "slo_texts",
]

log = logging.getLogger(__name__)


EXIT_CODES_HELP = f"""\
Exit codes of a headless run:
  0  the run finished and every --slo was met
  1  calls failed and no overall error_rate SLO was given (Locust's --exit-code-on-error)
  {EXIT_CONFIG}  invalid configuration: one line on stderr, nothing was sent to the target
  {EXIT_SLO_BREACH}  an SLO was breached; every artefact is still written
  {EXIT_GENERATOR_BOUND}  --fail-on-generator-bound and the load generator was the bottleneck
  {EXIT_COST_CAP}  --max-cost was reached and the run was stopped (artefacts complete)
SLO: [SCENARIO:][stage=LABEL:]METRIC OP NUMBER UNIT, e.g. ttft_p95<800ms, completion_p99<=12s,
  HaikuChat:error_rate<1%, error_rate[http_429]<0.1%, output_tps>=2000, goodput>=5/s
Metrics: {VALID_METRICS}"""


def slo_texts(value: str | Sequence[str] | None) -> list[str]:
    """The option's value as a list, whether it came from argparse (list) or a web form (str)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class SLOOptions:
    """The run's objectives and where their JUnit report goes."""

    slo: tuple[str, ...] = option(
        "--slo",
        default=None,
        action="append",
        metavar="EXPR",
        convert=lambda value: tuple(slo_texts(value)),
        help="An objective the run must meet, e.g. 'ttft_p95<800ms' or 'HaikuChat:error_rate<1%%'. "
        "Repeatable; several may also be separated by commas (LOCUST_SLO='ttft_p95<800ms,error_rate<1%%'). "
        "Evaluated on exact percentiles; a breach exits with code 3.",
    )
    junit_xml: str | None = option(
        "--junit-xml",
        default=None,
        metavar="PATH",
        help="Write a JUnit XML report with one testcase per SLO to PATH, for CI test views. Default: none.",
    )


def scenario_names(user_classes: Iterable[type]) -> list[str]:
    """The names records carry: an AnthropicUser's ``name()``, any other user's class name."""
    names = []
    for cls in user_classes:
        name = getattr(cls, "name", None)
        names.append(name() if callable(name) else cls.__name__)
    return names


def slo_section(results: Sequence[SLOResult]) -> dict[str, Any]:
    """The ``slo`` section of summary.json: base units (seconds, fractions, per second)."""
    return {
        "passed": all(r.passed for r in results),
        "breached": sum(not r.passed for r in results),
        "results": [
            {
                "slo": r.slo.text,
                "metric": r.slo.name,
                "scenario": r.slo.scenario,
                "stage": r.slo.stage,
                "op": r.slo.op,
                "limit": r.slo.threshold,
                "measured": r.measured,
                "unit": r.slo.unit,
                "passed": r.passed,
                "message": r.message,
            }
            for r in results
        ],
    }


def search_scope(summary: dict[str, Any]) -> dict[str, Any]:
    """What the SLOs are judged on: the run, or for a capacity search the probe of its answer.

    With no passing probe, the lightest probe (which breached). Stage-scoped SLOs still read
    their own stage.
    """
    search = summary.get("search")
    stages = summary.get("stages") or {}
    if not search or not stages:
        return summary
    label = search.get("answer_stage")
    if label is None:
        probes = sorted(search.get("probes", []), key=lambda p: p["load"])
        label = probes[0]["stage"] if probes else None
    row = stages.get(label)
    if row is None:
        return summary
    return {**summary, "overall": row["overall"], "scenarios": row["scenarios"]}


class SLOGate:
    """Evaluates a run's SLOs when it stops and turns them into artefacts and an exit code."""

    def __init__(self, environment: Environment, slos: Sequence[SLO], junit_xml: str | None = None) -> None:
        self.environment = environment
        self.slos = list(slos)
        self.junit_xml = junit_xml
        self.results: list[SLOResult] | None = None
        self._listening = False
        self._decided = False

    def listen(self) -> SLOGate:
        self.environment.events.test_start.add_listener(self._on_test_start)
        self.environment.events.quitting.add_listener(self._on_quitting)
        self.environment.events.quit.add_listener(self._on_quit)
        return self

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment.runner, WorkerRunner)

    def _on_test_start(self, **_: Any) -> None:
        # Goodput counts the calls that meet these SLOs, on every process.
        harness_of(self.environment).slos = self.slos
        if not self._listening:
            # Added at the first test start, after every listener of init time, so sections
            # other listeners add to the summary (per-stage figures) are there to evaluate.
            self.environment.events.llm_summary.add_listener(self._on_summary)  # type: ignore[attr-defined]
            self._listening = True

    def _on_summary(self, *, summary: dict[str, Any], **_: Any) -> None:
        if not self.is_worker:  # a worker sees a share of the calls; the master decides
            self.conclude(summary)

    def conclude(self, summary: dict[str, Any]) -> list[SLOResult]:
        """Evaluate on ``summary``, add its ``slo`` section, write the JUnit file, set the exit code.

        A capacity search's probes breach the SLOs on purpose: its SLOs are judged at its answer
        (:func:`search_scope`), so the run fails only when no load met them.
        """
        scope = search_scope(summary)
        self.results = evaluate(self.slos, scope)
        if self.slos:
            summary["slo"] = slo_section(self.results)
        for result in self.results:
            if not result.passed:
                log.error("SLO breached: %s", result.message)
        if self.junit_xml:
            write_junit(Path(self.junit_xml), self.results, scope)
        code = self.exit_code()
        if code is not None or self._decided:
            # A later run in the same process (web UI) replaces an earlier verdict.
            self.environment.process_exit_code = code
            self._decided = code is not None
        return self.results

    def exit_code(self) -> int | None:
        """3 on a breach; 0 when the SLOs alone decide; ``None`` leaves it to Locust."""
        if not self.results:
            return None
        if not all(r.passed for r in self.results):
            return EXIT_SLO_BREACH
        # An overall error_rate SLO states how many failed calls are acceptable, so it
        # replaces Locust's "any failure exits 1"; crashes in user code still count.
        decides_errors = any(
            s.metric == "error_rate" and s.error_class is None and s.scenario is None and s.stage is None
            for s in self.slos
        )
        runner = self.environment.runner
        crashed = bool(runner is not None and runner.exceptions) or locust_log.unhandled_greenlet_exception
        return 0 if decides_errors and not crashed else None

    def _on_quitting(self, **_: Any) -> None:
        # On SIGTERM or Ctrl+C Locust picks the exit code before it stops the users; stop
        # them first, so the summary and the SLO verdict exist when the code is chosen.
        runner = self.environment.runner
        if runner is not None and not self.is_worker and runner.state in (STATE_SPAWNING, STATE_RUNNING):
            runner.stop()

    def _on_quit(self, exit_code: int, **_: Any) -> None:
        options = self.environment.parsed_options
        if self.is_worker or not getattr(options, "headless", False):
            return
        summary = harness_of(self.environment).last_summary
        if summary is not None:
            print_verdict(
                summary, self.results or [], exit_code=exit_code, to_stderr=bool(getattr(options, "json", False))
            )


def install(harness: Harness) -> SLOGate:
    """Parse and check the run's SLOs (ConfigError, one line, if any is invalid) and gate the run on them."""
    environment = harness.environment
    options = harness.options_of(SLOOptions)
    slos = parse_slos(list(options.slo))
    check_scopes(slos, scenario_names(environment.user_classes))
    return SLOGate(environment, slos, options.junit_xml).listen()


FEATURE = Feature("slo", install, options=(SLOOptions,), title="LLM SLOs and CI", description=EXIT_CODES_HELP)
