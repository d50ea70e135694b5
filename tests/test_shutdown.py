"""Shutdown leaves complete, parseable artefacts: Ctrl-C mid-stream, a second Ctrl-C, ``-t`` expiry.

Each test runs the real ``locust`` CLI as a subprocess and then reads ``requests.jsonl``
line by line and ``summary.json`` as a script would. Where a stop must find calls in
flight, some users call tests/scripted_server.py's held streams (``held-mid_KEY``: the
first token, then nothing until released), which are mid-stream whenever the stop comes,
while the others make short calls that end ``ok``; the test waits for both before it
stops the run.
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

from .held_streams import HeldStreams
from .locust_runs import wait_until

ROOT = Path(__file__).resolve().parent.parent
# The embedded simulator, slowed (calls of ~1 s), for the runs that need no call held at their stop.
SLOW_SIM = "--seed 3 --ttft 0.05 --tps 50"


class LocustProcess:
    """``locust`` headless in a subprocess, its stderr collected by a thread."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        host: str | None = None,
        headless: bool = True,
        locustfile: Path = ROOT / "locustfile.py",
    ) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # a locustfile in tmp_path
        self.out = tmp_path / "out"
        target = ["--host", host] if host else ["--simulator-args", SLOW_SIM]
        command = ["-m", "locust", "-f", str(locustfile), "--report-dir", str(self.out)]
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

    def records_written(self) -> int:
        """Lines of requests.jsonl so far (each a call that ended)."""
        path = self.out / "requests.jsonl"
        return path.read_text().count("\n") if path.exists() else 0

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


def held_and_ok(run: LocustProcess, streams: HeldStreams) -> None:
    """Wait until every held user is mid-stream and some short call has ended ok."""
    run.wait_for("All users spawned")
    wait_until(lambda: streams.held() == streams.count, "the held streams")
    wait_until(lambda: run.records_written() >= 2, "two calls ended")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_stream_records_in_flight_calls_as_cancelled(
    tmp_path: Path, scripted_url: str, signum: int
) -> None:
    streams = HeldStreams(scripted_url, tmp_path, quick=2, held=2)
    run = LocustProcess(tmp_path, "-u", "4", "-r", "4", "-t", "60s", host=scripted_url, locustfile=streams.locustfile)
    try:
        held_and_ok(run, streams)
        run.proc.send_signal(signum)
        code = run.finish()
    finally:
        streams.release()
    assert code == 0, run.log[-3000:]  # cancelled calls are not failures
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert outcomes["ok"] >= 2 and set(outcomes) <= {"ok", "cancelled"}, outcomes
    for user in {line["user_id"] for line in lines}:
        mine = [line["outcome"] for line in lines if line["user_id"] == user]
        assert "cancelled" not in mine[:-1], mine  # only a user's last call can be cut short
    held = [line for line in lines if line["scenario"] == "HeldAtTheStop"]
    assert [line["outcome"] for line in held] == ["cancelled"] * streams.count, held
    # A call cut mid-stream keeps what it measured: its message_start and its first token.
    assert all(line["t_message_start"] is not None and line["ttft_s"] is not None for line in held)
    assert "Traceback" not in run.log


def test_a_second_ctrl_c_still_writes_what_it_has(tmp_path: Path, scripted_url: str) -> None:
    # --stop-timeout makes the first Ctrl-C wait for calls to finish (the held ones never do); the
    # second cuts the wait short. --loglevel DEBUG: Locust logs when its stop begins.
    streams = HeldStreams(scripted_url, tmp_path, quick=1, held=2)
    run = LocustProcess(
        tmp_path, "-u", "3", "-r", "3", "-t", "60s", "--stop-timeout", "30", "--loglevel", "DEBUG",
        host=scripted_url, locustfile=streams.locustfile,
    )  # fmt: skip
    try:
        held_and_ok(run, streams)
        run.interrupt()
        run.wait_for("Stopping all users")  # Locust now waits up to 30 s for the users
        run.interrupt()
        # Killed by the second SIGINT (Python re-raises it at exit): -2, the shell's 130.
        assert run.finish() == -signal.SIGINT, run.log[-3000:]
    finally:
        streams.release()
    assert "writing what it has" in run.log
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert set(outcomes) <= {"ok", "cancelled"} and outcomes["ok"] >= 2, outcomes
    held = [line["outcome"] for line in lines if line["scenario"] == "HeldAtTheStop"]
    assert held == ["cancelled"] * streams.count, held


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
    tmp_path: Path, scripted_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    web = f"http://127.0.0.1:{port}"
    streams = HeldStreams(scripted_url, tmp_path, quick=1, held=2)
    monkeypatch.setenv("ANTHROPIC_API_KEY", MARKER)  # locust inherits it; --host keeps it off the real API
    run = LocustProcess(
        tmp_path, "-u", "3", "-r", "3", "--autostart", "--web-host", "127.0.0.1", "--web-port", str(port),
        host=scripted_url, headless=False, locustfile=streams.locustfile,
    )  # fmt: skip
    try:
        held_and_ok(run, streams)
        assert urlopen(Request(f"{web}/stop", method="POST"), timeout=10).status == 200
        run.wait_for("cost at list prices: $")  # the summary has been written
        pages = [urlopen(f"{web}{path}", timeout=10).read().decode() for path in PAGES]
    finally:
        run.proc.send_signal(signal.SIGTERM)
        run.finish()
        streams.release()
    lines, summary = run.artefacts()
    outcomes = check_consistent(lines, summary)
    assert outcomes["ok"] >= 2 and set(outcomes) <= {"ok", "cancelled"}, outcomes
    held = [line["outcome"] for line in lines if line["scenario"] == "HeldAtTheStop"]
    assert held == ["cancelled"] * streams.count, held
    for text in [*pages, run.log]:
        assert MARKER not in text
