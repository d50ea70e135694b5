"""A run's SLO results as JUnit XML, the test report every CI system shows.

One ``<testcase>`` per SLO; its ``classname`` is the scope (``slo.overall``,
``slo.HaikuChat``, ``slo.stage=8.HaikuChat``) so CI views group them, and a breached SLO
carries a ``<failure>`` whose message quotes the measured value and the limit. The
suite's ``<properties>`` hold the run's configuration from ``summary.json`` (which never
contains the API key; any value that would is redacted all the same). The layout is the
common subset Jenkins, GitLab and GitHub test reporters read (``tests/junit.xsd``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from locust import __version__ as locust_version

from harness.core.artefacts import write_atomic
from harness.core.slo import SLO, SLOResult, block_of

__all__ = ["SUITE_NAME", "junit_document", "write_junit"]

SUITE_NAME = "llm-slo"


def classname(slo: SLO) -> str:
    """The testcase's group: where the SLO was measured."""
    parts = ["slo"]
    if slo.stage is not None:
        parts.append(f"stage={slo.stage}")
    if slo.scenario is not None:
        parts.append(slo.scenario)
    if len(parts) == 1:
        parts.append("overall")
    return ".".join(parts)


def junit_document(results: Sequence[SLOResult], summary: Mapping[str, Any]) -> str:
    """The JUnit XML text for ``results`` of the run ``summary`` describes (and its capacity search)."""
    search = summary.get("search")
    found = bool(search and search.get("max_sustainable") is not None)
    tests = len(results) + (1 if search else 0)
    failures = sum(not r.passed for r in results) + (1 if search and not found else 0)
    duration = f"{float(summary.get('duration_s', 0.0)):.3f}"
    counts = {"tests": str(tests), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", {"name": "llm-loadtest", **counts, "time": duration})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": SUITE_NAME,
            **counts,
            "skipped": "0",
            "time": duration,
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname(),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in run_properties(summary, [r.slo.text for r in results]):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for result in results:
        suite.append(_testcase(result, summary))
    if search:
        suite.append(_search_case(search))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _testcase(result: SLOResult, summary: Mapping[str, Any]) -> ET.Element:
    slo = result.slo
    case = ET.Element("testcase", {"classname": classname(slo), "name": slo.text, "time": "0"})
    if not result.passed:
        failure = ET.SubElement(case, "failure", {"type": "SLOBreach", "message": result.message})
        failure.text = _details(result, summary)
    return case


def _search_case(search: Mapping[str, Any]) -> ET.Element:
    """The capacity search as one testcase: it fails when no probed load met the SLOs."""
    case = ET.Element("testcase", {"classname": "search", "name": "max sustainable load", "time": "0"})
    if search.get("max_sustainable") is None:
        failure = ET.SubElement(case, "failure", {"type": "NoSustainableLoad", "message": search["answer"]})
        failure.text = search["answer"]
    out = ET.SubElement(case, "system-out")
    out.text = "\n".join([search["answer"], *(_probe_line(p) for p in search.get("probes", []))])
    return case


def _probe_line(probe: Mapping[str, Any]) -> str:
    verdict = "pass" if probe["passed"] else "breach " + ", ".join(probe["breaches"])
    early = ", ended early" if probe.get("early") else ""
    return f"probe {probe['index'] + 1} ({probe['phase']}): {probe['stage']} {verdict}{early}"


def _details(result: SLOResult, summary: Mapping[str, Any]) -> str:
    """The failure's body: the limit, the measurement and the figures around it."""
    slo = result.slo
    lines = [result.message]
    if result.measured is None:
        lines.append("no calls were measured in this scope, so the SLO cannot be met")
    block = block_of(summary, slo) or {}
    figures = block.get(f"{slo.metric}_s") if slo.stat else None
    if isinstance(figures, Mapping):
        stats = ("p50", "p90", "p95", "p99", "max")
        shown = ", ".join(f"{k} {slo.format(figures[k])}" for k in stats if figures.get(k) is not None)
        lines.append(f"{slo.metric} over {figures.get('count', 0)} samples: {shown}")
    if "calls" in block:
        lines.append(
            f"calls {block['calls']}, ok {block.get('ok', 0)}, failed {block.get('failed', 0)}, "
            f"cancelled {block.get('cancelled', 0)}, errors {dict(block.get('errors', {}))}"
        )
    return "\n".join(lines)


def run_properties(summary: Mapping[str, Any], slos: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of the run's configuration, the API key redacted."""
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    pairs = [
        ("duration_s", f"{float(summary.get('duration_s', 0.0)):.3f}"),
        ("locust_version", locust_version),
        *(("slo", text) for text in slos),
    ]
    for name, value in dict(summary.get("config", {})).items():
        if value is None or value == "":
            continue
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        if key and len(key) >= 8:
            text = text.replace(key, "***")
        pairs.append((name, text))
    return pairs


def write_junit(path: Path, results: Sequence[SLOResult], summary: Mapping[str, Any]) -> None:
    """Write the report atomically, so a CI step never reads half a file."""
    write_atomic(path, junit_document(results, summary))
