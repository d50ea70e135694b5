"""Shared by the stage, shape, arrival and report tests: real in-process shaped runs against the simulator.

The simulator is set for a sharp, known capacity: a 10 ms base delay, 100 tokens/s per
stream and ``--max-batch 2``, so with 20-token answers each call holds one of two slots
for ~0.2 s: capacity is ~10 calls/s, reached at 2 concurrent calls.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from locust.env import Environment

from harness import AnthropicUser, CallRecord, HarnessOptions, attach
from harness.load.arrivals import ArrivalOptions
from harness.load.shapes import ShapeOptions, configure
from harness.outputs import run_files
from harness.runtime.state import Harness
from harness.simulator.launcher import SimulatorProcess

MAX_BATCH = 2
SIM_ARGS = ["--seed", "7", "--ttft", "0.01", "--tps", "100", "--max-batch", str(MAX_BATCH)]


class Chat(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = 20
    prompt = "Say hello."


@dataclass
class ShapedRun:
    directory: Path
    harness: Harness
    summary: dict[str, Any]

    def records(self) -> list[CallRecord]:
        lines = (self.directory / "requests.jsonl").read_text().splitlines()
        return [CallRecord.from_dict(json.loads(line)) for line in lines]


def shaped_run(directory: Path, shape: ShapeOptions, arrival: ArrivalOptions | None = None) -> ShapedRun:
    """Run ``shape`` to its end in a LocalRunner against a fresh simulator; files go to ``directory``."""
    with SimulatorProcess(SIM_ARGS) as sim:
        assert sim.url is not None
        env = Environment(user_classes=[Chat], host=sim.url)
        env.create_local_runner()
        harness = attach(env, HarnessOptions(report_dir=str(directory)))
        harness.transport(sim.url)  # build the SDK client before the clock starts
        assert configure(env, shape, arrival) is not None
        harness.install(run_files.FEATURE)  # stages.csv and report.html, as a CLI run gets them
        assert env.runner is not None
        env.runner.start_shape()
        greenlet = env.runner.shape_greenlet
        assert greenlet is not None
        greenlet.join(timeout=90)
        env.runner.quit()
    assert harness.last_summary is not None
    return ShapedRun(directory, harness, harness.last_summary)


@cache
def stepped_run() -> ShapedRun:
    """One stepped run shared by several tests: stages 1,2,4,8 users, 2 s each, 0.5 s warm-up."""
    directory = Path(tempfile.mkdtemp(prefix="stepped-run-"))
    atexit.register(shutil.rmtree, directory, True)
    shape = ShapeOptions(load_shape="steps", stages=(1, 2, 4, 8), stage_duration=2.0, warmup=0.5)
    return shaped_run(directory, shape)
