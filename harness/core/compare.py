"""Is a difference between two arms real? Differences of p50 and p95 with 95% bootstrap intervals.

Given one metric's per-call values from two arms, :func:`compare` reports b - a for the
median and the p95, absolute and relative to a, each with a 95% percentile-bootstrap
interval (:mod:`harness.core.bootstrap`: over calls, or over blocks when each call's
block is given), the verdict (lower, higher, or no difference detected: the interval
holds 0) and the verdict as a sentence. Point estimates are
:func:`harness.summary.percentile`, so they equal ``summary.json``'s figures for the same
calls. :func:`precise` is ``--precision``'s stopping rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.core.bootstrap import block_percentiles, call_percentiles
from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.summary import percentile

__all__ = [
    "ArmValue",
    "Comparison",
    "Interval",
    "Method",
    "Metric",
    "Stat",
    "Verdict",
    "compare",
    "metric_values",
    "parse_precision",
    "precise",
    "signed_percent",
]

RESAMPLES = 2000
MIN_CALLS = 2  # fewer values give no interval at all

Floats = npt.NDArray[np.float64]


class Metric(str, Enum):
    """A per-call figure of a CallRecord (METRICS.md), from successful calls only."""

    TTFT = "ttft_s"
    FIRST_TEXT = "first_text_s"
    COMPLETION = "completion_s"
    OUTPUT_TPS = "output_tps"
    # What the user waits for before reading anything: first text of a streamed call, the
    # whole call when not streamed (it shows nothing until it ends). Streaming's lever.
    PERCEIVED = "perceived_s"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_time(self) -> bool:
        return self is not Metric.OUTPUT_TPS

    def of(self, record: CallRecord) -> float | None:
        """This metric of one call, ``None`` where it is undefined."""
        if self is Metric.PERCEIVED:
            return record.first_text_s if record.stream else record.completion_s
        value: float | None = getattr(record, self.value)
        return value


_LABELS = {
    Metric.TTFT: "TTFT",
    Metric.FIRST_TEXT: "time to first text",
    Metric.COMPLETION: "completion time",
    Metric.OUTPUT_TPS: "output tokens/s",
    Metric.PERCEIVED: "time to first visible text",
}


class Stat(str, Enum):
    P50 = "p50"
    P95 = "p95"

    @property
    def q(self) -> float:
        return float(self.value[1:])


class Verdict(str, Enum):
    LOWER = "lower"
    HIGHER = "higher"
    NO_DIFFERENCE = "no difference detected"


class Method(str, Enum):
    CALLS = "calls"
    BLOCKS = "blocks"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_list(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True)
class ArmValue:
    """One side of a comparison: the arm, its point estimate, and how many calls gave it."""

    arm: str
    value: float
    calls: int


@dataclass(frozen=True)
class Comparison:
    """b - a for one metric and statistic, with its 95% interval (absolute, and relative to a)."""

    metric: Metric
    stat: Stat
    a: ArmValue
    b: ArmValue
    difference: float
    relative: float | None  # None when a's value is 0
    ci95: Interval
    ci95_relative: Interval | None
    verdict: Verdict
    method: Method
    blocks: int | None  # distinct block ids resampled, for Method.BLOCKS
    resamples: int

    @property
    def sentence(self) -> str:
        """The verdict in words, e.g. "B's TTFT p50 is 41% lower than A's (95% CI 37-45%)"."""
        subject = f"{self.b.arm}'s {self.metric.label} {self.stat.value}"
        rel, ci = self.relative, self.ci95_relative
        if self.verdict is Verdict.NO_DIFFERENCE:
            span = (
                f"{signed_percent(ci.low)} to {signed_percent(ci.high)}"
                if ci is not None
                else f"{self._amount(self.ci95.low, signed=True)} to {self._amount(self.ci95.high, signed=True)}"
            )
            return f"{subject} against {self.a.arm}'s: no difference detected (95% CI {span})"
        lower = self.verdict is Verdict.LOWER
        sign = -1.0 if lower else 1.0
        if rel is not None and ci is not None:
            lo, hi = sorted((sign * ci.low, sign * ci.high))
            size, span = f"{_pct(sign * rel)}%", f"{_pct(lo)}\N{EN DASH}{_pct(hi)}%"
        else:
            lo, hi = sorted((sign * self.ci95.low, sign * self.ci95.high))
            size, span = self._amount(sign * self.difference), f"{self._amount(lo)} to {self._amount(hi)}"
        return f"{subject} is {size} {self.verdict.value} than {self.a.arm}'s (95% CI {span})"

    @property
    def half_width(self) -> float | None:
        """The relative interval's half-width (0.05 is ±5% of a), ``None`` without one."""
        return None if self.ci95_relative is None else self.ci95_relative.half_width

    def _amount(self, value: float, signed: bool = False) -> str:
        text = f"{value * 1000:+.1f} ms" if self.metric.is_time else f"{value:+.1f} tokens/s"
        text = text.replace("-", "\N{MINUS SIGN}")
        return text if signed else text.lstrip("+\N{MINUS SIGN}")

    def to_dict(self) -> dict[str, Any]:
        """The comparison as study.json holds it."""
        return {
            "metric": self.metric.value,
            "stat": self.stat.value,
            "a": {"arm": self.a.arm, "value": self.a.value, "calls": self.a.calls},
            "b": {"arm": self.b.arm, "value": self.b.value, "calls": self.b.calls},
            "difference": self.difference,
            "relative": self.relative,
            "ci95": {
                "difference": self.ci95.to_list(),
                "relative": None if self.ci95_relative is None else self.ci95_relative.to_list(),
            },
            "verdict": self.verdict.value,
            "sentence": self.sentence,
            "method": self.method.value,
            "blocks": self.blocks,
            "resamples": self.resamples,
        }


