"""Shutdown leaves complete, parseable artefacts: Ctrl-C mid-stream, a second Ctrl-C, ``-t`` expiry.

Each test runs the real ``locust`` CLI as a subprocess against the embedded simulator,
slowed down so that calls are mid-stream when the signal arrives, and then reads
``requests.jsonl`` line by line and ``summary.json`` as a script would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from harness.simulator.launcher import SimulatorProcess

ROOT = Path(__file__).resolve().parent.parent
# Calls of about 3 s (TTFT 0.05 s, 50 tokens/s, ~160 tokens): a signal always finds some mid-stream.
SLOW_SIM = "--seed 3 --ttft 0.05 --tps 50"


class LocustProcess:
    """``locust`` headless in a subprocess, its stderr collected by a thread."""

    def __init__(self, tmp_path: Path, *args: str, host: str | None = None, headless: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        self.out = tmp_path / "out"
        target = ["--host", host] if host else ["--simulator-args", SLOW_SIM]
        command = ["-m", "locust", "-f", str(ROOT / "locustfile.py"), "--report-dir", str(self.out)]
        command += ["--headless"] if headless else []
        self.proc = subprocess.Popen(
            [sys.executable, *command, *target, *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"never saw {text!r}:\n{''.join(self.lines)[-3000:]}")

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self._reader.join(5)
        return code

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def artefacts(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every line of requests.jsonl parsed (a torn line fails here), and summary.json."""
        text = (self.out / "requests.jsonl").read_text()
        assert text.endswith("\n"), "the last line of requests.jsonl is torn"
        lines = [json.loads(line) for line in text.splitlines()]
        summary = json.loads((self.out / "summary.json").read_text())
        return lines, summary


def check_consistent(lines: list[dict[str, Any]], summary: dict[str, Any]) -> Counter[str]:
    outcomes = Counter(line["outcome"] for line in lines)
    assert len({line["call_id"] for line in lines}) == len(lines), "a call was written twice"
    overall = summary["overall"]
    assert overall["calls"] == len(lines)
    assert overall["ok"] == outcomes["ok"] and overall["cancelled"] == outcomes["cancelled"]
    return outcomes


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_stream_records_in_flight_calls_as_cancelled(tmp_path: Path, signum: int) -> None:
    run = LocustProcess(tmp_path, "-u", "4", "-r", "4", "-t", "60s")
    run.wait_for("All users spawned")
    time.sleep(1.5)  # every user is mid-stream (calls last ~3 s)
    run.proc.send_signal(signum)
    code = run.finish()
    assert code == 0, run.log[-3000:]  # cancelled calls are not failures
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert outcomes["cancelled"] >= 2, outcomes  # users were mid-call (one may have been between calls)
    for user in {line["user_id"] for line in lines}:
        mine = [line["outcome"] for line in lines if line["user_id"] == user]
        assert "cancelled" not in mine[:-1], mine  # only a user's last call can be cut short
    assert set(outcomes) <= {"ok", "cancelled"}
    cancelled = [line for line in lines if line["outcome"] == "cancelled"]
    assert all(line["t_message_start"] is not None and line["ttft_s"] is not None for line in cancelled)
    assert "Traceback" not in run.log


def test_a_second_ctrl_c_still_writes_what_it_has(tmp_path: Path) -> None:
    # --stop-timeout makes the first Ctrl-C wait for calls to finish; the second cuts the wait short.
    # The simulator runs on its own here: the embedded one would share the second signal's exit.
    with SimulatorProcess(SLOW_SIM.split()) as sim:
        run = LocustProcess(tmp_path, "-u", "3", "-r", "3", "-t", "60s", "--stop-timeout", "30", host=sim.url)
        _interrupt_twice(run)
    assert "writing what it has" in run.log
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert set(outcomes) <= {"ok", "cancelled"} and outcomes["cancelled"] >= 1, outcomes


def _interrupt_twice(run: LocustProcess) -> None:
    run.wait_for("All users spawned")
    time.sleep(1.0)
    run.interrupt()
    time.sleep(0.5)  # Locust is now waiting up to 30 s for the users
    run.interrupt()
    # Killed by the second SIGINT (Python re-raises it at exit): -2, the shell's 130.
    assert run.finish() == -signal.SIGINT, run.log[-3000:]


def test_run_time_expiry_with_stop_timeout_lets_calls_finish(tmp_path: Path) -> None:
    run = LocustProcess(tmp_path, "-u", "3", "-r", "3", "-t", "2s", "--stop-timeout", "15")
    code = run.finish(timeout=60)
    assert code == 0, run.log[-3000:]
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    # Every call in flight at -t expiry finished within the stop timeout: none cancelled.
    assert outcomes == Counter({"ok": len(lines)}) and len(lines) >= 3, outcomes


MARKER = "sk-ant-api03-MARKER-web-ui-0123456789abcdef"
PAGES = ("/", "/stats/requests", "/stats/failures/csv", "/exceptions", "/stats/report", "/logs")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_stop_from_the_web_ui_writes_complete_artefacts_and_the_ui_never_shows_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    web = f"http://127.0.0.1:{port}"
    with SimulatorProcess(SLOW_SIM.split()) as sim:
        monkeypatch.setenv("ANTHROPIC_API_KEY", MARKER)  # locust inherits it; --host keeps it off the real API
        run = LocustProcess(
            tmp_path, "-u", "3", "-r", "3", "--autostart", "--web-host", "127.0.0.1", "--web-port", str(port),
            host=sim.url, headless=False,
        )  # fmt: skip
        try:
            run.wait_for("All users spawned")
            time.sleep(1.5)
            assert urlopen(Request(f"{web}/stop", method="POST"), timeout=10).status == 200
            run.wait_for("cost at list prices: $")  # the summary has been written
            pages = [urlopen(f"{web}{path}", timeout=10).read().decode() for path in PAGES]
        finally:
            run.proc.send_signal(signal.SIGTERM)
            run.finish()
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert outcomes["cancelled"] >= 2 and set(outcomes) <= {"ok", "cancelled"}, outcomes
    for text in [*pages, run.log]:
        assert MARKER not in text
