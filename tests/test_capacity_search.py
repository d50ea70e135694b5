"""``--load-shape search`` against the simulator, whose knee is known from its configuration.

With ``--max-batch 8`` the simulator decodes 8 calls at once and queues the rest. Closed-loop
users each hold at most one call, so up to 8 users no call waits, and a ninth user's calls wait
for a slot: the knee is at 8 users. The TTFT SLO is set between the two from the latency model
(harness/simulator/model.py): a search must find the bracket 8 (meets) / 9 (breaches).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from locust.env import Environment

from harness import HarnessOptions, attach
from harness.core.errors import ConfigError
from harness.core.slo import parse_slos
from harness.load.arrivals import ArrivalOptions
from harness.load.shapes import ShapeOptions, configure
from harness.outputs import run_files
from harness.outputs.webui.sections import search_panel
from harness.simulator import SimulatorProcess
from harness.simulator.model import DEFAULT_PROFILES

from .search_locustfile import ANSWER_TOKENS, Explain
from .test_cli import locust_to_log
from .test_report import _report_data

ROOT = Path(__file__).resolve().parent.parent
MAX_BATCH, BASE_DELAY_S, DECODE_TPS = 8, 0.005, 100.0
SIM_ARGS = f"--seed 1 --ttft {BASE_DELAY_S} --tps {DECODE_TPS:g} --max-batch {MAX_BATCH}"
PRECISION = 0.15  # users are whole: 8 -> 9 is 12.5 %, the finest a user search can go at this knee

PROFILE = replace(
    DEFAULT_PROFILES["claude-haiku-4-5"], base_delay_s=BASE_DELAY_S, decode_tokens_per_s=DECODE_TPS, max_batch=MAX_BATCH
)
# Up to MAX_BATCH users nothing queues: TTFT is the base delay (log-normal, 2 sigma) and one step
# (uniform jitter) at a full batch; the prompt's prefill is a fraction of a millisecond.
ALONE_S = PROFILE.base_delay_s * math.exp(2 * PROFILE.base_delay_jitter) + PROFILE.step_time(MAX_BATCH) * (
    1 + PROFILE.step_jitter
)
# One user more: each call holds a slot for ANSWER_TOKENS steps, and the extra user's call waits
# for the next slot to free, on average a slot's hold over MAX_BATCH, less its own base delay.
QUEUED_S = ALONE_S + ANSWER_TOKENS * PROFILE.step_time(MAX_BATCH) / MAX_BATCH - PROFILE.base_delay_s
SLO_MS = round(1000 * (ALONE_S + QUEUED_S) / 2)
KNEE = MAX_BATCH


def test_the_model_puts_the_slo_between_the_knee_and_one_user_more() -> None:
    assert ALONE_S * 1.5 < SLO_MS / 1000 < QUEUED_S / 1.2, (ALONE_S, SLO_MS, QUEUED_S)


def run_search(out: Path) -> tuple[int | None, str]:
    args = ["-f", str(ROOT / "tests" / "search_locustfile.py"), "--headless", "--transport", "fast"]
    args += ["--load-shape", "search", "--stages", "4", "--stage-duration", "3.5s", "--warmup", "1s"]
    args += ["--search-precision", f"{PRECISION:.0%}", "--slo", f"ttft_p95<{SLO_MS}ms"]
    args += ["--simulator-args", SIM_ARGS, "--report-dir", str(out), "--junit-xml", str(out / "junit.xml")]
    log = out.parent / "search.log"
    code = locust_to_log(*args, log=log, timeout=120)
    return code, log.read_text()


def test_search_brackets_the_knee_within_the_precision(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run_search(out)
    assert code == 0, output[-3000:]  # the SLOs are judged at the answer, which meets them
    summary = json.loads((out / "summary.json").read_text())
    search = summary["search"]
    bracket = search["bracket"]
    passing, breaching = bracket["passing"], bracket["breaching"]

    # The bracket's ends meet and breach the SLO, on the stages' own figures.
    probes = {p["load"]: p for p in search["probes"]}
    rows = summary["stages"]
    assert rows[probes[passing]["stage"]]["overall"]["ttft_s"]["p95"] * 1000 < SLO_MS
    assert rows[probes[breaching]["stage"]]["overall"]["ttft_s"]["p95"] * 1000 > SLO_MS
    assert probes[passing]["passed"] and not probes[breaching]["passed"]
    # Its width is within the precision, and it lands on the knee (or one user beside it).
    assert bracket["relative_width"] <= PRECISION and search["stop_reason"] == "converged"
    assert KNEE - 1 <= passing <= KNEE <= breaching <= KNEE + 1, bracket
    assert search["max_sustainable"] == passing and search["answer_stage"] == probes[passing]["stage"]
    # Doubling from 4, then bisecting.
    path = [p["load"] for p in search["probes"]]
    assert path[:3] == [4.0, 8.0, 16.0] and [p["phase"] for p in search["probes"]][:2] == ["doubling"] * 2
    assert all(p["phase"] == "bisecting" for p in search["probes"][3:])

    # The answer in the verdict, a row per probe in stages.csv, a JUnit case, the path in report.html.
    assert search["answer"] in output and f"max sustainable: {passing:g} users" in search["answer"]
    assert "Capacity search over users" in output
    table = list(csv.DictReader((out / "stages.csv").open()))
    assert [int(r["probe"]) for r in table] == list(range(1, len(path) + 1))
    assert [float(r["offered"]) for r in table] == path
    junit = (out / "junit.xml").read_text()
    assert 'classname="search" name="max sustainable load"' in junit and "NoSustainableLoad" not in junit
    data = _report_data(out / "report.html")
    assert data["search"]["answer"] == search["answer"]
    assert "search path (probe order)" in (out / "report.html").read_text()
    print(
        f"\nsearch (SLO ttft_p95<{SLO_MS}ms, knee {KNEE} users): "
        f"{' -> '.join(f'{v:g}' for v in path)}; {search['answer']}"
    )


def test_search_needs_an_slo_and_checks_its_options() -> None:
    env = Environment(user_classes=[Explain], host="http://127.0.0.1:9")
    env.create_local_runner()
    attach(env, HarnessOptions())
    with pytest.raises(ConfigError, match="needs an SLO to search against"):
        configure(env, ShapeOptions(load_shape="search"))
    with pytest.raises(ConfigError, match="--search-precision 2 must be between 0 and 1"):
        ShapeOptions(load_shape="search", search_precision=2.0)


def test_an_open_loop_search_probes_rates_and_shows_in_the_web_ui(tmp_path: Path) -> None:
    """Rates, not users: the probes are arrival rates handed to the open-loop driver."""
    shape = ShapeOptions(load_shape="search", stage_duration=2.0, warmup=0.5, search_max_probes=3)
    arrival = ArrivalOptions(arrival="constant", rates=(4.0,))
    with SimulatorProcess(["--seed", "2", "--ttft", "0.01", "--tps", "100", "--max-batch", "2"]) as sim:
        assert sim.url is not None
        env = Environment(user_classes=[Explain], host=sim.url)
        env.create_local_runner()
        harness = attach(env, HarnessOptions(report_dir=str(tmp_path), transport="fast"))
        harness.transport(sim.url)
        staged = configure(env, shape, arrival, slos=parse_slos(["ttft_p95<300ms"]))
        assert staged is not None
        harness.install(run_files.FEATURE)
        assert env.runner is not None
        env.runner.start_shape()
        assert env.runner.shape_greenlet is not None
        env.runner.shape_greenlet.join(timeout=60)
        env.runner.quit()
    summary: dict[str, Any] = harness.last_summary or {}
    search = summary["search"]
    assert search["kind"] == "rate" and [p["stage"] for p in search["probes"]][:2] == ["r4", "r8"]
    assert len(search["probes"]) == 3 and search["stop_reason"] in ("converged", "max_probes")
    for probe in search["probes"]:  # each probe was the rate asked for, judged on its own stage
        row = summary["stages"][probe["stage"]]
        assert row["kind"] == "rate" and row["offered"] == probe["load"] and row["arrivals"] > 0
        assert probe["passed"] == (row["overall"]["ttft_s"]["p95"] < 0.3)
    panel = search_panel(staged)
    assert panel is not None and panel["status"] == search["answer"]
    assert panel["probes"].startswith("1 r4 pass")
