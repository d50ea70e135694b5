"""An open-loop rate across Locust workers: ``--processes 2 --arrival constant --rate 6``.

The master runs the stages and no arrivals; each worker arrives at half the rate with its
own seed, so the master's ``requests.jsonl`` holds the asked total, about half from each
worker, each worker on its own constant schedule of 2/6 s. With ``--arrival poisson`` and
two stages, both workers follow the stage change and draw their own random gaps.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from collections import defaultdict
from pathlib import Path

from harness.simulator import SimulatorProcess

from .locust_runs import free_port, read_jsonl
from .test_cli import locust_to_log

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "tests" / "openloop_locustfile.py"
RATE, DURATION_S, WARMUP_S = 6.0, 4.0, 1.0


def run_two_processes(tmp_path: Path, arrival: list[str]) -> Path:
    """``locust --processes 2`` with these arrival options against the simulator; the report dir."""
    out, log = tmp_path / "out", tmp_path / "m.log"
    with SimulatorProcess(["--seed", "5", "--ttft", "0.02", "--tps", "2000"]) as sim:
        args = ["--headless", "--processes", "2", *arrival]
        # Its own master port: another run on the machine may hold Locust's default 5557.
        port = str(free_port())
        args += ["--master-bind-port", port, "--master-port", port]
        args += ["--stage-duration", f"{DURATION_S:g}s", "--warmup", f"{WARMUP_S:g}s"]
        args += ["--host", str(sim.url), "--report-dir", str(out)]
        code = locust_to_log("-f", str(LOCUSTFILE), *args, log=log, timeout=60)
    assert code == 0, log.read_text()[-3000:]
    return out


def test_processes_2_split_an_open_loop_rate_to_the_asked_total(tmp_path: Path) -> None:
    out = run_two_processes(tmp_path, ["--arrival", "constant", "--rate", f"{RATE:g}"])
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


def test_processes_2_follow_poisson_stages_each_on_its_own_random_schedule(tmp_path: Path) -> None:
    rates = (10.0, 30.0)
    out = run_two_processes(tmp_path, ["--arrival", "poisson", "--rate", ",".join(f"{r:g}" for r in rates)])
    records = [r for r in read_jsonl(out / "requests.jsonl") if not r["warmup"]]
    rows = {row["stage"]: row for row in csv.DictReader((out / "stages.csv").open())}
    assert sorted(rows) == ["r10", "r30"], sorted(rows)
    schedules: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rate in rates:
        stage = f"r{rate:g}"
        calls = [r for r in records if r["stage"] == stage]
        asked = rate * (DURATION_S - WARMUP_S)
        # Poisson counts: 30 and 90 asked, so 0.5-1.5x is more than four standard deviations.
        assert 0.5 * asked <= len(calls) <= 1.5 * asked, (stage, len(calls), asked)
        assert float(rows[stage]["offered"]) == rate
        for r in calls:
            schedules[r["worker"], stage].append(r["t_scheduled"])
    assert len(schedules) == 4, sorted(schedules)  # both workers in both stages
    gaps = {key: [b - a for a, b in itertools.pairwise(sorted(times))] for key, times in schedules.items()}
    for key, stage_gaps in gaps.items():
        # Poisson gaps vary (coefficient of variation near 1); a constant schedule's would not.
        assert statistics.pstdev(stage_gaps) > 0.4 * statistics.fmean(stage_gaps), key
    # Each worker draws its own gaps: neither schedule is the other's.
    (a, b) = sorted(worker for worker, stage in gaps if stage == "r30")
    assert [round(g, 4) for g in gaps[a, "r30"][:10]] != [round(g, 4) for g in gaps[b, "r30"][:10]]
