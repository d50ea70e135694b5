"""An open-loop rate across Locust workers: ``--processes 2 --arrival constant --rate 6``.

The master runs the stages and no arrivals; each worker arrives at half the rate with its
own seed, so the master's ``requests.jsonl`` holds the asked total, about half from each
worker, each worker on its own constant schedule of 2/6 s.
"""

from __future__ import annotations

import csv
import itertools
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from harness.simulator import SimulatorProcess

from .locust_runs import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "tests" / "openloop_locustfile.py"
RATE, DURATION_S, WARMUP_S = 6.0, 4.0, 1.0


def test_processes_2_split_an_open_loop_rate_to_the_asked_total(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "m.log"
    with SimulatorProcess(["--seed", "5", "--ttft", "0.02", "--tps", "2000"]) as sim, open(log, "wb") as sink:
        args = ["--headless", "--processes", "2", "--arrival", "constant", "--rate", f"{RATE:g}"]
        args += ["--stage-duration", f"{DURATION_S:g}s", "--warmup", f"{WARMUP_S:g}s"]
        args += ["--host", str(sim.url), "--report-dir", str(out)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
    assert code == 0, log.read_text()[-3000:]

    records = read_jsonl(out / "requests.jsonl")
    assert {r["stage"] for r in records} == {"r6"}
    measured = [r for r in records if not r["warmup"]]
    by_worker: dict[str, list[dict]] = defaultdict(list)
    for r in measured:
        by_worker[r["worker"]].append(r)
    asked = RATE * (DURATION_S - WARMUP_S)
    assert len(by_worker) == 2, sorted(by_worker)
    assert 0.8 * asked <= len(measured) <= 1.2 * asked, (len(measured), asked)
    for worker, calls in by_worker.items():
        assert 0.35 * len(measured) <= len(calls) <= 0.65 * len(measured), (worker, len(calls), len(measured))
        scheduled = sorted(r["t_scheduled"] for r in calls)
        gap = statistics.median(b - a for a, b in itertools.pairwise(scheduled))
        assert abs(gap - 2 / RATE) < 0.1 * (2 / RATE), (worker, gap)

    (row,) = list(csv.DictReader((out / "stages.csv").open()))
    assert row["stage"] == "r6" and float(row["offered"]) == RATE
    # The workers' arrivals reach the master's stage table.
    assert 0.8 * asked <= int(row["arrivals"]) <= 1.2 * asked, row["arrivals"]
    assert int(row["dropped"]) == 0
