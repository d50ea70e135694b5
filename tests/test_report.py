"""report.html: self-contained, holding the figures it plots, rebuilt and compared from the command line."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from .test_stages_helpers import stepped_run

ROOT = Path(__file__).resolve().parent.parent


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.plots = 0
        self._data_next = False
        self.data = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        self.plots += "plotly-graph-div" in (values.get("class") or "")
        self._data_next = values.get("id") == "report-data"

    def handle_data(self, data: str) -> None:
        if self._data_next:
            self.data += data


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _report_data(path: Path) -> dict[str, Any]:
    return json.loads(_parse(path).data.replace("<\\/", "</"))


def test_report_is_self_contained_and_holds_the_plotted_figures() -> None:
    run = stepped_run()
    page = run.directory / "report.html"
    parsed = _parse(page)
    assert parsed.links == [] or all(not link.startswith(("http:", "https:", "//")) for link in parsed.links)
    assert parsed.plots >= 5
    text = page.read_text(encoding="utf-8")
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js itself is inside
    data = _report_data(page)
    with open(run.directory / "stages.csv", newline="") as f:
        rows = {r["stage"]: r for r in csv.DictReader(f)}
    assert [s["label"] for s in data["stages"]] == list(rows)
    for stage in data["stages"]:
        row = rows[stage["label"]]
        assert stage["overall"]["output_tokens_per_s"] == pytest.approx(float(row["output_tokens_per_s"]))
        assert stage["overall"]["ttft_s"]["p95"] == pytest.approx(float(row["ttft_p95_s"]))
    assert data["load_analysis"]["knee"]["stage"] == run.summary["load_analysis"]["knee"]["stage"]
    # The throughput-latency curve's points are the stages' figures, in ms.
    p95_ms = round(data["stages"][0]["overall"]["ttft_s"]["p95"] * 1000, 3)
    assert json.dumps(p95_ms) in text


def _report_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.report", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_report_cli_rebuilds_the_same_figures_from_requests_jsonl(tmp_path: Path) -> None:
    run = stepped_run()
    copy = tmp_path / "run"
    shutil.copytree(run.directory, copy)
    (copy / "report.html").unlink()
    result = _report_cli(str(copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(copy / "report.html")
    rebuilt, live = _report_data(copy / "report.html"), _report_data(run.directory / "report.html")
    assert rebuilt["stages"] == live["stages"]
    assert rebuilt["load_analysis"]["knee"] == live["load_analysis"]["knee"]


def test_report_cli_without_summary_json_still_finds_the_stages(tmp_path: Path) -> None:
    run = stepped_run()
    copy = tmp_path / "bare"
    copy.mkdir()
    shutil.copy(run.directory / "requests.jsonl", copy)
    assert _report_cli(str(copy)).returncode == 0
    data = _report_data(copy / "report.html")
    assert [s["label"] for s in data["stages"]] == ["u1", "u2", "u4", "u8"]
    assert sum(s["overall"]["calls"] + s["warmup_calls"] for s in data["stages"]) == len(run.records())


def test_report_compare_puts_runs_side_by_side(tmp_path: Path) -> None:
    run = stepped_run()
    a, b = tmp_path / "haiku", tmp_path / "sonnet"
    shutil.copytree(run.directory, a)
    shutil.copytree(run.directory, b)
    out = tmp_path / "compare.html"
    result = _report_cli("compare", str(a), str(b), "-o", str(out))
    assert result.returncode == 0, result.stderr
    parsed = _parse(out)
    assert all(not link.startswith(("http:", "https:", "//")) for link in parsed.links)
    data = _report_data(out)
    assert [r["name"] for r in data["runs"]] == ["haiku", "sonnet"]
    assert parsed.plots >= 2


def test_report_cli_rejects_a_directory_without_a_run(tmp_path: Path) -> None:
    result = _report_cli(str(tmp_path))
    assert result.returncode == 2
    assert "requests.jsonl not found" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    run = stepped_run()
    png = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--screenshot={png}",
            "--window-size=1400,2400", (run.directory / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert png.stat().st_size > 50_000  # a blank page is a few kB
