"""Are a run's edges true? Run length and the first and last calls' timing, over many short runs.

    python benchmarks/run_edges.py                       # 10 runs a transport, 2-20 users, 6 s each (~3 min)
    python benchmarks/run_edges.py --runs 4 --transports fast --seconds 4
    python benchmarks/run_edges.py --stop-users 300      # also: 300 users stopped by -t

Each run is the ``locust`` CLI as a user runs it (``--headless -u N -r N -t S --host URL``)
against the simulator with a ground-truth ``--trace`` (its own ``time.monotonic()`` of each
first and last delta written; CLOCK_MONOTONIC is one clock for every process of a host):
every call has a fixed TTFT (``--ttft``, default 300 ms) and 20 tokens 20 ms apart, no
jitter. Joined with ``requests.jsonl`` by request-id, each run gives:

* the run-length error: ``summary.json`` ``duration_s`` minus the ``-t`` asked;
* the largest TTFT error (first-token stamp minus the server's write of the first delta)
  and completion error (``t_end`` minus the server's last byte) of each user's first and
  last ok calls, and of all ok calls;
* calls ok / cancelled / failed, and the exit code.

Targets (issue 19): duration within 0.1 s; no ok call's TTFT more than 5 ms above the
truth, nor its completion more than 10 ms; a run stopped by ``-t`` has no failure and
exits 0. The machine's load average is printed with each run: on a shared machine it is
part of every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generator import steady_config  # noqa: E402  (after the path)

TOKENS = 20
GAP_S = 0.020
LOCUSTFILE = """
from locust import constant
from harness import AnthropicUser

class Edge(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = {tokens}
    prompt = "Write a short poem."
    wait_time = constant(0)
"""


def simulator_config(ttft_s: float) -> dict[str, Any]:
    """Every call: the first delta ``ttft_s`` after the request, then one every 20 ms; no jitter."""
    return steady_config(ttft_s - GAP_S, TOKENS, GAP_S)  # the first delta follows the base delay by one step


def one_run(url: str, trace: Path, workdir: Path, *, transport: str, users: int, seconds: int) -> dict[str, Any]:
    out = workdir / f"run-{transport}-{users}"
    trace.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    load = os.getloadavg()[0]
    args = f"-f {workdir / 'edges.py'} --headless -u {users} -r {users} -t {seconds}s --host {url}"
    cmd = [sys.executable, "-m", "locust", *args.split(), "--transport", transport, "--report-dir", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=seconds + 120, check=False)
    summary = json.loads((out / "summary.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    truth = {}
    for line in trace.read_text().splitlines():
        row = json.loads(line)
        truth[row["request_id"]] = row
    return {
        "transport": transport,
        "users": users,
        "load": load,
        "exit": done.returncode,
        "duration_err_ms": 1000.0 * (summary["duration_s"] - seconds),
        **edge_errors(records, truth),
    }


def edge_errors(records: list[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The largest TTFT and completion errors (ms) of each user's first and last ok calls, and of all."""
    ok = [r for r in records if r["outcome"] == "ok" and r.get("request_id") in truth]
    by_user: dict[Any, list[dict[str, Any]]] = {}
    for r in sorted(ok, key=lambda r: r["t_start"]):
        by_user.setdefault(r["user_id"], []).append(r)

    def worst(calls: list[dict[str, Any]]) -> tuple[float | None, float | None]:
        if not calls:
            return None, None
        ttft = max(c["t_first_token"] - truth[c["request_id"]]["t_first_delta"] for c in calls)
        end = max(c["t_end"] - truth[c["request_id"]]["t_end"] for c in calls)
        return 1000.0 * ttft, 1000.0 * end

    outcomes = [r["outcome"] for r in records]
    return {
        "ok": len(ok),
        "cancelled": outcomes.count("cancelled"),
        "failed": len(outcomes) - outcomes.count("ok") - outcomes.count("cancelled"),
        "first": worst([calls[0] for calls in by_user.values()]),
        "last": worst([calls[-1] for calls in by_user.values()]),
        "all": worst(ok),
    }


def row(r: dict[str, Any]) -> str:
    def pair(p: tuple[float | None, float | None]) -> str:
        return "/".join("-" if v is None else f"{v:.1f}" for v in p)

    return (
        f"{r['transport']:9} {r['users']:>5} {r['load']:>5.1f} {r['exit']:>4} {r['duration_err_ms']:>+9.1f} "
        f"{r['ok']:>5} {r['cancelled']:>5} {r['failed']:>6} {pair(r['first']):>13} {pair(r['last']):>13} "
        f"{pair(r['all']):>13}"
    )


HEAD = (
    f"{'transport':9} {'users':>5} {'load':>5} {'exit':>4} {'run err ms':>9} {'ok':>5} {'canc.':>5} {'failed':>6} "
    f"{'first ms':>13} {'last ms':>13} {'all ok ms':>13}"
)
LEGEND = "first/last/all ok ms: largest TTFT error / completion error against the server's trace"


def main(argv: list[str] | None = None) -> int:
    from harness.simulator.launcher import SimulatorProcess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per transport (default 10)")
    parser.add_argument("--users", default="2,5,10,20", help="user counts, used in turn (default 2,5,10,20)")
    parser.add_argument("--seconds", type=int, default=6, help="-t of each run, whole seconds (default 6)")
    parser.add_argument("--ttft", type=float, default=0.3, help="the server's TTFT in seconds (default 0.3)")
    parser.add_argument("--transports", default="sdk,fast", help="comma-separated (default sdk,fast)")
    parser.add_argument("--stop-users", type=int, default=0, help="also one run of N users a transport (e.g. 300)")
    args = parser.parse_args(argv)
    users = [int(u) for u in args.users.split(",")]
    transports = args.transports.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "sim.json").write_text(json.dumps(simulator_config(args.ttft)))
        (workdir / "edges.py").write_text(LOCUSTFILE.format(tokens=TOKENS))
        trace = workdir / "trace.jsonl"
        with SimulatorProcess(["--config", str(workdir / "sim.json"), "--trace", str(trace)]) as sim:
            assert sim.url is not None
            print(f"-t {args.seconds}s, TTFT {args.ttft * 1000:.0f} ms, {TOKENS} tokens {GAP_S * 1000:.0f} ms apart")
            print(LEGEND)
            print(HEAD)
            results = []
            for transport in transports:
                for i in range(args.runs):
                    r = one_run(
                        sim.url, trace, workdir, transport=transport, users=users[i % len(users)], seconds=args.seconds
                    )
                    results.append(r)
                    print(row(r), flush=True)
                if args.stop_users:
                    r = one_run(
                        sim.url, trace, workdir, transport=transport, users=args.stop_users, seconds=args.seconds
                    )
                    results.append(r)
                    print(row(r), flush=True)
    print()
    for transport in transports:
        mine = [r for r in results if r["transport"] == transport]
        durations = [abs(r["duration_err_ms"]) for r in mine]
        ttft = [r["all"][0] for r in mine if r["all"][0] is not None]
        end = [r["all"][1] for r in mine if r["all"][1] is not None]
        print(
            f"{transport}: {len(mine)} runs; run length error up to {max(durations):.1f} ms; "
            f"TTFT error up to {max(ttft, default=float('nan')):.1f} ms; completion error up to "
            f"{max(end, default=float('nan')):.1f} ms; failed calls {sum(r['failed'] for r in mine)}; "
            f"exit codes {sorted({r['exit'] for r in mine})}; load average now {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
