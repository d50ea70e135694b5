"""Service-level objectives on LLM metrics: parse ``ttft_p95<800ms``, evaluate it exactly.

Grammar (spaces allowed around the operator)::

    [SCENARIO:][stage=LABEL:]METRIC OP NUMBER[UNIT]

* latency metrics ``ttft``, ``first_text``, ``completion``, ``itl``, ``tpot`` with a
  statistic ``_p50 _p90 _p95 _p99 _max _mean``; unit ``ms`` or ``s`` (required)
* ``error_rate`` or ``error_rate[CLASS]`` (e.g. ``error_rate[http_429]``); unit ``%``
* ``rps``, ``output_tps``, ``goodput``; optional unit ``/s``
* ``OP`` is one of ``< <= > >=``

An SLO is evaluated on a block of ``summary.json`` (overall, a scenario or a stage),
whose percentiles are exact. :func:`call_meets` applies the latency SLOs to one call,
which is what goodput counts: successful calls per second whose own TTFT, time to first
text, completion time and TPOT meet every applicable objective.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord

__all__ = ["SLO", "SLOResult", "block_of", "call_meets", "check_scopes", "evaluate", "parse_slo", "parse_slos"]

LATENCY = ("ttft", "first_text", "completion", "itl", "tpot")
STATS = ("p50", "p90", "p95", "p99", "max", "mean")
RATES = ("rps", "output_tps", "goodput")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_SUMMARY_KEY = {"rps": "requests_per_s", "output_tps": "output_tokens_per_s", "goodput": "goodput_per_s"}
# Per-call values a latency SLO can be applied to (ITL is a distribution within a call).
_PER_CALL = {"ttft": "ttft_s", "first_text": "first_text_s", "completion": "completion_s", "tpot": "tpot_s"}

_EXPR = re.compile(
    r"^(?P<metric>[a-z][a-z0-9_]*(?:\[[a-z0-9_]+\])?)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|%|/s)?$"
)

VALID_METRICS = (
    ", ".join(f"{m}_{{{'|'.join(STATS)}}}" for m in LATENCY) + ", error_rate, error_rate[CLASS], " + ", ".join(RATES)
)


@dataclass(frozen=True)
class SLO:
    """One objective; ``threshold`` is in seconds, a fraction (error rate) or per second."""

    text: str
    metric: str  # "ttft", "error_rate", "rps", ...
    stat: str | None  # "p95" for latency metrics
    error_class: str | None
    op: str
    threshold: float
    unit: str
    scenario: str | None = None
    stage: str | None = None

    @property
    def name(self) -> str:
        """The metric as written, without scope: ``ttft_p95``, ``error_rate[http_429]``."""
        if self.stat:
            return f"{self.metric}_{self.stat}"
        if self.error_class:
            return f"error_rate[{self.error_class}]"
        return self.metric

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.threshold)

    def measure(self, block: Mapping[str, Any]) -> float | None:
        """This SLO's figure in a summary block; ``None`` if the block has no samples for it."""
        if self.stat:
            value = block.get(f"{self.metric}_s", {}).get(self.stat)
            return None if value is None else float(value)
        if self.metric == "error_rate":
            if self.error_class is None:
                return float(block.get("error_rate", 0.0))
            finished = block.get("calls", 0) - block.get("cancelled", 0)
            return block.get("errors", {}).get(self.error_class, 0) / finished if finished else 0.0
        return float(block.get(_SUMMARY_KEY[self.metric], 0.0))

    def format(self, value: float | None) -> str:
        """A value in this SLO's unit, for messages and the terminal verdict."""
        if value is None:
            return "no samples"
        if self.unit == "ms":
            return f"{value * 1000:.1f}ms"
        if self.unit == "s":
            return f"{value:.3f}s"
        if self.unit == "%":
            return f"{value * 100:.2f}%"
        return f"{value:.2f}/s"


@dataclass(frozen=True)
class SLOResult:
    slo: SLO
    measured: float | None
    passed: bool

    @property
    def message(self) -> str:
        verdict = "met" if self.passed else "breached"
        return (
            f"{self.slo.text}: measured {self.slo.format(self.measured)}, limit {self.slo.op} "
            f"{self.slo.format(self.slo.threshold)} ({verdict})"
        )


