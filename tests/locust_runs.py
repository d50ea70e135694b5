"""Helpers that drive real, in-process Locust runs for the tests."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.user import User

from harness import CallRecord, HarnessOptions, attach
from harness.core.records_io import CURRENT, read_lines


@dataclass
class Run:
    env: Environment
    records: list[CallRecord] = field(default_factory=list)

    def stats_row(self, name: str, kind: str) -> Any:
        return self.env.stats.entries.get((name, kind))


def run_local(
    user_classes: Sequence[type[User]],
    host: str,
    *,
    users: int = 1,
    seconds: float = 2.0,
    options: HarnessOptions | None = None,
    stop_timeout: float | None = None,
    until: Callable[[Run], bool] | None = None,
) -> Run:
    """Run a LocalRunner for ``seconds`` (or, with ``until``, until it holds, ``seconds`` at most)
    and return every llm_request record."""
    env = Environment(user_classes=list(user_classes), host=host, stop_timeout=stop_timeout)
    run = Run(env)
    env.create_local_runner()
    # Import the SDK and build the shared client before the clock starts (~1 s, once).
    attach(env, options or HarnessOptions()).transport(host)
    env.events.llm_request.add_listener(lambda record, **_: run.records.append(record))  # type: ignore[attr-defined]
    assert env.runner is not None
    env.runner.start(users, spawn_rate=max(users, 1) * 10)
    if until is None:
        gevent.sleep(seconds)
    else:
        deadline = time.monotonic() + seconds
        while not until(run) and time.monotonic() < deadline:
            gevent.sleep(0.02)
    env.runner.quit()
    return run


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0, poll: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something true, and return that; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    """A loopback port nothing listens on now (for a master or a metrics port: another run may hold the default)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines of ``path``; a run's ``requests.jsonl`` is read with its rotated parts (--rotate-records)."""
    if path.name == CURRENT:
        return list(read_lines(path.parent))
    return [json.loads(line) for line in path.read_text().splitlines()]
