"""Lever studies run in this process against one simulator: the A/A honesty check over 20 seeds, ``--precision``.

Each study is the real thing (:func:`harness.outputs.study_cli.build_study`: an Environment,
a LocalRunner, the harness and its features, real calls to the simulator), built from the
command line's parser. Server-side jitter is seeded by the simulator's arrival count, and
every block makes an exact number of calls, so the draws each arm gets depend only on the
schedule's seed: the check is repeatable, not a coin toss per test run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import ConfigError
from harness.core.schedule import LEVERS
from harness.outputs.study_cli import build_parser, build_study, plan_from
from harness.outputs.study_run import MIN_ROUNDS, Study
from harness.simulator.launcher import SimulatorProcess

from .study_locustfile import CONFIG

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = str(ROOT / "tests" / "study_locustfile.py")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = tmp_path_factory.mktemp("sim") / "simulator.json"
    config.write_text(json.dumps({**CONFIG, "seed": 5}))
    with SimulatorProcess(["--config", str(config)]) as sim:
        assert sim.url is not None
        yield sim.url


def run_study(tmp_path: Path, host: str, *args: str) -> tuple[Study, dict[str, Any]]:
    namespace = build_parser().parse_args(
        ["-f", LOCUSTFILE, "--host", host, "--report-dir", str(tmp_path), "--resamples", "1000", *args]
    )
    study = build_study(namespace)
    study.run()
    return study, study.document()


def _ttft_p50(doc: dict[str, Any]) -> dict[str, Any]:
    (entry,) = [c for c in doc["comparisons"] if (c["metric"], c["stat"]) == ("ttft_s", "p50")]
    return entry


def test_an_a_a_study_holds_zero_in_at_least_17_of_20_seeds(simulator: str, tmp_path: Path) -> None:
    held = []
    for seed in range(20):
        _, doc = run_study(
            tmp_path / str(seed),
            simulator,
            *("SameA", "SameB", "--users", "4", "--calls", "32", "--block-calls", "8", "--seed", str(seed)),
        )
        entry = _ttft_p50(doc)
        assert entry["a"]["calls"] == entry["b"]["calls"] == 32 and doc["study"]["rounds"] == 2
        low, high = entry["ci95"]["difference"]
        held.append(low <= 0 <= high)
        assert (entry["verdict"] == "no difference detected") == held[-1]
    assert sum(held) >= 17, held


def test_precision_runs_rounds_until_every_interval_is_narrow(simulator: str, tmp_path: Path) -> None:
    study, doc = run_study(
        tmp_path,
        simulator,
        *("Fast", "Slow", "--users", "2", "--block-calls", "2", "--precision", "40%", "--calls", "200"),
    )
    # Judged only from MIN_ROUNDS rounds on: a block bootstrap over fewer understates its spread.
    assert doc["study"]["rounds"] >= MIN_ROUNDS and doc["bootstrap"] == "blocks"
    assert doc["study"]["stopped"] == "every interval within \N{PLUS-MINUS SIGN}40.0%"
    assert all(c["method"] == "blocks" and c["blocks"] == doc["study"]["rounds"] for c in doc["comparisons"])
    assert max(c["ci95"]["relative"][1] - c["ci95"]["relative"][0] for c in doc["comparisons"]) / 2 < 0.40
    assert min(study.measured().values()) < 200


def test_a_precision_out_of_reach_stops_at_calls(simulator: str, tmp_path: Path) -> None:
    _, doc = run_study(
        tmp_path,
        simulator,
        *("Fast", "Slow", "--users", "2", "--block-calls", "4", "--precision", "0.1%", "--calls", "16"),
    )
    assert doc["study"]["rounds"] == 2
    assert doc["study"]["stopped"] == "16 measured calls per arm reached before the precision"


def test_the_lever_plan_and_its_defaults() -> None:
    plan = plan_from(build_parser().parse_args(["--levers", "--users", "4"]))
    assert plan.arms[:2] == ("ControlA", "ControlB") and len(plan.levers) == len(LEVERS)
    assert (plan.users, plan.calls, plan.block_calls, plan.rounds) == (4, 24, 12, 1)
    plan = plan_from(build_parser().parse_args(["--levers", "model,streaming", "--precision", "5%"]))
    assert plan.arms == ("CompareSonnet", "CompareHaiku", "CompareOpus", "NonStreamed", "Streamed")
    assert plan.precision == pytest.approx(0.05) and plan.calls == 1000 and plan.rounds == 167
    plan = plan_from(build_parser().parse_args(["A", "B", "C", "--block-seconds", "5"]))
    assert [(p.a, p.b) for p in plan.levers[0].pairs] == [("A", "B"), ("A", "C")]
    assert plan.block_calls is None and plan.block_seconds == 5 and plan.rounds is None
    with pytest.raises(ConfigError, match="--users must be 1 or more"):
        plan_from(build_parser().parse_args(["A", "B", "-u", "0"]))
