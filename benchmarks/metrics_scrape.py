"""What scraping a live run costs it: CPU per scrape, and whether the TTFT figures move.

    python benchmarks/metrics_scrape.py                  # 300 streams, fast transport, 3 rounds
    python benchmarks/metrics_scrape.py --streams 100 --rounds 1 --seconds 6

The simulator (benchmarks/generator.py's configuration: every call 50 deltas 20 ms apart
after 50 ms, no jitter) runs pinned to one core with a ground-truth ``--trace``; each run
is a real ``locust --headless`` process (``ShortChat``, ``--transport fast``, N users, so
N streams at once) pinned to the other core, with ``--metrics-port``. This process, on the
simulator's core, scrapes ``/metrics`` during a measured window of each run at one of
three rates, rounds interleaved so that a slow spell of the shared machine hits every
rate alike:

* ``none``: no scrape (the baseline);
* ``1/s``: a Prometheus scraping every second (more often than any dashboard needs);
* ``max``: back to back, one scraper, so that the CPU of the scrapes stands out from the run's own.

Per run: the locust process's CPU over the window (percent of one core), scrapes served,
their median wall time seen by the scraper, and the TTFT error, p50/p99, of the calls
whose first token came in the window: the harness's ``t_first_token`` minus the
simulator's write time of the first delta, joined by request id (CLOCK_MONOTONIC is one
clock for every process of a host). At 1/s the calls are also split within each run: those
whose first delta was sent in the 50 ms after a scrape began against the others, a
comparison the machine's other load cannot bias (it hits both alike). CPU per scrape is
measured inside the locust process (benchmarks/scrape_probe.py: the thread CPU time of
the greenlets answering ``/metrics``), so other processes' load does not enter it.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.generator import CLIENT_CORE, SERVER_CORE, simulator_config  # noqa: E402
from harness.core.summary import percentile  # noqa: E402

RATES = {"none": 0.0, "1/s": 1.0, "max": float("inf")}
WARMUP_S = 4.0  # every user spawned and past its first call before the window opens
# A call counts as near a scrape when its first delta was sent up to this long after a scrape
# began. A fixed span, not the scrape's own duration: a scrape lasts longer when the loop is
# slow for any reason, and would then claim the machine's slow spells as its own.
NEAR_S = 0.050


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> tuple[float, float]:
    """One scrape: when it began and ended, on ``time.monotonic()`` (the clock of the trace and the records)."""
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
    return t0, time.monotonic()


def run(host: str, trace: Path, streams: int, seconds: float, rate: float, work: Path) -> dict[str, Any]:
    out = work / f"run-{time.monotonic_ns()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))}
    env["SCRAPE_PROBE_OUT"] = str(work / "probe.json")
    cmd = [
        *(sys.executable, "-m", "locust", "-f", "locustfile.py,benchmarks/scrape_probe.py", "ShortChat"),
        *("--headless", "--host", host),
        *("--transport", "fast", "-u", str(streams), "-r", str(streams), "-t", f"{WARMUP_S + seconds + 2:g}s"),
        *("--max-tokens", "50", "--metrics-port", str(port), "--report-dir", str(out), "--loglevel", "WARNING"),
    ]
    trace.write_text("")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CORE}),
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the endpoint is up once the harness is installed, before the first user
            try:
                scrape(url)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "locust did not come up"
                time.sleep(0.1)
        time.sleep(WARMUP_S)
        me = psutil.Process(proc.pid)
        c0, w0 = sum(me.cpu_times()[:2]), time.monotonic()
        scrapes: list[tuple[float, float]] = []
        while (now := time.monotonic()) < w0 + seconds:
            if rate:
                scrapes.append(scrape(url))
                time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - now)))
            else:
                time.sleep(min(0.1, w0 + seconds - now))
        c1, w1 = sum(me.cpu_times()[:2]), time.monotonic()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.3)  # the simulator's last trace lines
    return {
        "cpu_s": c1 - c0,
        "cpu_percent": 100.0 * (c1 - c0) / (w1 - w0),
        "probe": json.loads((work / "probe.json").read_text()),
        "scrapes": len(scrapes),
        "scrape_wall_ms": 1000.0 * statistics.median(t1 - t0 for t0, t1 in scrapes) if scrapes else None,
        **ttft_errors(out / "requests.jsonl", trace, w0, w1, scrapes),
        **health(out / "summary.json"),
    }


def health(summary: Path) -> dict[str, Any]:
    """The run's own generator-health figures (whole run): loop lag p99 and how late first tokens were read."""
    local = json.loads(summary.read_text())["generator"]["processes"]["local"]
    late = local.get("first_token_late_s") or {}
    p99 = [local["loop_lag_s"]["p99"], late.get("p99")]
    return {"lag_late_p99_ms": [None if v is None else round(1000.0 * v, 1) for v in p99]}


