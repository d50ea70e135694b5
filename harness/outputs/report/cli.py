"""The report's command line.

``python -m harness.report DIR`` and ``python -m harness.report compare DIR_A DIR_B ... [-o FILE]``;
``compare`` also prints each run's difference from the first with its 95% interval.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.core.errors import ConfigError
from harness.core.records_io import record_files
from harness.outputs.report import write_compare, write_report
from harness.outputs.study_table import print_study_table


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    compare = bool(args) and args[0] == "compare"
    parser = argparse.ArgumentParser(
        prog="python -m harness.report" + (" compare" if compare else ""),
        description="Compare runs side by side in one HTML page."
        if compare
        else "Rebuild DIR/report.html from DIR/requests.jsonl (and DIR/summary.json).",
    )
    parser.add_argument("dirs", nargs="+" if compare else 1, metavar="DIR", help="a run's --report-dir")
    parser.add_argument("-o", "--output", metavar="FILE", help="where to write the page")
    ns = parser.parse_args(args[1:] if compare else args)
    dirs = [Path(d) for d in ns.dirs]
    for d in dirs:
        if not record_files(d):
            parser.error(f"{d / 'requests.jsonl'} not found; pass the --report-dir of a run")
    try:
        if compare:
            if len(dirs) < 2:
                parser.error("compare needs two or more run directories")
            path, intervals = write_compare(dirs, Path(ns.output or "compare.html"))
            print_study_table(intervals)
        else:
            path = write_report(dirs[0], output=Path(ns.output) if ns.output else None)
    except (ValueError, KeyError, ConfigError) as exc:
        sys.stderr.write(f"python -m harness.report: error: cannot read the run ({type(exc).__name__}: {exc})\n")
        return 2
    print(path)
    return 0
