"""Load shapes: option checks, a sweep that stops at its limit, and the CLI run a user makes."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.core.options import from_namespace
from harness.core.units import parse_duration
from harness.load.shapes import ShapeOptions

from .test_cli import ROOT, locust
from .test_report import _report_data
from .test_stages_helpers import shaped_run


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("2.5s", 2.5), ("500ms", 0.5), ("1m30s", 90.0), ("1h", 3600.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--x") == seconds


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stage_duration": "soon"}, "is not a duration"),
        ({"stage_duration": "2s", "warmup": "2s"}, "must be shorter than --stage-duration"),
        ({"stages": "1,2,2"}, "repeats a load"),
        ({"stages": "1,-2"}, "positive numbers"),
        ({"load_shape": "ramp"}, "is unknown"),
        ({"sweep_max_error_rate": "lots"}, "fraction"),
    ],
)
def test_bad_options_are_one_clear_config_error(values: dict[str, str], message: str) -> None:
    ns = Namespace(**{"load_shape": "steps", **values})
    with pytest.raises(ConfigError, match=message):
        from_namespace(ShapeOptions, ns)


def test_sweep_doubles_until_the_ttft_limit_breaks_then_stops(tmp_path: Path) -> None:
    # Capacity is 2 calls in flight (test_stages_helpers): TTFT jumps by a call's length at 4 users.
    shape = ShapeOptions(load_shape="sweep", stages=(1,), stage_duration=2.0, warmup=0.5, sweep_ttft_p95_ms=120)
    run = shaped_run(tmp_path, shape)
    la = run.summary["load_analysis"]
    assert la["order"][:2] == ["u1", "u2"]
    assert 3 <= len(la["order"]) <= 4, la
    last = run.summary["stages"][la["order"][-1]]
    assert last["overall"]["ttft_s"]["p95"] > 0.120
    assert all(run.summary["stages"][label]["overall"]["ttft_s"]["p95"] <= 0.120 for label in la["order"][:-1])
    assert "ttft_p95<=120ms" in la["stop_reason"]
    assert la["criteria"] == ["ttft_p95<=120ms"]
    assert la["max_sustainable"]["stage"] == la["order"][-2]


def test_cli_stepped_run_prints_the_table_knee_and_max_sustainable_load(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = locust(
        "-f",
        str(ROOT / "locustfile.py"),
        "--headless",
        "--load-shape",
        "steps",
        "--stages",
        "1,2,4",
        "--stage-duration",
        "2s",
        "--warmup",
        "0.5s",
        "--max-tokens",
        "20",
        "--report-dir",
        str(out),
        "--simulator-args",
        "--seed 3 --ttft 0.01 --tps 100 --max-batch 2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr
    table = log[log.index("Per-stage results") :]
    assert all(f"\nu{n} " in table for n in (1, 2, 4)), table
    assert "\nKnee: " in table and "\nMax sustainable load: " in table
    assert "Traceback" not in log
    for name in ("requests.jsonl", "summary.json", "stages.csv", "report.html"):
        assert (out / name).stat().st_size > 0, name
    # The report carries the run's generator verdict and plots each second's lag and CPU.
    generator = json.loads((out / "summary.json").read_text())["generator"]
    shown = _report_data(out / "report.html")["generator"]
    assert shown["verdict"] == generator["verdict"] and shown["reasons"] == generator["reasons"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "event-loop lag, worst in each second (ms)" in page
    assert json.dumps(generator["processes"]["local"]["series"]["cpu_percent"][0]) in page


def test_cli_bad_stage_option_stops_before_load_with_one_line(tmp_path: Path) -> None:
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "--load-shape", "steps", "--stage-duration", "1s",
        "--warmup", "5s", "--host", "http://127.0.0.1:9",
    )  # fmt: skip
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("locust: error:")]
    assert errors == ["locust: error: --warmup (5s) must be shorter than --stage-duration (1s)"], result.stderr
    assert "Traceback" not in result.stderr
