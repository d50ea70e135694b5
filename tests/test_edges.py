"""Every figure true from a run's first call to its last: run length, the stop, bursts.

Each test runs the ``locust`` CLI as a user does, against a loopback server that tells
its own send times (the simulator's ``--trace``, or the scripted server's held streams),
and compares the harness's figures with that ground truth (records join by request-id;
CLOCK_MONOTONIC is one clock for every process of a host):

* ``-t`` is the run's length whatever the start-up costs (issue 19, defect 1);
* calls in flight when the run stops are ``cancelled``: never ``ok`` with the stop's delay
  in their TTFT (defect 2), never a failure that fails the run (defect 4);
* when many calls end at once, their bookkeeping does not delay other calls' stamps (defect 3);
* the health verdict's first-token figure does not under-read (defect 5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.simulator.launcher import SimulatorProcess

from .locust_runs import read_jsonl
from .test_cli import ROOT

TTFT_TOLERANCE_S = 0.005  # the targets: no ok call's TTFT more than 5 ms above the truth,
COMPLETION_TOLERANCE_S = 0.010  # nor its completion more than 10 ms
RUN_TIME_TOLERANCE_S = 0.1


def start_locust(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # the locustfile is in tmp
    return subprocess.Popen(
        [sys.executable, "-m", "locust", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def simulator_config(ttft_s: float, tokens: int, gap_s: float) -> dict[str, Any]:
    """Every call alike: the first delta ``ttft_s`` after admission, then one every ``gap_s``."""
    return {
        "all_models": {
            "base_delay_s": ttft_s - gap_s,  # the first delta follows the base delay by one step
            "base_delay_jitter": 0.0,
            "prefill_tokens_per_s": 1e12,
            "decode_tokens_per_s": 1.0 / gap_s,
            "batch_slowdown": 0.0,
            "max_batch": 100_000,
            "step_jitter": 0.0,
            "output_tokens_median": tokens,
            "output_tokens_sigma": 0.0,
            "output_tokens_min": tokens,
            "output_tokens_max": tokens,
        }
    }


class Traced:
    """A simulator with a ground-truth trace."""

    def __init__(self, url: str, trace: Path) -> None:
        self.url, self.trace = url, trace

    def truth(self) -> dict[str, dict[str, Any]]:
        rows = (json.loads(line) for line in self.trace.read_text().splitlines() if line.strip())
        return {row["request_id"]: row for row in rows}


def traced_simulator(tmp: Path, config: dict[str, Any]) -> Iterator[Traced]:
    (tmp / "sim.json").write_text(json.dumps(config))
    with SimulatorProcess(["--config", str(tmp / "sim.json"), "--trace", str(tmp / "trace.jsonl")]) as sim:
        assert sim.url is not None
        yield Traced(sim.url, tmp / "trace.jsonl")


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """300 ms to the first token, then 4 more 20 ms apart: short runs still finish calls."""
    yield from traced_simulator(tmp_path_factory.mktemp("slow"), simulator_config(0.3, 5, 0.02))


@pytest.fixture(scope="module")
def lockstep_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    """30 ms to the first token, then 4 more 20 ms apart, no jitter: users spawned together stay in step."""
    yield from traced_simulator(tmp_path_factory.mktemp("lockstep"), simulator_config(0.03, 5, 0.02))


def scenario(tmp: Path, body: str, *, model: str = "claude-haiku-4-5", max_tokens: int = 5) -> Path:
    path = tmp / "edges_locustfile.py"
    path.write_text(
        "import time\n"
        "from gevent import monkey\n"
        "from locust import constant, events\n"
        "from harness import AnthropicUser\n\n"
        "blocking_sleep = monkey.get_original('time', 'sleep')\n\n"
        "class Edge(AnthropicUser):\n"
        f"    model = {model!r}\n"
        f"    max_tokens = {max_tokens}\n"
        "    prompt = 'hi'\n"
        "    wait_time = constant(0)\n\n" + body
    )
    return path


def errors(records: list[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> list[tuple[float, float]]:
    """(TTFT error, completion error) of every ok call, against the server's send times."""
    out = []
    for record in records:
        if record["outcome"] == "ok":
            server = truth[record["request_id"]]
            out.append((record["t_first_token"] - server["t_first_delta"], record["t_end"] - server["t_end"]))
    return out


# -- defect 1: -t cut short by start-up work -------------------------------------------------


# A locustfile whose start-up blocks the event loop, as importing the SDK and building its client
# does for a second or more on a busy machine (and any locustfile's own init work may).
SLOW_START = """
@events.init.add_listener
def slow_start_up(**_):
    blocking_sleep(1.5)
"""


