"""Verdicts over a run's stage rows: the knee, the max sustainable load, and what "sustainable" means.

Pure functions of the rows :class:`harness.core.stages.StageAnalysis` builds (one per stage,
as in ``summary.json``'s ``stages``); definitions also in docs/load-analysis.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.core.slo import SLO, parse_slo

__all__ = ["KNEE_MAX_EFFICIENCY", "KNEE_MIN_LATENCY_RISE", "KNEE_RULE", "criteria_for", "find_knee", "max_sustainable"]

# The knee rule's two thresholds (see find_knee).
KNEE_MAX_EFFICIENCY = 0.5
KNEE_MIN_LATENCY_RISE = 0.10
# Default criteria for "sustainable" when the run has no SLO and no sweep limits.
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_TTFT_FACTOR = 2.0


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
