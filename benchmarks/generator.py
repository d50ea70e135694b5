"""Is the load generator the bottleneck? CPU per token and timing error, per transport.

    python benchmarks/generator.py            # 10..2000 streams, every mode (~4-5 min)
    python benchmarks/generator.py --quick    # 10, 100, 500 streams, shorter points (<1 min)
    python benchmarks/generator.py --streams 100,500 --modes fast,floor --seconds 3
    python benchmarks/generator.py --repeat 3   # each point 3 times, interleaved; best run shown
    python benchmarks/generator.py --platform bedrock --modes fast,sdk   # Claude as Bedrock serves it
    python benchmarks/generator.py --streams 10 --lockstep 300 --modes floor,fast   # the lockstep row

The simulator runs pinned to one core with a ground-truth ``--trace`` (its own
``time.monotonic()`` of every first and last delta written); each point runs one client
process pinned to the other core, N concurrent streams of 50 deltas 20 ms apart, back to
back, started evenly over ``--ramp`` seconds with their deltas' phases spread over the 20 ms
between deltas (default 1: real streams are not in phase; with 0 every stream starts at
once and their deltas arrive in lockstep bursts, the worst case). Every run also has a
standing lockstep row (``--lockstep N``, default 300 streams; 0 leaves it out): N streams
started at once, as Locust's ``-r`` spawns users, ending and starting their calls together.
CLOCK_MONOTONIC is one clock for every process of a host, so joining the client's
records with the trace by request-id gives how late the client stamped each delta.

Modes (one client process each):

* ``floor``    bare gevent sockets that only split lines and stamp the first delta
* ``fast``     the harness (real Locust users, ``--transport fast``)
* ``sdk``      the harness with ``--transport sdk``
* ``sdk-bare`` the anthropic SDK's own loop under gevent, no harness: the SDK's cost alone

``--platform bedrock|vertex`` runs the simulator as that platform and the harness modes
(``fast``, ``sdk``) with ``--platform``: Bedrock's AWS event stream, signed requests and
``AnthropicBedrock``, or Vertex's ``AnthropicVertex``. Bedrock's records are joined with the
trace by ``x-amzn-requestid``, Vertex's (which has no request id) by the message id.

Columns: how the streams started (spread or lockstep), content deltas/s received in the
window, client CPU per delta (µs), event-loop
lag p99 (a 50 ms timer's overshoot: the harness's own health sampler in harness modes,
the benchmark's copy of it in the others, so every mode runs one probe), RSS growth per
stream, TTFT error (first-delta stamp minus the server's write time), ITL error (error
of the call's summed ITL: last-delta error minus first-delta error) and end error (the
client's end of the call minus the server's last byte: the harness's ``t_end``, the bare
clients' read of the stream's end), p50/p99 in ms, and
the health verdict of harness runs (with the fast transport, also its first-token
measure). Figures on a shared machine are noisy; see docs/performance.md for how to read
them. With ``--repeat N`` every point runs N times, the modes interleaved so that a slow
spell of the machine hits all of them alike, and the table shows each point's run with
the least CPU per delta (the least disturbed one, as ``timeit`` takes the best of its
repeats) and that figure's min/median/max over the N runs; the harness-overhead lines
give the ratio of the best runs, of the medians, and paired: the median over rounds of
each round's ratio, the steadiest of the three.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("floor", "fast", "sdk", "sdk-bare")
DELTAS = 50
GAP_S = 0.020
BASE_DELAY_S = 0.05
MODEL = "claude-haiku-4-5"
CLIENT_CORE, SERVER_CORE = 0, 1


def steady_config(base_delay_s: float, tokens: int, gap_s: float = GAP_S) -> dict[str, Any]:
    """A simulator config where every call is the same: ``tokens`` deltas ``gap_s`` apart after
    ``base_delay_s`` (the first one step later), no jitter, no batch slowdown."""
    return {
        "all_models": {
            "base_delay_s": base_delay_s,
            "base_delay_jitter": 0.0,
            "prefill_tokens_per_s": 1e12,
            "decode_tokens_per_s": 1.0 / gap_s,
            "batch_slowdown": 0.0,
            "max_batch": 1_000_000,
            "step_jitter": 0.0,
            "output_tokens_median": tokens,
            "output_tokens_sigma": 0.0,
            "output_tokens_min": tokens,
            "output_tokens_max": tokens,
        }
    }


def simulator_config() -> dict[str, Any]:
    """Every call: 50 deltas 20 ms apart after 50 ms."""
    return steady_config(BASE_DELAY_S, DELTAS)


# ---------------------------------------------------------------------------------------
# parent: start the simulator, run each point in a pinned child, join with the trace
# ---------------------------------------------------------------------------------------


def run_point(
    mode: str, url: str, streams: int, seconds: float, ramp_s: float, trace: Path, platform: str = "anthropic"
) -> dict[str, Any]:
    result = _run_point(mode, url, streams, seconds, ramp_s, trace, platform)
    result["starts"] = "lockstep" if ramp_s <= 0 else "spread"
    return result


def _run_point(
    mode: str, url: str, streams: int, seconds: float, ramp_s: float, trace: Path, platform: str
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--url",
        url,
        "--streams",
        str(streams),
        "--seconds",
        str(seconds),
        "--ramp",
        str(ramp_s),
        "--platform",
        platform,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"mode": mode, "streams": streams, "error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    result: dict[str, Any] = json.loads(lines[-1])
    time.sleep(0.3)  # let the simulator flush the last trace lines
    result.update(timing_errors(result.pop("calls"), trace))
    return result


def timing_errors(calls: list[list[Any]], trace: Path) -> dict[str, Any]:
    truth: dict[str, tuple[float, float, float]] = {}
    with trace.open() as f:
        for line in f:
            row = json.loads(line)
            if None not in (row.get("t_first_delta"), row.get("t_last_delta"), row.get("t_end")):
                truth[row["request_id"]] = (row["t_first_delta"], row["t_last_delta"], row["t_end"])
                if row.get("message_id"):  # what a Vertex client has in place of a request id
                    truth[row["message_id"]] = truth[row["request_id"]]
    ttft, itl, end = [], [], []
    for request_id, first, last, stop in calls:
        server = truth.get(request_id)
        if server is None:
            continue
        ttft.append(first - server[0])
        itl.append((last - server[1]) - (first - server[0]))
        end.append(stop - server[2])
    return {
        "joined": len(ttft),
        "ttft_err_ms": _p50_p99(ttft),
        "itl_err_ms": _p50_p99(itl),
        "end_err_ms": _p50_p99(end),
    }


def _p50_p99(values: list[float]) -> list[float | None]:
    from harness.core.summary import percentile

    if not values:
        return [None, None]
    ordered = sorted(values)
    return [round(percentile(ordered, 50) * 1000, 2), round(percentile(ordered, 99) * 1000, 2)]


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the least CPU per delta, with that figure's min/median/max over all runs."""
    done = [r for r in runs if "error" not in r]
    if not done:
        return runs[-1]
    best = dict(min(done, key=lambda r: r["cpu_us_per_delta"]))
    costs = sorted(r["cpu_us_per_delta"] for r in done)
    best["cpu_range"] = [costs[0], statistics.median(costs), costs[-1]] if len(done) > 1 else None
    # Run i of every mode ran in the same round, side by side in time: see _paired_ratio.
    best["cpu_runs"] = [r.get("cpu_us_per_delta") for r in runs]
    return best


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'mode':9} {'streams':>7} {'starts':>8} {'deltas/s':>9} {'CPU%':>5} {'µs/delta':>8} {'lag p99 ms':>10} "
        f"{'KB/stream':>9} {'TTFT err p50/p99 ms':>20} {'ITL err p50/p99 ms':>19} {'end err p50/p99 ms':>19} "
        f"{'calls':>6} verdict"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            rows.append(f"{r['mode']:9} {r['streams']:>7} {r.get('starts', ''):>8}  failed: {r['error']}")
            continue
        ttft, itl, end = r["ttft_err_ms"], r["itl_err_ms"], r["end_err_ms"]
        rows.append(
            f"{r['mode']:9} {r['streams']:>7} {r['starts']:>8} {r['deltas_per_s']:>9.0f} {r['cpu_percent']:>5.0f} "
            f"{r['cpu_us_per_delta']:>8.1f} {r['lag_p99_ms']:>10.1f} {r['rss_kb_per_stream']:>9.1f} "
            f"{_pair(ttft):>20} {_pair(itl):>19} {_pair(end):>19} {r['joined']:>6} {r.get('verdict', '')}"
            + (f"  (µs/delta min/median/max {_pair(r['cpu_range'])})" if r.get("cpu_range") else "")
        )
    return "\n".join(rows)


