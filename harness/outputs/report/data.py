"""A finished run read back from its report directory: records, summary and per-stage analysis.

The per-stage figures are recomputed from ``requests.jsonl`` (or its rotated set) with the same
:class:`harness.load.stages.StageAnalysis` the live run used; ``summary.json`` (when present)
supplies the stage boundaries, the SLOs and the run's configuration, which the records
alone do not hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.measure import CallRecord
from harness.core.records_io import read_records
from harness.core.slo import parse_slo
from harness.core.stages import Stage, StageAnalysis

__all__ = ["Run", "load_run"]


@dataclass
class Run:
    """One run as the report shows it."""

    name: str
    records: list[CallRecord]
    analysis: dict[str, Any]  # {"stages": {...}, "load_analysis": {...}}
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [self.analysis["stages"][label] for label in self.analysis["load_analysis"]["order"]]

    @property
    def t0(self) -> float:
        """The run's origin on the monotonic clock: its first stage's start or first call."""
        starts = [r["t_start"] for r in self.rows]
        starts += [r.t_start - r.queue_s for r in self.records[:1]]
        return min(starts) if starts else 0.0


def load_run(directory: Path, summary: Mapping[str, Any] | None = None, name: str | None = None) -> Run:
    """Read ``directory``; with ``summary`` (the live run's) use its analysis as is."""
    records = list(read_records(directory))  # requests.jsonl, or its rotated set (--rotate-records)
    if summary is None:
        summary_path = directory / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        analysis = _recompute(records, summary)
    else:
        analysis = {"stages": summary.get("stages", {}), "load_analysis": summary.get("load_analysis", {})}
        if not analysis["load_analysis"]:
            analysis = _recompute(records, summary)
    return Run(name or directory.resolve().name, records, analysis, dict(summary))


def _recompute(records: list[CallRecord], summary: Mapping[str, Any]) -> dict[str, Any]:
    la = summary.get("load_analysis") or {}
    saved = summary.get("stages") or {}
    stages = [Stage.from_dict(saved[label]) for label in la.get("order", []) if label in saved]
    slos = [parse_slo(text) for text in la.get("slos", [])]
    limits = [parse_slo(text) for text in la.get("sweep_limits", [])]
    analysis = StageAnalysis.from_records(records, stages, slos)
    result = analysis.analyse(limits)
    for key in ("stop_reason", "options"):
        if key in la:
            result["load_analysis"][key] = la[key]
    return result