def _pct(fraction: float) -> str:
    value = fraction * 100
    return f"{value:.0f}" if abs(value) >= 9.95 else f"{value:.1f}"


def signed_percent(fraction: float) -> str:
    """0.041 -> "+4.1%", -0.41 -> "\N{MINUS SIGN}41%": a relative difference as the sentences show it."""
    text = _pct(fraction)
    return (text.replace("-", "\N{MINUS SIGN}") if text.startswith("-") else "+" + text) + "%"


def metric_values(
    records: Iterable[CallRecord], metric: Metric, block: Callable[[CallRecord], Hashable] | None = None
) -> tuple[Floats, list[Hashable] | None]:
    """The metric's values of the successful calls outside warm-ups, and each one's block id.

    ``block`` (a function of a record, e.g. its schedule round) gives the block ids; without
    it the second item is ``None``. Warm-up calls (``warmup: true``) are left out, as a
    stage's figures leave them out.
    """
    values: list[float] = []
    blocks: list[Hashable] = []
    for record in records:
        if not record.ok or record.warmup:
            continue
        value = metric.of(record)
        if value is None:
            continue
        values.append(value)
        if block is not None:
            blocks.append(block(record))
    return np.asarray(values, dtype=np.float64), (blocks if block is not None else None)


def compare(
    a: Sequence[float] | Floats,
    b: Sequence[float] | Floats,
    *,
    metric: Metric,
    names: tuple[str, str] = ("A", "B"),
    stats: Sequence[Stat] = (Stat.P50, Stat.P95),
    blocks_a: Sequence[Hashable] | None = None,
    blocks_b: Sequence[Hashable] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[Comparison]:
    """b - a for each of ``stats``, with 95% bootstrap intervals; deterministic for a seed.

    Give both ``blocks_a`` and ``blocks_b`` (one id per value) for the block bootstrap.
    Raises ValueError when an arm has fewer than two values or the blocks do not match.
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    for name, x in zip(names, (xa, xb), strict=True):
        if x.ndim != 1 or len(x) < MIN_CALLS:
            raise ValueError(f"{name} has {x.size} {metric.value} values: a comparison needs {MIN_CALLS} or more")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}'s {metric.value} values are not all finite")
    if resamples < 100:
        raise ValueError(f"resamples={resamples}: use 100 or more for a 95% interval")
    rng = np.random.default_rng(seed)
    qs = [s.q for s in stats]
    if (blocks_a is None) != (blocks_b is None):
        raise ValueError("give block ids for both arms or for neither")
    if blocks_a is not None and blocks_b is not None:
        (boot_a, boot_b), n_blocks = block_percentiles([(xa, blocks_a), (xb, blocks_b)], qs, resamples, rng)
        method: Method = Method.BLOCKS
    else:
        boot_a, boot_b = call_percentiles(xa, qs, resamples, rng), call_percentiles(xb, qs, resamples, rng)
        method, n_blocks = Method.CALLS, None
    sorted_a, sorted_b = sorted(xa.tolist()), sorted(xb.tolist())
    out = []
    for i, stat in enumerate(stats):
        side_a = ArmValue(names[0], percentile(sorted_a, stat.q), len(xa))
        side_b = ArmValue(names[1], percentile(sorted_b, stat.q), len(xb))
        out.append(_comparison(metric, stat, side_a, side_b, boot_a[i], boot_b[i], method, n_blocks, resamples))
    return out


def _comparison(
    metric: Metric,
    stat: Stat,
    a: ArmValue,
    b: ArmValue,
    boot_a: Floats,
    boot_b: Floats,
    method: Method,
    blocks: int | None,
    resamples: int,
) -> Comparison:
    keep = ~(np.isnan(boot_a) | np.isnan(boot_b))  # a block resample that drew no call of an arm
    if keep.sum() < resamples // 2:
        raise ValueError(
            f"{a.arm} and {b.arm} share too few block ids to resample them together: "
            "give both arms the schedule's round numbers as block ids"
        )
    boot_a, boot_b = boot_a[keep], boot_b[keep]
    low, high = np.percentile(boot_b - boot_a, [2.5, 97.5])
    ci = Interval(float(low), float(high))
    relative: float | None = None
    ci_relative: Interval | None = None
    if a.value != 0 and np.all(boot_a != 0):
        relative = b.value / a.value - 1.0
        rlow, rhigh = np.percentile(boot_b / boot_a - 1.0, [2.5, 97.5])
        ci_relative = Interval(float(rlow), float(rhigh))
    if ci.low > 0:
        verdict = Verdict.HIGHER
    elif ci.high < 0:
        verdict = Verdict.LOWER
    else:
        verdict = Verdict.NO_DIFFERENCE
    return Comparison(
        metric, stat, a, b, b.value - a.value, relative, ci, ci_relative, verdict, method, blocks, resamples
    )


def parse_precision(text: str) -> float:
    """``--precision``: "5%" (or "0.05") -> 0.05, the largest relative half-width accepted."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text)
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0) if match else math.nan
    if not 0 < value < 1:
        raise ConfigError(f"--precision {text!r}: give the largest interval half-width as a percentage, e.g. 5%")
    return value


def precise(comparisons: Iterable[Comparison], half_width: float, *, min_blocks: int = 10) -> bool:
    """Is every relative interval narrower than ±half_width (and each block bootstrap on enough blocks)?

    A block bootstrap over few blocks understates its own spread, so an interval from fewer
    than ``min_blocks`` block ids never counts as precise, however narrow.
    """
    for c in comparisons:
        if c.half_width is None or not c.half_width < half_width:
            return False
        if c.method is Method.BLOCKS and (c.blocks or 0) < min_blocks:
            return False
    return True