def parse_slo(text: str) -> SLO:
    """Parse one SLO expression; ConfigError with what is wrong and the valid metrics."""
    raw = text.strip()
    parts = raw.split(":")
    expr = parts[-1].strip()
    scenario: str | None = None
    stage: str | None = None
    for scope in (p.strip() for p in parts[:-1]):
        if scope.startswith("stage="):
            stage = scope[len("stage=") :]
        elif scope and scenario is None:
            scenario = scope
        else:
            raise ConfigError(f"SLO {raw!r}: scope {scope!r} not understood; use SCENARIO: and/or stage=LABEL:")
    match = _EXPR.match(expr)
    if match is None:
        raise ConfigError(
            f"SLO {raw!r} does not parse; write METRIC OP NUMBER UNIT, e.g. ttft_p95<800ms or error_rate<1%"
        )
    metric_text, op, number, unit = match["metric"], match["op"], float(match["number"]), match["unit"] or ""
    metric, stat, error_class = _split_metric(metric_text, raw)
    if stat is not None:
        if unit not in ("ms", "s"):
            raise ConfigError(f"SLO {raw!r}: a latency needs a unit, ms or s (e.g. {metric_text}<800ms)")
        threshold = number / 1000.0 if unit == "ms" else number
    elif metric == "error_rate":
        if unit != "%":
            raise ConfigError(f"SLO {raw!r}: an error rate needs the unit % (e.g. error_rate<1%)")
        threshold = number / 100.0
    else:
        if unit not in ("", "/s"):
            raise ConfigError(f"SLO {raw!r}: {metric} is per second; write e.g. {metric}>=5/s")
        threshold, unit = number, "/s"
    return SLO(raw, metric, stat, error_class, op, threshold, unit, scenario, stage)


def _split_metric(text: str, raw: str) -> tuple[str, str | None, str | None]:
    if text.startswith("error_rate"):
        if text == "error_rate":
            return "error_rate", None, None
        if text.startswith("error_rate[") and text.endswith("]"):
            return "error_rate", None, text[len("error_rate[") : -1]
    if text in RATES:
        return text, None, None
    base, _, stat = text.rpartition("_")
    if base in LATENCY and stat in STATS:
        return base, stat, None
    raise ConfigError(f"SLO {raw!r}: unknown metric {text!r}; valid metrics: {VALID_METRICS}")


def parse_slos(texts: Iterable[str]) -> list[SLO]:
    """Parse several expressions; each may also hold several separated by commas."""
    return [parse_slo(part) for text in texts for part in text.split(",") if part.strip()]


def check_scopes(slos: Sequence[SLO], scenarios: Iterable[str]) -> None:
    """ConfigError if an SLO names a scenario the run does not have."""
    known = set(scenarios)
    for slo in slos:
        if slo.scenario is not None and slo.scenario not in known:
            raise ConfigError(
                f"SLO {slo.text!r} names scenario {slo.scenario!r}, which this run does not have; "
                f"scenarios: {', '.join(sorted(known)) or 'none'}"
            )


def block_of(summary: Mapping[str, Any], slo: SLO) -> Mapping[str, Any] | None:
    """The block of ``summary`` an SLO is measured on: overall, a scenario, a stage (``stages``)."""
    if slo.stage is not None:
        stage = summary.get("stages", {}).get(slo.stage)
        if stage is None:
            return None
        return stage.get("scenarios", {}).get(slo.scenario) if slo.scenario else stage.get("overall", stage)
    if slo.scenario is not None:
        return summary.get("scenarios", {}).get(slo.scenario)
    return summary.get("overall")


def evaluate(slos: Sequence[SLO], summary: Mapping[str, Any]) -> list[SLOResult]:
    """Each SLO against its block of ``summary``; an SLO with no samples is breached."""
    results = []
    for slo in slos:
        block = block_of(summary, slo)
        measured = None if block is None else slo.measure(block)
        results.append(SLOResult(slo, measured, measured is not None and slo.holds(measured)))
    return results


def call_meets(record: CallRecord, slos: Sequence[SLO]) -> bool:
    """Whether one call counts toward goodput: ok, and within every per-call latency SLO."""
    if not record.ok:
        return False
    for slo in slos:
        field = _PER_CALL.get(slo.metric)
        if field is None or slo.stat is None:
            continue
        if slo.scenario is not None and slo.scenario != record.scenario:
            continue
        if slo.stage is not None and slo.stage != record.stage:
            continue
        value = getattr(record, field)
        if value is not None and not slo.holds(value):
            return False
    return True
