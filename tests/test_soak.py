"""Soak runs: rotated records every reader reads, a killed run's recent summary, flat memory per call.

Real runs: ``locust`` subprocesses against the embedded simulator, and the CLI's own feature
list installed in-process for the memory check. The figures of the spilled path are checked
against the in-memory ``SampleStore`` on the very records the run wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.measure import OK, CallRecord, Outcome
from harness.core.records_io import read_lines, read_records, record_files
from harness.core.slo import call_meets
from harness.core.stages import StageAnalysis
from harness.core.summary import SampleStore, distribution
from harness.runtime.retries import RetryPolicy, RetryStats

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--transport", "fast", "--simulator-args", "--ttft 0.01 --tps 2000 --seed 3"]


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", *FAST, *args]


def test_a_rotated_run_keeps_exact_figures_and_the_report_reads_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run(
        locust("-u", "8", "-r", "8", "-t", "5s", "--report-dir", str(out), "--rotate-records", "20KB"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = record_files(out)
    assert len(files) >= 3 and files[0].name == "requests-000001.jsonl.gz" and files[-1].name == "requests.jsonl"
    assert all(f.name.endswith(".gz") for f in files[:-1])  # every closed part compressed by the end
    assert not (out / ".samples").exists()  # the spilled samples are removed at the end

    records = list(read_records(out))
    summary = json.loads((out / "summary.json").read_text())
    assert "periodic" not in summary
    assert summary["overall"]["calls"] == len(records) > 50
    # The spilled path's summary is the in-memory one's on the same records, to the last bit.
    store = SampleStore(good=lambda r: call_meets(r, []))
    for record in records:
        store.add(record)
    again = store.summary(duration_s=summary["duration_s"])
    assert again["overall"] == summary["overall"]
    assert again["scenarios"] == summary["scenarios"]
    # The whole-run stage row (from the run's own summary) is the offline analysis's.
    offline = StageAnalysis.from_records(records).analyse()
    assert offline["stages"]["all"] == summary["stages"]["all"]

    report = subprocess.run(
        [sys.executable, "-m", "harness.report", str(out), "-o", str(tmp_path / "again.html")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert report.returncode == 0, report.stderr
    assert f"{len(records)} calls" in (tmp_path / "again.html").read_text()


def test_a_killed_run_leaves_a_recent_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        locust("-u", "4", "-r", "4", "-t", "120s", "--report-dir", str(out), "--summary-every", "1s"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        first: dict[str, Any] | None = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = out / "summary.json"
            document = json.loads(path.read_text()) if path.exists() else None
            if document is not None and first is None:
                first = document
            # Two rewrites seen: the summary is being kept up to date.
            if first is not None and document is not None and document["duration_s"] > first["duration_s"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no periodic summary.json was rewritten within 60 s")
        time.sleep(1.5)
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((out / "summary.json").read_text())
    periodic = summary["periodic"]
    assert periodic["final"] is False and periodic["every_s"] == 1.0
    # At most a second old, give or take a loaded machine's scheduling.
    assert killed_at - periodic["written_at"] < 6.0
    records = list(read_lines(out))
    assert 0 < summary["overall"]["calls"] <= len(records)
    assert summary["overall"]["ttft_s"]["p50"] is not None
    # What SIGKILL cannot clean: the spilled samples, removed by the next run in this directory.
    assert any((out / ".samples").glob("*.f64")) or summary["overall"]["calls"] < 8192


def test_retry_section_equals_the_in_memory_distribution() -> None:
    rng = np.random.default_rng(4)
    stats = RetryStats(RetryPolicy(retries=2))
    ends: list[float] = []
    for i in range(20_000):
        t, d = float(rng.uniform(0, 100)), float(rng.lognormal(-1, 1))
        if rng.random() < 0.9:
            stats.add(CallRecord(f"c{i}", "s", "m", True, OK, t_scheduled=t, t_start=t, t_end=t + d, completion_s=d))
            ends.append(d)
            continue
        stats.add(CallRecord(f"c{i}", "s", "m", True, Outcome.http(529), t_scheduled=t, t_end=t + d, completion_s=d))
        stats.add(
            CallRecord(f"r{i}", "s", "m", True, OK, t_end=t + d + 2, completion_s=1.0, attempt=2, retry_of=f"c{i}")
        )
        ends.append((t + d + 2) - t)
    assert stats.snapshot()["end_to_end_s"] == distribution(ends)
    stats.close()


def synthetic(first: int, n: int) -> list[CallRecord]:
    out = []
    for i in range(first, first + n):
        end = 1000.0 + i / 1000
        gaps = [0.01 + (i % 7) * 1e-4] * 50
        out.append(
            CallRecord(
                f"c{i}",
                "s",
                "m",
                True,
                OK if i % 100 else Outcome.http(429),
                ttft_s=0.2,
                first_text_s=0.2,
                completion_s=0.7,
                tpot_s=0.01,
                itl_s=gaps,
                input_tokens=200,
                output_tokens=51,
                t_scheduled=end - 0.7,
                t_start=end - 0.7,
                t_end=end,
            )
        )
    return out


def test_the_runs_listeners_hold_no_memory_per_call(tmp_path: Path) -> None:
    from locust.env import Environment

    from harness import plugin
    from harness.runtime.options import HarnessOptions
    from harness.runtime.state import attach

    env = Environment(user_classes=[], host="http://127.0.0.1:9")
    env.create_local_runner()
    harness = attach(env, HarnessOptions(report_dir=str(tmp_path)))
    for feature in plugin.FEATURES:
        harness.install(feature)
    events: Any = env.events
    events.test_start.fire(environment=env)
    fire = events.llm_request.fire
    for record in synthetic(0, 20_000):  # buffers filled, caches warm
        fire(record=record, environment=env)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(20_000, 60_000, 5000):
        for record in synthetic(start, 5000):
            fire(record=record, environment=env)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Kept in memory before: ~480 bytes a call (samples, the stage analysis's tuples, retries).
    # (The live window is bounded by its span and a sample budget: tests/test_window.py.)
    assert grown < 40_000 * 25, f"{grown / 40_000:.0f} bytes kept per call"
    events.test_stop.fire(environment=env)
    assert harness.last_summary is not None and harness.last_summary["overall"]["calls"] == 60_000
    events.quitting.fire(environment=env)
    assert not (tmp_path / ".samples").exists()
    assert os.path.getsize(tmp_path / "requests.jsonl") > 0


def test_a_bad_rotate_size_stops_the_run_before_any_load(tmp_path: Path) -> None:
    done = subprocess.run(
        locust("-t", "1s", "--report-dir", str(tmp_path), "--rotate-records", "12parsecs"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--rotate-records '12parsecs': give a size in bytes" in done.stderr
    assert not (tmp_path / "requests.jsonl").exists()


def test_spilled_files_left_open_are_removed_at_exit_and_none_are_made_without_a_spill() -> None:
    script = (
        "from harness.core.spill import SpillGroup\n"
        "spilled, quiet = SpillGroup(buffer_values=2), SpillGroup()\n"
        "spilled.column('s', 'ttft').extend([1.0, 2.0, 3.0])\n"
        "quiet.column('s', 'ttft').append(1.0)\n"
        "print(spilled.directory, spilled.directory.exists(), quiet.directory, quiet.directory.exists())\n"
        "import builtins; builtins.kept = (spilled, quiet)  # alive until the interpreter exits\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    spilled, spilled_existed, quiet, quiet_existed = done.stdout.split()
    assert spilled_existed == "True" and not Path(spilled).exists()
    assert quiet_existed == "False" and not Path(quiet).exists()
