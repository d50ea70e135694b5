"""The terminal table a lever study ends with: each lever's effect with its 95% interval, and the guide's call.

One row per pair of arms and metric, the p50 and p95 change side by side, in a
fixed-width plain-text table for a CI log (:mod:`harness.verdict`'s style): colour only on
an interactive terminal and never with ``NO_COLOR``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import IO, Any

from harness.core.compare import Metric, Stat, signed_percent
from harness.outputs.verdict import use_colour

__all__ = ["print_study_table", "render_study_table"]

_GREEN, _RED, _RESET = "\033[32m", "\033[31m", "\033[0m"
_HEADER = ("lever", "b vs a", "metric", "p50 change (95% CI)", "p95 change (95% CI)", "guide (p50)")


def _change(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "-"
    rel, ci = entry["relative"], entry["ci95"]["relative"]
    if rel is None or ci is None:
        return entry["verdict"]
    mark = "" if entry["verdict"] == "no difference detected" else " *"
    return f"{signed_percent(rel)} ({signed_percent(ci[0])} to {signed_percent(ci[1])}){mark}"


def _rows(doc: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str | None]]:
    grouped: dict[tuple[str, str, str, str], dict[str, Mapping[str, Any]]] = {}
    for c in doc["comparisons"]:
        key = (c["lever"], c["a"]["arm"], c["b"]["arm"], c["metric"])
        grouped.setdefault(key, {})[c["stat"]] = c
    rows: list[tuple[tuple[str, ...], str | None]] = []
    previous = None
    for (lever, a, b, metric), by_stat in grouped.items():
        p50 = by_stat.get(Stat.P50.value)
        guide = "-"
        if p50 is not None and p50["predicted"]:
            guide = f"{p50['predicted']}: {p50['agreement']}"
        cells = (
            lever if lever != previous else "",  # each lever named once, on its first row
            f"{b} vs {a}",
            Metric(metric).label,
            _change(p50),
            _change(by_stat.get(Stat.P95.value)),
            guide,
        )
        rows.append((cells, p50["agreement"] if p50 is not None else None))
        previous = lever
    return rows


def _lay_out(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def render_study_table(doc: Mapping[str, Any], *, colour: bool = False) -> str:
    """The study document as text: the table, what was not compared, and the tally against the guide."""
    method = "blocks (rounds)" if doc.get("bootstrap") == "blocks" else "calls"
    lines = [
        "",
        f"LLM lever study: b against a, 95% intervals by bootstrap over {method} ({doc['resamples']} resamples)",
    ]
    rows = _rows(doc)
    if rows:
        table = _lay_out([_HEADER, *(cells for cells, _ in rows)])
        lines.append(table[0])
        for line, (_, agreed) in zip(table[1:], rows, strict=True):
            if colour and agreed in ("agrees", "contradicts"):
                tint = _GREEN if agreed == "agrees" else _RED
                line = line.replace(agreed, f"{tint}{agreed}{_RESET}")
            lines.append(line)
        lines.append("  * the interval excludes 0: a difference, not chance")
    else:
        lines.append("  no comparisons: no pair of arms had enough successful calls")
    for s in doc.get("skipped", []):
        lines.append(f"  not compared: {s['b']} vs {s['a']} {s['metric']}: {s['reason']}")
    tally = Counter(c["agreement"] for c in doc["comparisons"] if c["agreement"])
    if tally:
        lines.append(
            f"  The guide's predictions (p50 and p95): {tally['agrees']} borne out, {tally['contradicts']} "
            f"contradicted, {tally['inconclusive']} inconclusive"
        )
    return "\n".join(lines) + "\n"


def print_study_table(doc: Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """Print the table to ``stream`` (stdout), coloured only where :func:`harness.verdict.use_colour` allows."""
    out = sys.stdout if stream is None else stream
    out.write(render_study_table(doc, colour=use_colour(out)))
    out.flush()
