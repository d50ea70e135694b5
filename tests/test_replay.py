"""``--trace-replay``: a sample trace replayed against the simulator, checked against the server's own clock.

The simulator's ``--trace`` writes when each request arrived (``time.monotonic()`` on this host);
joined to the harness's records by request id, it is the ground truth of when each line's call
really went out. Every line must become exactly one call, due at ``start + offset / speed``,
reaching the server within 20 ms of that; answers no longer than recorded; prompts the recorded
length by the simulator's count; and shared prefixes read from its prompt cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from locust.env import Environment

from harness import AnthropicUser, CallRecord, HarnessOptions, attach
from harness.core.errors import ConfigError
from harness.core.stages import LATE_AFTER_S
from harness.core.synth import BLOCK_TOKENS
from harness.core.trace import ReplayOptions, TraceFormat
from harness.core.trace_files import load_trace
from harness.load import replay
from harness.load.replay import TraceReplay, TraceReplayOptions
from harness.load.replay_driver import ReplayPlan
from harness.outputs.webui.sections import replay_panel
from harness.simulator import SimulatorProcess

from .locust_runs import free_port, read_jsonl
from .test_cli import locust_to_log

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "scenarios" / "data"
SAMPLES = {TraceFormat.MOONCAKE: DATA / "trace_mooncake.jsonl", TraceFormat.HARNESS: DATA / "trace_harness.jsonl"}
SCHEDULE_TOLERANCE_S = 0.020


class Replayed(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = 16
    prompt = "unused: a replay's prompts come from the trace"


def replay_run(
    tmp_path: Path, options: TraceReplayOptions, transport: str
) -> tuple[dict[str, Any], list[CallRecord], dict[str | None, float]]:
    """Replay in a LocalRunner against a fresh simulator: the summary, the records, the server's arrival times."""
    server_log = tmp_path / "server.jsonl"
    with SimulatorProcess(["--seed", "4", "--ttft", "0.02", "--tps", "2000", "--trace", str(server_log)]) as sim:
        assert sim.url is not None
        env = Environment(user_classes=[Replayed], host=sim.url)
        env.create_local_runner()
        harness = attach(env, HarnessOptions(report_dir=str(tmp_path), transport=transport))
        harness.transport(sim.url)  # build the client before the clock starts
        assert harness.install(replay.FEATURE, options) is not None
        assert env.runner is not None
        env.runner.start_shape()
        greenlet = env.runner.shape_greenlet
        assert greenlet is not None
        greenlet.join(timeout=60)
        env.runner.quit()
    assert harness.last_summary is not None
    records = [CallRecord.from_dict(r) for r in read_jsonl(tmp_path / "requests.jsonl")]
    arrivals: dict[str | None, float] = {r["request_id"]: r["t_arrival"] for r in read_jsonl(server_log)}
    return harness.last_summary, records, arrivals


