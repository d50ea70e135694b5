"""Calls in flight whenever a run stops: users held mid-stream by tests/scripted_server.py.

A test that stops a run (a signal, the web UI's stop, ``-t``) and checks what happened to
the calls in flight cannot rely on timing to find some: calls end between a sleep and a
stop, more so on a loaded machine. These users call the scripted server's ``held-mid_KEY``
stream (message_start and the first token, then nothing until the test releases it), so
they are mid-stream at any stop; the others make short calls that end ``ok``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.request import Request, urlopen

__all__ = ["HELD_LOCUSTFILE", "HeldStreams"]

# Users of two kinds: short calls that end ok, and calls held open (past their first token) until
# the test releases them, so that a stop always finds them in flight.
HELD_LOCUSTFILE = """
from locust import constant
from harness import AnthropicUser

class Quick(AnthropicUser):
    model = "claude-haiku-4-5"  # the scripted server's default script: ~0.4 s
    max_tokens = 16
    prompt = "hi"
    wait_time = constant(0)
    fixed_count = {quick}

class HeldAtTheStop(AnthropicUser):
    model = "held-mid_{key}"
    max_tokens = 16
    prompt = "hi"
    wait_time = constant(0)
    fixed_count = {held}
"""


class HeldStreams:
    """One test's held streams on the scripted server: its locustfile, how many are held, their release."""

    def __init__(self, url: str, directory: Path, *, quick: int, held: int) -> None:
        self.url, self.key, self.count = url, uuid.uuid4().hex[:8], held
        self.locustfile = directory / "held_locustfile.py"
        self.locustfile.write_text(HELD_LOCUSTFILE.format(key=self.key, quick=quick, held=held))

    def held(self) -> int:
        with urlopen(f"{self.url}/held/{self.key}", timeout=10) as response:
            return int(json.loads(response.read())["held"])

    def release(self) -> None:
        """Let the server end them (their client has gone: the server writes into closed sockets)."""
        urlopen(Request(f"{self.url}/release/{self.key}", method="POST"), timeout=60).read()
