"""The load generator's verdict: were this run's latency figures trustworthy?

A pure function of each process's health figures (loop lag, first-token lateness, CPU)
and the thresholds: the ``generator`` section of summary.json. A process whose
loop-lag p99 or first-token lateness p99 exceeds the lag threshold, or whose mean CPU
use reaches the CPU threshold, is **generator-bound**, with the reason and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ADVICE", "GENERATOR_BOUND", "MIN_FIRST_TOKENS", "Thresholds", "verdict"]

GENERATOR_BOUND = "generator-bound — latency figures not trustworthy"
ADVICE = (
    "run fewer users per process: add processes (--processes N) or workers (--master/--worker), or use --transport fast"
)
MIN_FIRST_TOKENS = 100  # fewer first tokens than this say too little about a p99 to judge by


@dataclass(frozen=True)
class Thresholds:
    """Where a process becomes generator-bound (``--generator-max-lag-ms``, ``--generator-max-cpu``)."""

    max_lag_ms: float
    max_cpu_percent: float


def verdict(processes: dict[str, dict[str, Any]], options: Thresholds) -> dict[str, Any]:
    """The ``generator`` section of summary.json from every process's snapshot."""
    reasons: list[str] = []
    for name, doc in sorted(processes.items()):
        p99 = (doc.get("loop_lag_s") or {}).get("p99")
        cpu = (doc.get("cpu_percent") or {}).get("mean")
        if p99 is not None and p99 * 1000.0 > options.max_lag_ms:
            reasons.append(f"{name}: event-loop lag p99 {p99 * 1000.0:.1f} ms > {options.max_lag_ms:g} ms")
        late = doc.get("first_token_late_s") or {}
        if late.get("count", 0) >= MIN_FIRST_TOKENS and late["p99"] * 1000.0 > options.max_lag_ms:
            reasons.append(
                f"{name}: first-token stamps up to {late['p99'] * 1000.0:.1f} ms late (p99) > {options.max_lag_ms:g} ms"
            )
        if cpu is not None and cpu >= options.max_cpu_percent:
            reasons.append(f"{name}: CPU {cpu:.0f}% of one core (mean) >= {options.max_cpu_percent:g}%")
    bound = bool(reasons)
    return {
        "verdict": "generator-bound" if bound else "ok",
        "generator_bound": bound,
        "message": GENERATOR_BOUND if bound else "the load generator kept up; latency figures can be trusted",
        "reasons": reasons,
        "advice": ADVICE if bound else None,
        "thresholds": {
            "loop_lag_p99_s": options.max_lag_ms / 1000.0,
            "first_token_late_p99_s": options.max_lag_ms / 1000.0,
            "cpu_percent_mean": options.max_cpu_percent,
        },
        "processes": processes,
    }