def test_run_time_is_the_run_length_whatever_the_start_up_costs(slow_server: Traced, tmp_path: Path) -> None:
    lf = scenario(tmp_path, SLOW_START)
    runs = {
        name: start_locust(
            *f"-f {lf} --headless -u 2 -r 2 -t 3s --host {slow_server.url} {extra} --report-dir {name}".split(),
            cwd=tmp_path,
        )
        for name, extra in {
            "sdk": "--transport sdk",
            "fast": "--transport fast",
            "processes": "--transport fast --processes 1",
        }.items()
    }
    for name, process in runs.items():
        code, stderr = finish(process)
        assert code == 0, (name, stderr[-3000:])
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert abs(summary["duration_s"] - 3.0) <= RUN_TIME_TOLERANCE_S, (name, summary["duration_s"])
        assert summary["overall"]["ok"] >= 4, name  # 2 users, ~0.4 s a call: the run did run


# -- defects 2 and 4: calls in flight at the stop ---------------------------------------------


# Every call is held open by the server until the run stops. Locust's stop() stalls the event loop
# (~0.2 s) before it kills the users; this listener makes that stall deterministic: during it the
# server sends the held streams' tokens (``held``) or cuts their connections (``held-cut``), so
# when the loop resumes each call has bytes, or the end of its connection, waiting in its socket.
HELD = """
import _socket

class Cut(Edge):
    model = 'held-cut_{key}'

Edge.model = 'held_{key}'

@events.test_stopping.add_listener
def release_during_the_stall(**_):
    # A plain blocking socket: the event loop must not run until every held stream is written.
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.connect(({host!r}, {port}))
    sock.sendall(b'POST /release/{key} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n')
    while sock.recv(4096):
        pass
    sock.close()
"""


@pytest.mark.parametrize("transport", ["sdk", "fast"])
def test_calls_in_flight_at_the_stop_are_cancelled_never_ok_late_or_failed(
    scripted_url: str, tmp_path: Path, transport: str
) -> None:
    key = uuid.uuid4().hex[:8]
    host, port = scripted_url.removeprefix("http://").split(":")
    lf = scenario(tmp_path, HELD.format(key=key, host=host, port=int(port)))
    code, stderr = finish(
        start_locust(
            *f"-f {lf} --headless -u 20 -r 20 -t 2s --host {scripted_url} --transport {transport}".split(),
            *("--report-dir", "out"),
            cwd=tmp_path,
        )
    )
    with urllib.request.urlopen(f"{scripted_url}/trace/{key}", timeout=10) as response:
        truth = [json.loads(line) for line in response.read().decode().splitlines()]
    records = read_jsonl(tmp_path / "out" / "requests.jsonl")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())

    outcomes = {r["outcome"] for r in records}
    assert outcomes == {"cancelled"}, [(r["outcome"], r["error_message"], r["ttft_s"]) for r in records]
    # The stall did what Locust's does: every held call had its bytes (or its cut) waiting.
    assert len(truth) == len(records) == 20, (len(truth), len(records), stderr[-2000:])
    assert summary["overall"]["failed"] == 0 and summary["overall"]["cancelled"] == 20
    assert code == 0, stderr[-3000:]  # a clean stop fails no pipeline


# -- defect 3: bursts of calls that end and start together --------------------------------------


# Per-call bookkeeping a locustfile may add (a listener that writes each record somewhere): 2 ms a call.
SLOW_LISTENER = """
@events.init.add_listener
def add_bookkeeping(environment, **_):
    def bookkeeping(record, **_):
        until = time.perf_counter() + 0.002
        while time.perf_counter() < until:
            pass
    environment.events.llm_request.add_listener(bookkeeping)
"""


def test_a_burst_of_calls_ending_together_delays_no_other_calls_stamps(lockstep_server: Traced, tmp_path: Path) -> None:
    # 40 users spawned in one instant against a server without jitter end their calls together,
    # 30 ms before the first tokens of their next calls arrive: 80 ms of bookkeeping at each end.
    lf = scenario(tmp_path, SLOW_LISTENER)
    code, stderr = finish(
        start_locust(
            *f"-f {lf} --headless -u 40 -r 40 -t 3s --host {lockstep_server.url} --transport fast".split(),
            *("--report-dir", "out"),
            cwd=tmp_path,
        )
    )
    assert code == 0, stderr[-3000:]
    measured = errors(read_jsonl(tmp_path / "out" / "requests.jsonl"), lockstep_server.truth())
    assert len(measured) >= 200
    worst_ttft = max(e[0] for e in measured)
    worst_completion = max(e[1] for e in measured)
    assert worst_ttft <= TTFT_TOLERANCE_S, f"TTFT up to {worst_ttft * 1000:.1f} ms late"
    assert worst_completion <= COMPLETION_TOLERANCE_S, f"completion up to {worst_completion * 1000:.1f} ms late"
