"""Start and stop the simulator as a child process, for the harness and tests.

Plain subprocess and threads only, no asyncio, locust or gevent: it must work from a process that gevent
has monkey-patched (subprocess is cooperative there) and must not pull Locust into the simulator.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType

READY_PREFIX = "harness simulator listening on "


class SimulatorProcess:
    """`with SimulatorProcess(["--seed", "1"]) as sim: client = Anthropic(base_url=sim.url, ...)`.

    ``platform`` is the simulator's --platform: "anthropic" (default), "bedrock", "vertex" or "all".
    A Bedrock client's base URL is ``sim.url``, a Vertex client's ``sim.url + "/v1"``.
    """

    def __init__(
        self, args: Sequence[str] = (), host: str = "127.0.0.1", port: int = 0, platform: str = "anthropic"
    ) -> None:
        self.args = list(args)
        self.platform = platform
        self.host = host
        self.port = port
        self.url: str | None = None
        # time.monotonic() when the listening line was read: fault schedules count from about then.
        self.started_at: float | None = None
        self.proc: subprocess.Popen[str] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=50)
        self._stderr_thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> str:
        if self.proc is not None:
            raise RuntimeError("simulator already started")
        cmd = [
            sys.executable,
            "-m",
            "harness.simulator",
            "--host",
            self.host,
            "--port",
            str(self.port),
            *(["--platform", self.platform] if self.platform != "anthropic" else []),
            *self.args,
        ]
        env = dict(os.environ)
        # The child must import this checkout's `harness` even when the caller's cwd is elsewhere.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # Its own session: a Ctrl-C in the terminal reaches only the harness, which then stops
        # its users while the simulator still answers; --parent-pid ends it if the harness dies.
        cmd += ["--parent-pid", str(os.getpid())]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        line_box: list[str] = []
        reader = threading.Thread(target=lambda: line_box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        deadline = time.monotonic() + timeout
        while reader.is_alive() and time.monotonic() < deadline and self.proc.poll() is None:
            reader.join(0.02)
        line = line_box[0] if line_box else ""
        if not line.startswith(READY_PREFIX):
            if line_box and not line:  # EOF on stdout: the child is exiting; let it finish
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5.0)
            if self.proc.poll() is not None:
                why = f"exited with code {self.proc.returncode}"
            else:
                why = f"did not report listening within {timeout}s"
            self.stop()
            raise RuntimeError(f"simulator {why}; stderr tail:\n{self.stderr_tail()}")
        self.url = line[len(READY_PREFIX) :].strip()
        self.started_at = time.monotonic()
        return self.url

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr_tail.append(line)

    def stderr_tail(self) -> str:
        if self._stderr_thread is not None and self.proc is not None and self.proc.poll() is not None:
            self._stderr_thread.join(1.0)
        return "".join(self._stderr_tail)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait, then SIGKILL; returns the exit code (None if never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        with contextlib.suppress(Exception):
            if proc.stdout is not None:
                proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> SimulatorProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
