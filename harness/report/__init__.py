"""``python -m harness.report``: the entry point of :mod:`harness.outputs.report` (report.html, compare)."""

from __future__ import annotations

from harness.outputs.report import write_compare, write_report

__all__ = ["write_compare", "write_report"]