@pytest.mark.parametrize(
    ("fmt", "speed", "transport"), [(TraceFormat.MOONCAKE, 1.0, "fast"), (TraceFormat.HARNESS, 2.0, "fast")]
)
def test_each_line_is_one_call_at_its_offset_with_its_lengths_and_shared_prefixes(
    tmp_path: Path, fmt: TraceFormat, speed: float, transport: str
) -> None:
    trace = load_trace(SAMPLES[fmt])
    options = TraceReplayOptions(trace_replay=str(SAMPLES[fmt]), replay_speed=speed)
    summary, records, arrival = replay_run(tmp_path, options, transport)
    lines = {x.line: x for x in trace.lines}
    line_of = {r.call_id: lines[r.trace_line or 0] for r in records}

    # Every line is one call, all answered.
    assert sorted(r.trace_line for r in records) == sorted(lines)  # type: ignore[type-var]
    assert all(r.ok for r in records), Counter(r.outcome for r in records)

    # Due at start + offset / speed exactly, and at the server within 20 ms of that. A machine busy
    # with other work can wake the generator (or the simulator) late for a few calls: those must be
    # few, and the ones the generator began late are counted late, as their latency counts from
    # their scheduled time anyway.
    starts = [r.t_scheduled - line_of[r.call_id].offset_s / speed for r in records]
    assert max(starts) - min(starts) < 1e-6
    errors = sorted(arrival[r.request_id] - r.t_scheduled for r in records)
    assert errors[0] > 0 and errors[len(errors) // 2] <= SCHEDULE_TOLERANCE_S / 2, errors
    assert sum(e <= SCHEDULE_TOLERANCE_S for e in errors) >= 0.9 * len(errors), errors
    late = sum(r.t_start - r.queue_s - r.t_scheduled > LATE_AFTER_S for r in records)

    for r in records:
        line = line_of[r.call_id]
        assert (r.trace_input_tokens, r.trace_output_tokens) == (line.input_tokens, line.output_tokens)
        assert r.output_tokens is not None and r.output_tokens <= max(1, line.output_tokens)
        counted = (r.input_tokens or 0) + (r.cache_read_input_tokens or 0) + (r.cache_creation_input_tokens or 0)
        assert abs(counted - line.input_tokens) <= 0.10 * line.input_tokens, (line, counted)

    # Lines sharing their first blocks (a system prompt) read them from the cache once one has written them.
    shared = [r for r in records if line_of[r.call_id].hash_ids[:2] == (0, 1)]
    shared.sort(key=lambda r: arrival[r.request_id])
    assert len(shared) >= 10
    first, *later = shared
    assert first.cache_read_input_tokens == 0 and (first.cache_creation_input_tokens or 0) >= 2 * BLOCK_TOKENS
    assert all((r.cache_read_input_tokens or 0) >= 2 * BLOCK_TOKENS for r in later)
    # A conversation's second turn reads its first turn, history and all.
    for session in {x.session_id for x in trace.lines if x.session_id}:
        turns = sorted((r for r in records if line_of[r.call_id].session_id == session), key=lambda r: r.t_scheduled)
        assert turns[1].cache_read_input_tokens == line_of[turns[0].call_id].input_tokens

    section = summary["replay"]
    assert (section["lines"], section["due"], section["dropped"], section["late"]) == (40, 40, 0, late)
    assert section["calibration"]["source"] == "count_tokens"
    assert section["calibration"]["tokens_per_char"] == pytest.approx(0.25, rel=0.01)
    assert section["achieved_rate"] == pytest.approx(section["recorded_rate"], rel=0.05)
    assert section["recorded_rate"] == pytest.approx(39 / (trace.lines[-1].offset_s / speed), rel=1e-6)
    assert section["input_tokens_ratio"] == pytest.approx(1.0, abs=0.05)
    print(
        f"\nreplay {fmt.value} x{speed:g} ({transport}): server arrival - scheduled, ms: "
        f"p50 {errors[len(errors) // 2] * 1000:.1f}, p90 {errors[int(0.9 * len(errors))] * 1000:.1f}, "
        f"max {errors[-1] * 1000:.1f}; {late} late"
    )


def test_workers_deal_the_lines_and_rebuild_conversations_the_same_way() -> None:
    trace = load_trace(SAMPLES[TraceFormat.HARNESS])
    options = ReplayOptions(speed=1.0)
    whole = dict((line.line, body) for line, body in ReplayPlan(trace, options).items())
    shares = [list(ReplayPlan(trace, options, slot=(i, 3)).items()) for i in range(3)]
    dealt = [line.line for share in shares for line, _ in share]
    assert sorted(dealt) == sorted(whole) and len(dealt) == 40
    assert [len(share) for share in shares] == [14, 13, 13]
    for share in shares:  # each worker's bodies, conversation turns included, are the single process's
        for line, body in share:
            assert body == whole[line.line]


def test_options_and_conflicts_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--replay-speed 0 must be above 0"):
        TraceReplayOptions(trace_replay="x", replay_speed=0)
    with pytest.raises(ConfigError, match="holds no line"):
        TraceReplayOptions(trace_replay=str(SAMPLES[TraceFormat.MOONCAKE]), replay_window=(60.0, 90.0)).load()
    assert TraceReplayOptions(replay_window=replay._window("1s:3s")).replay.window == (1.0, 3.0)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "locustfile.py"), "--headless", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trace-replay", "missing.jsonl"], "trace missing.jsonl not found"),
        (["--trace-replay", str(SAMPLES[TraceFormat.MOONCAKE]), "--load-shape", "steps"], "drop --load-shape"),
    ],
)
def test_bad_replays_stop_at_start_with_one_line(args: list[str], message: str) -> None:
    result = cli(*args, timeout=30)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_processes_2_split_the_trace_and_the_master_ends_when_both_are_done(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "run.log"
    port = str(free_port())  # a master of its own: other runs' workers must not join it
    args = ["--processes", "2", "--master-bind-port", port, "--master-port", port]
    args += ["--trace-replay", str(SAMPLES[TraceFormat.HARNESS]), "--replay-speed", "2"]
    args += ["--replay-window", ":5s", "--report-dir", str(out), "--simulator-args", "--ttft 0.02 --tps 2000"]
    code = locust_to_log("-f", str(ROOT / "locustfile.py"), "--headless", *args, log=log, timeout=90)
    output = log.read_text()
    assert code == 0, output[-3000:]
    records = read_jsonl(out / "requests.jsonl")
    window = [x for x in load_trace(SAMPLES[TraceFormat.HARNESS]).lines if x.offset_s < 5.0]
    assert sorted(r["trace_line"] for r in records) == [x.line for x in window]
    by_worker = Counter(r["worker"] for r in records)
    assert len(by_worker) == 2 and abs(by_worker.most_common()[0][1] - by_worker.most_common()[1][1]) <= 1
    section = json.loads((out / "summary.json").read_text())["replay"]
    assert (section["lines"], section["due"], section["dropped"]) == (len(window), len(window), 0)
    assert "Trace replay: " in output


def test_the_web_ui_panel_reads_the_replay_as_it_goes() -> None:
    env = Environment(user_classes=[Replayed])
    harness = attach(env, HarnessOptions())
    options = TraceReplayOptions(trace_replay=str(SAMPLES[TraceFormat.MOONCAKE]))
    state = TraceReplay(harness, options, options.load())
    assert replay_panel(state) is None  # nothing to show before the run
    state.started = True
    record = CallRecord("1", "Replayed", "m", True, "ok", t_scheduled=10.0, t_start=10.004, trace_line=1)
    state.on_record(record)
    panel = replay_panel(state)
    assert panel is not None and panel["calls begun"] == "1 of 40 lines" and panel["late / dropped"] == "0 / 0"