def ttft_errors(
    requests: Path, trace: Path, w0: float, w1: float, scrapes: list[tuple[float, float]]
) -> dict[str, Any]:
    """TTFT error p50/p99 (ms) of the window's calls; and split: first delta sent near a scrape's start, or not."""
    truth = {}
    for line in trace.open():
        row = json.loads(line)
        if row.get("t_first_delta") is not None:
            truth[row["request_id"]] = row["t_first_delta"]
    starts = [t0 for t0, _ in scrapes]
    everything: list[float] = []
    during: list[float] = []
    outside: list[float] = []
    for line in requests.open():
        r = json.loads(line)
        first, sent = r.get("t_first_token"), truth.get(r.get("request_id"))
        if r["outcome"] != "ok" or first is None or sent is None or not w0 <= first <= w1:
            continue
        error = first - sent
        everything.append(error)
        i = bisect.bisect_right(starts, sent) - 1
        (during if i >= 0 and sent <= starts[i] + NEAR_S else outside).append(error)
    return {
        "calls": len(everything),
        "ttft_err_ms": _p50_p99(everything),
        "during": len(during),
        "ttft_err_during_ms": _p50_p99(during),
        "ttft_err_outside_ms": _p50_p99(outside),
    }


def _p50_p99(values: list[float]) -> list[float | None]:
    values = sorted(values)
    return [round(1000.0 * percentile(values, q), 2) for q in (50, 99)] if values else [None, None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every rate, interleaved (default 3)")
    args = parser.parse_args(argv)

    from harness.simulator.launcher import SimulatorProcess

    os.sched_setaffinity(0, {SERVER_CORE})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "sim.json").write_text(json.dumps(simulator_config()))
        trace = work / "trace.jsonl"
        sim = SimulatorProcess(["--config", str(work / "sim.json"), "--trace", str(trace)])
        host = sim.start()
        try:
            assert sim.proc is not None
            os.sched_setaffinity(sim.proc.pid, {SERVER_CORE})
            print(
                f"{args.streams} streams, --transport fast, locust on core {CLIENT_CORE}; simulator and scraper on"
                f" core {SERVER_CORE}; {args.seconds:g} s windows; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in RATES}
            for i in range(args.rounds):
                for name, rate in RATES.items():
                    r = run(host, trace, args.streams, args.seconds, rate, work)
                    results[name].append(r)
                    print(f"round {i + 1} {name:>5}: {_row(r)}", flush=True)
        finally:
            sim.stop()
    print(f"\nload average now {os.getloadavg()[0]:.1f} (2 cores)")
    for name, runs in results.items():
        cpu = statistics.median(r["cpu_percent"] for r in runs)
        p50 = statistics.median(r["ttft_err_ms"][0] for r in runs if r["ttft_err_ms"][0] is not None)
        p99 = statistics.median(r["ttft_err_ms"][1] for r in runs if r["ttft_err_ms"][1] is not None)
        print(f"{name:>5}: CPU {cpu:.1f} % (median of {len(runs)}), TTFT error p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    during = [r["ttft_err_during_ms"] for r in results["1/s"] if r["during"]]
    outside = [r["ttft_err_outside_ms"] for r in results["1/s"] if r["ttft_err_outside_ms"][0] is not None]
    if during and outside:
        print(
            f"  1/s: calls whose first delta was sent <= {1000 * NEAR_S:.0f} ms after a scrape began: TTFT error"
            f" p50/p99 {_median_pair(during)} ms (median over runs); the other calls': {_median_pair(outside)} ms"
        )
    for name in ("1/s", "max"):
        per_scrape = [
            1000.0 * r["probe"]["cpu_s"] / r["probe"]["scrapes"] for r in results[name] if r["probe"]["scrapes"]
        ]
        print(
            f"{name:>5}: CPU per scrape, in-process: {statistics.median(per_scrape):.2f} ms"
            f" (per run: {', '.join(f'{x:.2f}' for x in per_scrape)} ms)"
        )
    return 0


def _median_pair(pairs: list[list[float | None]]) -> str:
    medians = [statistics.median(v for p in pairs if (v := p[i]) is not None) for i in (0, 1)]
    return "/".join(f"{m:.2f}" for m in medians)


def _row(r: dict[str, Any]) -> str:
    wall = "-" if r["scrape_wall_ms"] is None else f"{r['scrape_wall_ms']:.1f} ms"
    p50, p99 = r["ttft_err_ms"]
    probe = r["probe"]
    per_scrape = f"{1000.0 * probe['cpu_s'] / probe['scrapes']:.2f} ms CPU each" if r["scrapes"] else "-"
    text = (
        f"CPU {r['cpu_percent']:5.1f} %, {r['scrapes']:3d} scrapes ({per_scrape}, median wall {wall}),"
        f" {r['calls']} calls, TTFT error p50/p99 {p50}/{p99} ms;"
        f" loop lag / first-token read p99 {r['lag_late_p99_ms'][0]} / {r['lag_late_p99_ms'][1]} ms"
    )
    if r["during"]:
        (d50, d99), (o50, o99) = r["ttft_err_during_ms"], r["ttft_err_outside_ms"]
        near = f"first delta <= {1000 * NEAR_S:.0f} ms after a scrape began ({r['during']} calls)"
        text += f"; {near}: {d50}/{d99} ms, others: {o50}/{o99} ms"
    return text


if __name__ == "__main__":
    sys.exit(main())
