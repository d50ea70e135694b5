"""``python -m harness.study`` as a user runs it: a subprocess against the embedded simulator.

A known speed difference is found with an interval that holds it; the arms run in
interleaved blocks, visible in the records' times; Ctrl-C, SIGTERM and ``--max-cost`` stop
a study with every artefact written; ``python -m harness.report compare`` states the same
intervals for two finished runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

import pytest

from harness.core.exitcodes import EXIT_CONFIG, EXIT_COST_CAP
from harness.core.schedule import blocks

from .locust_runs import read_jsonl
from .study_locustfile import CONFIG, SHIFT_S

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = str(ROOT / "tests" / "study_locustfile.py")


def _env() -> dict[str, str]:
    # Run from a directory of the test's own (the default --report-dir lands there), with this checkout importable.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "simulator.json"
    path.write_text(json.dumps({**CONFIG, "seed": 11}))
    return path


def study(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.study", *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Fast against Slow (TTFT SHIFT_S later), 2 users, 40 measured calls per arm in 4 rounds."""
    tmp = tmp_path_factory.mktemp("shifted")
    out = tmp / "out"
    result = study(
        tmp,
        *("-f", LOCUSTFILE, "Fast", "Slow", "--users", "2", "--calls", "40", "--block-calls", "5"),
        *("--seed", "3", "--report-dir", str(out), "--simulator-args", f"--config {_config(tmp)}"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _find(doc: dict[str, Any], metric: str, stat: str = "p50") -> dict[str, Any]:
    (entry,) = [c for c in doc["comparisons"] if (c["metric"], c["stat"]) == (metric, stat)]
    return entry


def test_a_known_difference_lies_inside_its_interval_and_zero_outside(shifted: tuple[Path, Any]) -> None:
    out, result = shifted
    doc = json.loads((out / "study.json").read_text())
    ttft = _find(doc, "ttft_s")
    low, high = ttft["ci95"]["difference"]
    assert low <= SHIFT_S <= high and low > 0, (low, high)
    assert ttft["verdict"] == "higher" and (ttft["a"]["arm"], ttft["b"]["arm"]) == ("Fast", "Slow")
    assert ttft["a"]["calls"] == ttft["b"]["calls"] == 40
    # The table states it as the page does.
    assert "Slow vs Fast" in result.stdout and ttft["sentence"].startswith("Slow's TTFT p50 is ")
    assert doc["study"]["rounds"] == 4 and doc["study"]["stopped"] == "40 measured calls per arm"
    assert doc["bootstrap"] == "calls"  # 4 rounds are too few to resample as blocks
    page = (out / "study.html").read_text()
    assert ttft["sentence"].replace("'", "&#x27;") in page


def test_each_call_carries_its_arm_round_and_block_and_warmups_are_marked(shifted: tuple[Path, Any]) -> None:
    out, _ = shifted
    lines = read_jsonl(out / "requests.jsonl")
    doc = json.loads((out / "study.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["calls"] == len(lines) == 2 * 4 * 2 * (2 + 5)
    assert {line["arm"] for line in lines} == {"Fast", "Slow"}
    assert all(line["arm"] == line["scenario"] for line in lines)
    by_block = {k: list(g) for k, g in groupby(sorted(lines, key=lambda r: r["block"]), key=lambda r: r["block"])}
    expected = list(blocks(["Fast", "Slow"], seed=3, count=4))
    assert [(b.index, b.round, b.arm) for b in expected] == [
        (i, calls[0]["round"], calls[0]["arm"]) for i, calls in sorted(by_block.items())
    ]
    for calls in by_block.values():
        assert len({(c["arm"], c["round"]) for c in calls}) == 1
        warmup = [c for c in calls if c["warmup"]]
        assert len(warmup) == 2 and len(calls) == 7  # each user's first call, then the block's 5
        first_end = min(c["t_end"] for c in calls)
        assert all(c["t_start"] < first_end for c in warmup)
        assert all(c["t_start"] >= first_end for c in calls if not c["warmup"])
    assert [b["index"] for b in doc["schedule"]] == sorted(by_block)


def test_the_arms_alternate_in_blocks_that_never_overlap(shifted: tuple[Path, Any]) -> None:
    out, _ = shifted
    lines = read_jsonl(out / "requests.jsonl")
    spans = []
    for index in sorted({line["block"] for line in lines}):
        calls = [line for line in lines if line["block"] == index]
        spans.append((calls[0]["arm"], min(c["t_start"] - c["queue_s"] for c in calls), max(c["t_end"] for c in calls)))
    for (_, _, end), (_, start, _) in pairwise(spans):
        assert end <= start  # a block starts once the previous one has drained: one arm at a time
    arms = [arm for arm, _, _ in spans]
    runs = [len(list(g)) for _, g in groupby(arms)]
    assert max(runs) <= 2 and len(runs) >= len(arms) // 2  # A B B A ...: never long stretches of one arm
    # Both arms run in the first and in the last quarter of the study: drift hits both.
    quarter = len(spans) // 4
    assert set(arms[:quarter]) == set(arms[-quarter:]) == {"Fast", "Slow"}


def test_report_compare_prints_and_plots_the_same_intervals(shifted: tuple[Path, Any], tmp_path: Path) -> None:
    out, _ = shifted
    lines = read_jsonl(out / "requests.jsonl")
    for arm in ("Fast", "Slow"):
        (tmp_path / arm).mkdir()
        text = "".join(json.dumps(line) + "\n" for line in lines if line["arm"] == arm)
        (tmp_path / arm / "requests.jsonl").write_text(text)
    page = tmp_path / "compare.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.report",
            "compare",
            str(tmp_path / "Fast"),
            str(tmp_path / "Slow"),
            "-o",
            str(page),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Slow vs Fast" in result.stdout and result.stdout.strip().endswith(str(page))
    html = page.read_text()
    data = json.loads(html.split('id="report-data">')[1].split("</script>")[0].replace("<\\/", "</"))
    ttft = _find(data["intervals"], "ttft_s")
    assert ttft["verdict"] == "higher" and ttft["ci95"]["difference"][0] > 0
    assert ttft["b"]["value"] == _find(json.loads((out / "study.json").read_text()), "ttft_s")["b"]["value"]
    assert html.count("Plotly.newPlot") >= 3  # the intervals' chart besides the runs' own


class StudyProcess:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out = tmp_path / "out"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.study", *args, "--report-dir", str(self.out)],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def wait_for_calls(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        path = self.out / "requests.jsonl"
        while time.monotonic() < deadline and self.proc.poll() is None:
            if path.exists() and len(path.read_text().splitlines()) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {n} calls written (exit {self.proc.poll()})")

    def finish(self) -> tuple[int, str, str]:
        stdout, stderr = self.proc.communicate(timeout=60)
        return self.proc.returncode, stdout, stderr


def _artefacts(out: Path) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    text = (out / "requests.jsonl").read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    doc = json.loads((out / "study.json").read_text())
    assert (out / "study.html").read_text().rstrip().endswith("</html>")
    assert summary["overall"]["calls"] == len(lines)
    return lines, summary, doc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_study_writes_every_artefact(tmp_path: Path, signum: int) -> None:
    # Calls of ~0.3 s (8 tokens at 25 tokens/s): the signal finds calls in flight.
    run = StudyProcess(
        tmp_path,
        *("-f", LOCUSTFILE, "SameA", "SameB", "--users", "3", "--calls", "100000"),
        *("--simulator-args", f"--config {_config(tmp_path)} --tps 25"),
    )
    run.wait_for_calls(20)
    run.proc.send_signal(signum)
    code, stdout, stderr = run.finish()
    assert code == 128 + signum, stderr[-3000:]
    lines, _summary, doc = _artefacts(run.out)
    assert doc["study"]["stopped"] == "interrupted" and doc["study"]["interrupted"] is True
    assert doc["study"]["measured_calls"]["SameA"] + doc["study"]["measured_calls"]["SameB"] == sum(
        not line["warmup"] for line in lines
    )
    outcomes = {line["outcome"] for line in lines}
    assert outcomes <= {"ok", "cancelled"} and "cancelled" in outcomes  # the calls in flight, not lost
    assert sum(a["errors"].get("cancelled", 0) for a in doc["arms"].values()) == sum(
        line["outcome"] == "cancelled" and not line["warmup"] for line in lines
    )
    assert "LLM lever study" in stdout and "stopped: interrupted" in stdout
    assert "Traceback" not in stderr


def test_max_cost_stops_the_study_and_the_estimate_comes_first(tmp_path: Path) -> None:
    run = StudyProcess(
        tmp_path,
        *("ControlA", "ControlB", "--users", "2", "--calls", "100000", "--max-cost", "0.004"),
        *("-f", str(ROOT / "locustfile.py"), "--simulator-args", "--ttft 0.02 --tps 400"),
    )
    code, stdout, stderr = run.finish()
    assert code == EXIT_COST_CAP, stderr[-3000:]
    assert stdout.index("cost estimate per arm") < stdout.index("LLM lever study")
    assert "ControlA  ~$0.00" in stdout and "--max-cost $0.0040 stops the study" in stdout
    lines, summary, doc = _artefacts(run.out)
    assert doc["study"]["stopped"] == "--max-cost reached" and summary["cost"]["stopped_by_cap"] is True
    assert 0.004 <= summary["cost"]["total_usd"] < 0.01
    assert len(lines) < 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name two or more scenario classes"),
        (("Fast",), "two or more arms"),
        (("Fast", "Nope"), "Nope is not a scenario class of"),
        (("Fast", "Slow", "--levers"), "not both"),
        (("--levers", "model,speed"), "unknown lever 'speed'"),
        (("Fast", "Slow", "--precision", "five"), "--precision 'five'"),
        (("Fast", "Slow", "--block-calls", "0"), "--block-calls must be a positive number"),
        (("Fast", "Slow", "--host", "localhost:1"), "is not an http(s) URL"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path, args: Sequence[str], message: str) -> None:
    result = study(tmp_path, "-f", LOCUSTFILE, *args, timeout=60)
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "study").exists()
