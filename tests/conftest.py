"""Shared fixtures: real loopback servers in their own processes, real Locust runs."""

from __future__ import annotations

# Locust monkey-patches the standard library with gevent on import: do it before any test
# module imports the SDK, ssl or threads, whatever order pytest collects the modules in.
import locust  # noqa: F401  isort: skip
from harness.transports._compat import import_http_stack  # isort: skip

import_http_stack()  # tests that use the SDK directly need httpcore imported the safe way too

import os  # isort: skip

import gevent  # isort: skip

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under pytest-xdist (-n N) this process runs tests in its main greenlet and waits for the next
    # ones on a threading.Event that Locust's patching made a gevent Event, set by execnet's reader
    # thread. A wait with nothing else scheduled in the loop is a LoopExit ("would block forever"):
    # a timer that never fires keeps the loop alive so the reader thread's wake-up is seen.
    gevent.spawn(gevent.sleep, 365 * 24 * 3600)

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line.strip().split()[-1]


@pytest.fixture(scope="session")
def scripted_url() -> Iterator[str]:
    """Base URL of tests/scripted_server.py, one process for the whole session."""
    proc, url = _start([str(ROOT / "tests" / "scripted_server.py")])
    yield url
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing in the suite may reach the real API, whatever the developer's shell holds.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    # Nor Amazon Bedrock or Google Vertex AI (--platform): their endpoints and a Bedrock bearer token.
    for name in ("ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL", "AWS_BEARER_TOKEN_BEDROCK"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("LOCUST_"):
            monkeypatch.delenv(name, raising=False)