def _pair(pair: list[float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.1f}" for v in pair)


def parent(args: argparse.Namespace) -> int:
    from harness.simulator.launcher import SimulatorProcess

    streams = (
        [int(s) for s in args.streams.split(",")]
        if args.streams
        else ([10, 100, 500] if args.quick else [10, 100, 500, 1000, 2000])
    )
    modes = args.modes.split(",") if args.modes else list(MODES)
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sim.json"
        config.write_text(json.dumps(simulator_config()))
        trace = Path(tmp) / "trace.jsonl"
        sim = SimulatorProcess(["--config", str(config), "--trace", str(trace)], platform=args.platform)
        url = sim.start() + ("/v1" if args.platform == "vertex" else "")
        try:
            assert sim.proc is not None
            os.sched_setaffinity(sim.proc.pid, {SERVER_CORE})
            load = os.getloadavg()
            print(
                f"simulator ({args.platform}) on core {SERVER_CORE}, clients on core {CLIENT_CORE}; "
                f"load average {load[0]:.1f}",
                flush=True,
            )
            results = []
            # The standing lockstep row: every stream starts at once, as Locust's -r spawns them.
            points = [(n, args.ramp) for n in streams] + ([(args.lockstep, 0.0)] if args.lockstep else [])
            for n, ramp_s in points:
                runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
                for _ in range(args.repeat):
                    for mode in modes:
                        trace.write_text("")
                        r = run_point(mode, url, n, seconds, ramp_s, trace, args.platform)
                        runs[mode].append(r)
                        print(table([r]).splitlines()[-1], flush=True)
                results += [best_of(mode_runs) for mode_runs in runs.values()]
        finally:
            sim.stop()
    print()
    best = f"; best of {args.repeat} runs per point" if args.repeat > 1 else ""
    print(
        f"{DELTAS} deltas {GAP_S * 1000:.0f} ms apart per call; {seconds:g} s measured per point{best}; "
        f"load average now {os.getloadavg()[0]:.1f} (2 cores)"
    )
    print(table(results))
    overhead = _sdk_overhead(results)
    if overhead:
        print(overhead)
    return 0


def _sdk_overhead(results: list[dict[str, Any]]) -> str:
    by = {(r["mode"], r["streams"], r.get("starts")): r for r in results if "error" not in r}
    lines = []
    for (mode, streams, starts), r in sorted(by.items(), key=lambda kv: (kv[0][2] != "spread", kv[0][1])):
        mine = r["cpu_us_per_delta"]
        n = streams if starts == "spread" else f"{streams} lockstep"
        if mode == "sdk" and ("sdk-bare", streams, starts) in by:
            bare = by[("sdk-bare", streams, starts)]
            ratio, paired = _median_ratio(r, bare), _paired_ratio(r, bare)
            lines.append(
                f"  {n} streams: sdk {mine:.1f} µs/delta vs bare SDK {bare['cpu_us_per_delta']:.1f} -> "
                f"{100 * (mine / bare['cpu_us_per_delta'] - 1):+.0f}%"
                + ("" if ratio is None else f" (medians: {100 * (ratio - 1):+.0f}%")
                + ("" if ratio is None or paired is None else f", paired: {100 * (paired - 1):+.0f}%")
                + ("" if ratio is None else ")")
            )
        if mode == "fast" and ("floor", streams, starts) in by:
            floor = by[("floor", streams, starts)]
            ratio, paired = _median_ratio(r, floor), _paired_ratio(r, floor)
            lines.append(
                f"  {n} streams: fast {mine:.1f} µs/delta = {mine / floor['cpu_us_per_delta']:.2f}x "
                f"the floor's {floor['cpu_us_per_delta']:.1f}"
                + ("" if ratio is None else f" (medians: {ratio:.2f}x")
                + ("" if ratio is None or paired is None else f", paired: {paired:.2f}x")
                + ("" if ratio is None else ")")
            )
    return "harness overhead:\n" + "\n".join(lines) if lines else ""


def _median_ratio(mine: dict[str, Any], other: dict[str, Any]) -> float | None:
    # Best-of compares each mode's least disturbed run; the medians say whether that was luck.
    if not mine.get("cpu_range") or not other.get("cpu_range"):
        return None
    return float(mine["cpu_range"][1] / other["cpu_range"][1])


def _paired_ratio(mine: dict[str, Any], other: dict[str, Any]) -> float | None:
    # The median of each round's ratio: the two runs of a round share the machine's spell,
    # which the ratio of the medians does not cancel (at 10 streams a run uses ~10 % of a
    # core, and one background wake-up more or less moves it by a third).
    pairs = [
        a / b
        for a, b in zip(mine.get("cpu_runs") or [], other.get("cpu_runs") or [], strict=False)
        if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) and b > 0
    ]
    return float(statistics.median(pairs)) if len(pairs) > 1 else None


