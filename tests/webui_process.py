"""``locust`` with its web UI on loopback, as a subprocess, for the web UI tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.locust_runs import free_port

ROOT = Path(__file__).resolve().parent.parent


class LocustWeb:
    """``locust -f locustfile.py --web-host 127.0.0.1 --web-port PORT`` against the embedded simulator."""

    def __init__(self, report_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.report_dir = report_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                "locustfile.py",
                "--web-host",
                "127.0.0.1",
                "--web-port",
                str(self.port),
                "--report-dir",
                str(report_dir),
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def __enter__(self) -> LocustWeb:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"locust exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                self.get("/")
                return self
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("locust's web UI did not come up within 30 s")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def get(self, path: str, data: bytes | None = None) -> bytes:
        with urllib.request.urlopen(self.url + path, data=data, timeout=10) as response:
            return bytes(response.read())

    def stop(self) -> None:
        self.get("/stop", data=b"")

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    def json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def swarm(self, **form: Any) -> Any:
        data = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
        with urllib.request.urlopen(self.url + "/swarm", data=data, timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, what: str, check: Any, timeout: float = 30.0) -> Any:
        """Poll ``/llm/stats`` until ``check(stats)`` is true; return those stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.json("/llm/stats")
            if check(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last /llm/stats: {stats}")
            time.sleep(0.3)
