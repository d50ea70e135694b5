"""The terminal verdict a headless run ends with: each SLO, its measurement, PASS/FAIL.

Written for a CI log: a compact fixed-width table and the run's summary figures, in
plain text. Colour only on an interactive terminal, and never when ``NO_COLOR`` is set
(https://no-color.org), so logs carry no escape codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from harness.core.slo import SLOResult

__all__ = ["print_verdict", "render_verdict", "use_colour"]

_GREEN, _RED, _BOLD, _RESET = "\033[32m", "\033[31m", "\033[1m", "\033[0m"
_LATENCY_ROWS = (("TTFT", "ttft_s"), ("first text", "first_text_s"), ("completion", "completion_s"))
_FINE_ROWS = (("ITL", "itl_s"), ("TPOT", "tpot_s"))


def use_colour(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only for a terminal, and not when NO_COLOR is set to anything non-empty."""
    if environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:.1f}ms"


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _slo_lines(results: Sequence[SLOResult], colour: bool) -> list[str]:
    rows: list[tuple[str, ...]] = [("SLO", "measured", "limit", "result")]
    rows += [
        (
            r.slo.text,
            r.slo.format(r.measured),
            f"{r.slo.op} {r.slo.format(r.slo.threshold)}",
            "PASS" if r.passed else "FAIL",
        )
        for r in results
    ]
    lines = _table(rows)
    if colour:
        lines = [
            line.replace("PASS", f"{_GREEN}PASS{_RESET}").replace("FAIL", f"{_RED}FAIL{_RESET}") if i else line
            for i, line in enumerate(lines)
        ]
    return lines


def _figure_lines(overall: Mapping[str, Any]) -> list[str]:
    rows: list[tuple[str, ...]] = [("", "count", "p50", "p90", "p95", "p99", "max")]
    for label, key in (*_LATENCY_ROWS, *_FINE_ROWS):
        d = overall.get(key) or {}
        if d.get("count"):
            rows.append((label, str(d["count"]), *(_ms(d.get(s)) for s in ("p50", "p90", "p95", "p99", "max"))))
    return _table(rows) if len(rows) > 1 else ["  no successful calls: no latency figures"]


def replay_lines(replay: Mapping[str, Any] | None) -> list[str]:
    """A trace replay in two lines: what was replayed, and how closely it kept the schedule."""
    if not replay:
        return []
    error = replay.get("start_error_s") or {}
    rates = (replay.get("achieved_rate"), replay.get("recorded_rate"))
    rate = f"{rates[0]:.2f} req/s achieved vs {rates[1]:.2f} recorded" if None not in rates else "rate: too few calls"
    speed = f", speed {replay['speed']:g}x" if replay.get("speed", 1) != 1 else ""
    return [
        "",
        f"  Trace replay: {replay.get('lines', 0)} calls from {replay.get('file')} ({replay.get('format')}{speed}): "
        f"{replay.get('late', 0)} late, {replay.get('dropped', 0)} dropped",
        f"    start vs schedule p50 {_ms(error.get('p50'))}, p99 {_ms(error.get('p99'))}, "
        f"max {_ms(error.get('max'))}; {rate}",
    ]


def search_lines(search: Mapping[str, Any] | None) -> list[str]:
    """A capacity search: every probe in order, then its answer."""
    if not search:
        return []
    rows: list[tuple[str, ...]] = [("probe", "stage", "phase", "ok calls", "result")]
    for p in search.get("probes", []):
        result = "pass" if p["passed"] else "breach: " + ", ".join(p["breaches"])
        calls = f"{p['ok_calls']}" + ("" if p["meaningful"] else f" (of {p['needed_calls']} needed)")
        rows.append(
            (str(p["index"] + 1), str(p["stage"]), p["phase"], calls, result + (" (ended early)" if p["early"] else ""))
        )
    head = (
        f"  Capacity search over {search['kind']} (precision {search['precision']:.0%}, stop: {search['stop_reason']})"
    )
    scope = (
        f"  (the SLOs below are judged at {search['answer_stage']}, the answer)" if search.get("answer_stage") else ""
    )
    return ["", head, *_table(rows, "    "), f"  {search['answer']}", *([scope] if scope else [])]


def render_verdict(
    summary: Mapping[str, Any], results: Sequence[SLOResult], *, exit_code: int | None = None, colour: bool = False
) -> str:
    """The verdict as text; ``exit_code`` is the process's, shown on the last line."""
    overall = summary.get("overall", {})
    duration = float(summary.get("duration_s", 0.0))
    lines = ["", "LLM run verdict (exact percentiles from every call, METRICS.md)"]
    lines.append(
        f"  {overall.get('calls', 0)} calls in {duration:.1f}s: {overall.get('ok', 0)} ok, "
        f"{overall.get('failed', 0)} failed ({overall.get('error_rate', 0.0) * 100:.2f}%), "
        f"{overall.get('cancelled', 0)} cancelled"
    )
    lines.append(
        f"  {overall.get('requests_per_s', 0.0):.2f} req/s, {overall.get('output_tokens_per_s', 0.0):.1f} "
        f"output tokens/s, goodput {overall.get('goodput_per_s', 0.0):.2f}/s"
    )
    if overall.get("errors"):
        lines.append("  errors: " + ", ".join(f"{k} {v}" for k, v in overall["errors"].items()))
    lines += _figure_lines(overall)
    lines += replay_lines(summary.get("replay"))
    lines += search_lines(summary.get("search"))
    if results:
        lines.append("")
        lines += _slo_lines(results, colour)
        for r in results:
            if not r.passed:
                lines.append(f"  SLO breached: {r.message}")
    lines.append(_result_line(results, exit_code, colour))
    return "\n".join(lines) + "\n"


def _result_line(results: Sequence[SLOResult], exit_code: int | None, colour: bool) -> str:
    breached = sum(not r.passed for r in results)
    code = "" if exit_code is None else f" (exit code {exit_code})"
    if breached:
        text, tint = f"Result: FAIL, {breached} of {len(results)} SLOs breached{code}", _RED
    elif results:
        text, tint = f"Result: PASS, all {len(results)} SLOs met{code}", _GREEN
    else:
        text, tint = f"Result: no SLOs given{code}", ""
    if exit_code and not breached:
        text += ", failed calls or errors: see Locust's report above"
    return f"{_BOLD}{tint}{text}{_RESET}" if colour else text


def print_verdict(
    summary: Mapping[str, Any], results: Sequence[SLOResult], *, exit_code: int | None = None, to_stderr: bool = False
) -> None:
    """Print the verdict to stdout (stderr when stdout carries Locust's ``--json``)."""
    stream = sys.stderr if to_stderr else sys.stdout
    stream.write(render_verdict(summary, results, exit_code=exit_code, colour=use_colour(stream)))
    stream.flush()
