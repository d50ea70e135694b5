"""Locust's distributed mode end to end: a real master and real workers on loopback.

Separate ``locust --master`` / ``--worker`` processes and ``--processes 2`` run against
one simulator. Each worker counts its own calls (tests/distributed_locustfile.py), so
the master's merged ``requests.jsonl`` is checked against what the workers really did.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.core.measure import CallRecord
from harness.core.summary import percentile
from harness.load.channel import decode_batch, encode_batch, worker_share
from harness.simulator import SimulatorProcess

from .locust_runs import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "tests" / "distributed_locustfile.py"


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    # Every call takes at least 0.3 s, longer than a worker's report interval (0.25 s).
    with SimulatorProcess(["--seed", "3", "--ttft", "0.3", "--tps", "400"]) as sim:
        yield str(sim.url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _own_master_port() -> list[str]:
    """``--processes``'s master on a free port (its forked workers connect to ``--master-port``).

    Locust's default 5557 may be held by another run on the machine (parallel test runs)."""
    port = str(_free_port())
    return ["--master-bind-port", port, "--master-port", port]


def _env(count_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_", "DIST_"))}
    env.update({"DIST_COUNT_DIR": str(count_dir), **extra})
    return env


def _locust(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _worker(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return _locust(["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)], env, log)


def _master_args(port: int, workers: int, out: Path, host: str, *extra: str) -> list[str]:
    return [
        "--master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        str(port),
        "--expect-workers",
        str(workers),
        "--headless",
        "--host",
        host,
        "--report-dir",
        str(out),
        "--json-file",
        str(out / "stats"),
        *extra,
    ]


def _finish(*procs: subprocess.Popen[bytes], timeout: float = 60) -> list[int | None]:
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes.append(None)
    return codes


def _wait_for_calls(count_dir: Path, n: int, pid: int | None = None, timeout: float = 60) -> None:
    pattern = f"calls-{pid}.txt" if pid else "calls-*.txt"
    deadline = time.monotonic() + timeout
    while sum(len(p.read_text().splitlines()) for p in count_dir.glob(pattern)) < n:
        assert time.monotonic() < deadline, "the workers made no calls"
        time.sleep(0.1)


def _own_counts(count_dir: Path) -> dict[str, list[str]]:
    """pid -> the call_ids that worker process says it finished."""
    return {
        path.stem.removeprefix("calls-"): [line.split()[0] for line in path.read_text().splitlines()]
        for path in count_dir.glob("calls-*.txt")
    }


def _pid(record: dict[str, Any]) -> str:
    return str(record["call_id"]).split("-")[0]


def _check_coherent(out: Path) -> list[dict[str, Any]]:
    """One set of artefacts whose figures agree: summary and Locust's stats against requests.jsonl."""
    records = read_jsonl(out / "requests.jsonl")
    assert len({(r["worker"], r["call_id"]) for r in records}) == len(records), "a record is duplicated"
    summary = json.loads((out / "summary.json").read_text())
    ok = [r for r in records if r["outcome"] == "ok"]
    finished = [r for r in records if r["outcome"] != "cancelled"]
    assert summary["overall"]["calls"] == len(records)
    assert summary["overall"]["ok"] == len(ok) > 0
    for metric in ("ttft_s", "completion_s"):
        values = sorted(r[metric] for r in ok)
        figures = summary["overall"][metric]
        assert figures["count"] == len(values)
        for q in (50, 90, 95, 99):
            assert figures[f"p{q}"] == percentile(values, q), (metric, q)
        assert figures["max"] == values[-1]
    itl = sorted(x for r in ok for x in r["itl_s"])
    assert summary["overall"]["itl_s"]["p99"] == percentile(itl, 99)
    stats = {(s["method"], s["name"]): s for s in json.loads((out / "stats.json").read_text())}
    completion = sum(s["num_requests"] for (method, _), s in stats.items() if method == "COMPLETION")
    assert completion == len(finished), "Locust's COMPLETION count differs from the finished records"
    per_worker = summary["workers"]["per_worker"]
    assert sum(w["calls"] for w in per_worker.values()) == len(records)
    for worker, figures in per_worker.items():
        assert figures["calls"] == sum(r["worker"] == worker for r in records)
    return records


def _check_against_own_counts(records: list[dict[str, Any]], count_dir: Path) -> None:
    """Every worker's calls reached the master exactly once, and nothing else did."""
    own = _own_counts(count_dir)
    by_pid: dict[str, list[str]] = defaultdict(list)
    for r in records:
        by_pid[_pid(r)].append(r["call_id"])
    assert sorted(by_pid) == sorted(own)
    for pid, call_ids in own.items():
        assert Counter(by_pid[pid]) == Counter(call_ids), f"worker pid {pid}"


def test_separate_workers_one_joining_late(tmp_path: Path, sim_url: str) -> None:
    out, counts = tmp_path / "out", tmp_path / "counts"
    counts.mkdir()
    port = _free_port()
    env = _env(counts)
    args = _master_args(port, 1, out, sim_url, "-u", "6", "-r", "20", "-t", "10s", "--loglevel", "DEBUG")
    master = _locust(args, env, tmp_path / "m.log")
    first = _worker(port, env, tmp_path / "w1.log")
    _wait_for_calls(counts, 5)  # the run is under way when the second worker connects
    late = _worker(port, env, tmp_path / "w2.log")
    codes = _finish(master, first, late)
    log = (tmp_path / "m.log").read_text()
    assert codes[0] == 0, log[-3000:]

    records = _check_coherent(out)
    _check_against_own_counts(records, counts)
    workers = Counter(r["worker"] for r in records)
    assert len(workers) == 2 and min(workers.values()) > 0, workers  # the late worker took part
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"]["count"] == 2 and summary["workers"]["lost_calls"] == 0
    assert all(w["status"] == "finished" for w in summary["workers"]["per_worker"].values())


def test_a_killed_worker_loses_only_its_calls_in_flight(tmp_path: Path, sim_url: str) -> None:
    out, counts = tmp_path / "out", tmp_path / "counts"
    counts.mkdir()
    port = _free_port()
    env = _env(counts)
    master = _locust(_master_args(port, 2, out, sim_url, "-u", "6", "-r", "20", "-t", "10s"), env, tmp_path / "m.log")
    keep = _worker(port, env, tmp_path / "w1.log")
    doomed = _worker(port, env, tmp_path / "w2.log")
    _wait_for_calls(counts, 5, doomed.pid)
    os.kill(doomed.pid, signal.SIGKILL)
    codes = _finish(master, keep, doomed)
    log = (tmp_path / "m.log").read_text()
    assert codes[0] is not None, log[-3000:]

    records = _check_lost_worker(out, counts, str(doomed.pid), log)
    kept = [r for r in records if _pid(r) == str(keep.pid)]
    assert Counter(r["call_id"] for r in kept) == Counter(_own_counts(counts)[str(keep.pid)])


def _check_lost_worker(out: Path, counts: Path, pid: str, log: str) -> list[dict[str, Any]]:
    records = read_jsonl(out / "requests.jsonl")
    assert len({(r["worker"], r["call_id"]) for r in records}) == len(records)
    received = {r["call_id"] for r in records if _pid(r) == pid}
    made = set(_own_counts(counts)[pid])
    assert received and received <= made, "the master has calls the killed worker never finished"
    (worker,) = {r["worker"] for r in records if _pid(r) == pid}
    lines = [line for line in log.splitlines() if f"Worker {worker}" in line and "stopped reporting" in line]
    assert len(lines) == 1, log[-3000:]
    match = re.search(r"(\d+) calls in flight at its last report", lines[0])
    assert match is not None
    in_flight = int(match.group(1))
    # Calls it finished after its last report were in flight at that report (each call
    # outlasts the report interval), so they are within the count the master gives.
    assert 1 <= in_flight <= 6
    assert len(made - received) <= in_flight
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workers"]["per_worker"][worker]["status"] == "lost"
    assert summary["workers"]["lost_calls"] == in_flight
    return records


def test_processes_2_with_a_stepped_shape(tmp_path: Path, sim_url: str) -> None:
    out, counts = tmp_path / "out", tmp_path / "counts"
    counts.mkdir()
    args = ["--processes", "2", *_own_master_port(), "--headless", "--host", sim_url, "--report-dir", str(out)]
    proc = _locust([*args, "--json-file", str(out / "stats")], _env(counts, DIST_SHAPE="steps"), tmp_path / "m.log")
    (code,) = _finish(proc)
    log = (tmp_path / "m.log").read_text()
    assert code == 0, log[-3000:]

    records = _check_coherent(out)
    _check_against_own_counts(records, counts)
    assert len({r["worker"] for r in records}) == 2
    assert {r["stage"] for r in records} == {"s1", "s2"}
    for worker in {r["worker"] for r in records}:
        stages = [r["stage"] for r in sorted(records, key=lambda r: r["timestamp"]) if r["worker"] == worker]
        assert stages == sorted(stages), "a worker went back to an earlier stage"
    users = {s: {(r["worker"], r["user_id"]) for r in records if r["stage"] == s} for s in ("s1", "s2")}
    assert len(users["s1"]) == 2 and len(users["s2"]) == 4, users


def test_processes_2_split_an_open_loop_rate(tmp_path: Path, sim_url: str) -> None:
    out, counts = tmp_path / "out", tmp_path / "counts"
    counts.mkdir()
    args = ["--processes", "2", *_own_master_port(), "--headless", "-u", "4", "-r", "10", "-t", "7s", "--host", sim_url]
    proc = _locust([*args, "--report-dir", str(out)], _env(counts, DIST_RATE="4"), tmp_path / "m.log")
    (code,) = _finish(proc)
    assert code == 0, (tmp_path / "m.log").read_text()[-3000:]

    records = read_jsonl(out / "requests.jsonl")
    shares = [float(p.read_text()) for p in counts.glob("share-*.txt")]
    assert sorted(shares) == [2.0, 2.0], shares  # each worker's part of the 4 calls/s asked
    assert len({r["worker"] for r in records}) == 2


def test_worker_share_adds_up_to_the_total() -> None:
    for count in (1, 2, 3, 7):
        shares = [worker_share(10.0, i, count) for i in range(count)]
        assert sum(shares) == pytest.approx(10.0, abs=1e-12)
        assert max(shares) - min(shares) < 1e-9
    with pytest.raises(ValueError):
        worker_share(10.0, 2, 2)


def test_a_batch_round_trips_every_field() -> None:
    record = CallRecord(call_id="7-1", scenario="S", model="m", stream=True, outcome="ok", itl_s=[0.01, 0.02])
    record.ttft_s, record.output_tokens, record.stage = 0.3, 12, "s1"
    batch = encode_batch([record, record])
    assert batch["fields"].count("itl_s") == 1 and len(batch["rows"]) == 2
    assert decode_batch(batch) == [record, record]


def test_deploy_files_are_well_formed() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"master", "worker"} <= set(services)
    for name in ("master", "worker"):
        assert services[name]["image"] == "locustio/locust:2.47.0" or "build" in services[name]
    assert "--master" in " ".join(services["master"]["command"])
    assert "--worker" in " ".join(services["worker"]["command"])
    assert "master" in " ".join(services["worker"]["command"])

    docs = [
        doc
        for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    kinds = Counter(doc["kind"] for doc in docs)
    assert kinds["Deployment"] == 2 and kinds["Service"] >= 1 and kinds["ConfigMap"] >= 1, kinds
    text = "\n".join(p.read_text() for p in (ROOT / "deploy").rglob("*") if p.is_file())
    assert "secretKeyRef" in text and "ANTHROPIC_API_KEY" in text
    assert not re.search(r"sk-ant-[A-Za-z0-9]", text), "a literal key in the deploy files"
    for doc in docs:
        if doc["kind"] == "Deployment":
            containers = doc["spec"]["template"]["spec"]["containers"]
            assert (
                doc["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
            )
            assert all(c["image"].startswith("locustio/locust:2.47.0") for c in containers)
