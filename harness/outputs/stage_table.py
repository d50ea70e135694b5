"""The per-stage analysis in words and tables: ``stages.csv``, the terminal table, the knee in a sentence.

Formats what :class:`harness.core.stages.StageAnalysis` computed (the ``stages`` and
``load_analysis`` sections of summary.json); computes nothing itself.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from harness.core.stages import offered_text

__all__ = ["describe_knee", "describe_sustainable", "format_table", "stages_csv"]


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
    # A capacity search's stages are its probes: their order, phase and verdict.
    probes = {p["stage"]: p for p in (analysis.get("search") or {}).get("probes", [])}
    if probes:
        header += ["probe", "phase", "probe_passed", "ended_early"]
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
                *(_probe_cells(probes.get(r["label"])) if probes else ()),
            ]
        )
    return out.getvalue()


def _probe_cells(probe: Mapping[str, Any] | None) -> list[Any]:
    if probe is None:
        return ["", "", "", ""]
    return [probe["index"] + 1, probe["phase"], probe["passed"], probe["early"]]


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
