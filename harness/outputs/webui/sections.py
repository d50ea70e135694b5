"""The LLM tab's live sections for a capacity search and a trace replay: flat key-value panels.

The tab draws each section of ``/llm/stats`` as a two-column table (``llm-tab.js``), so each
provider here returns a flat dict of short texts, read from the run's own objects as it goes.
"""

from __future__ import annotations

from typing import Any

from harness.core.stages import offered_text
from harness.load.replay import TraceReplay
from harness.load.shapes import StagedShape
from harness.monitors.live import LiveStats
from harness.runtime.state import Harness

__all__ = ["add_sections", "replay_panel", "search_panel"]


def search_panel(shape: StagedShape) -> dict[str, Any] | None:
    """The search so far: the probe running, the bracket, every probe's verdict, the answer when done."""
    if shape.search is None:
        return None
    probing, search = shape.search, shape.search.search
    if not search.probes and shape.current_label is None:
        return None
    kind = search.config.kind.value
    bracket = search.bracket
    probes = " · ".join(
        f"{p.index + 1} {p.stage} {'pass' if p.passed else 'breach'}{' (early)' if p.early else ''}"
        for p in search.probes
    )
    ends = (offered_text(kind, v) if v is not None else "?" for v in (bracket.passing, bracket.breaching))
    return {
        "status": search.result().answer if search.done else f"probing {shape.current_label or '-'}",
        "bracket (passing - breaching)": " - ".join(ends),
        "probes": probes or "-",
        "criteria": ", ".join(s.text for s in probing.criteria()),
        "precision": f"{search.config.precision:.0%}, at most {search.config.max_probes} probes",
    }


def replay_panel(replay: TraceReplay) -> dict[str, Any] | None:
    """The replay so far: calls begun of the trace's lines, late and dropped, how close to the schedule."""
    if not replay.started:
        return None
    section = replay.section()
    error = section["start_error_s"]
    p99 = "-" if error["p99"] is None else f"{error['p99'] * 1000:.1f} ms"
    achieved, recorded = section["achieved_rate"], section["recorded_rate"]
    return {
        "trace": f"{section['file']} ({section['format']}, speed {section['speed']:g}x)",
        "calls begun": f"{section['lines']} of {section['trace_lines']} lines"
        + (" per pass" if section["loop"] else ""),
        "late / dropped": f"{section['late']} / {section['dropped']}",
        "start vs schedule p99": p99,
        "req/s achieved vs recorded": "-" if not achieved or not recorded else f"{achieved:.2f} vs {recorded:.2f}",
        "calibration": (section["calibration"] or {}).get("source", "-"),
    }


def add_sections(harness: Harness, stats: LiveStats) -> None:
    """Show the run's search and replay, if it has them, as live sections of the tab."""
    shape = harness.feature(StagedShape)
    if shape is not None and shape.search is not None:
        stats.add_section("search", lambda: search_panel(shape))
    replay = harness.feature(TraceReplay)
    if replay is not None:
        stats.add_section("replay", lambda: replay_panel(replay))