# ---------------------------------------------------------------------------------------
# child: one mode, N streams, pinned to the client core
# ---------------------------------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {CLIENT_CORE})
    from gevent import monkey

    monkey.patch_all()
    from benchmarks import _clients

    result = _clients.run(
        args.child,
        args.url,
        int(args.streams),
        args.seconds,
        model=MODEL,
        max_tokens=DELTAS,
        ramp_s=args.ramp,
        gap_s=GAP_S,
        platform=args.platform,
    )
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10, 100 and 500 streams, 2 s per point")
    parser.add_argument("--streams", help="comma-separated stream counts, e.g. 100,500")
    parser.add_argument("--modes", help=f"comma-separated modes out of {','.join(MODES)}")
    parser.add_argument("--seconds", type=float, help="measured seconds per point (default 4, --quick 2)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per point, modes interleaved; the best is shown (default 1)"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=1.0,
        help="seconds over which each point's streams start, evenly spread (default 1; 0: all at once)",
    )
    parser.add_argument(
        "--platform",
        choices=("anthropic", "bedrock", "vertex"),
        default="anthropic",
        help="the API the simulator speaks and the harness calls (bedrock, vertex: harness modes only)",
    )
    parser.add_argument(
        "--lockstep",
        type=int,
        default=300,
        help="streams of the standing lockstep row: all started at once (default 300; 0: no such row)",
    )
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.modes and not set(args.modes.split(",")) <= set(MODES):
        parser.error(f"--modes: choose from {','.join(MODES)}")
    if args.platform != "anthropic" and not args.modes:
        args.modes = "fast,sdk"
    if args.platform != "anthropic" and not set(args.modes.split(",")) <= {"fast", "sdk"}:
        parser.error(
            "--platform bedrock|vertex: the modes are fast and sdk (the others speak only the first-party API)"
        )
    if args.repeat < 1:
        parser.error("--repeat: give 1 or more")
    if args.ramp < 0:
        parser.error("--ramp: give 0 or more seconds")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
