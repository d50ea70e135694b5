"""A soak's memory, per-record cost and end-of-run reduction: synthetic calls, or the harness against the simulator.

    python benchmarks/soak.py --calls 10000000 --store new
    python benchmarks/soak.py --calls 1000000 --store old
    python benchmarks/soak.py --calls 1000000 --store paired
    python benchmarks/soak.py --calls 1000000 --store listeners [--web] [--rotate-records 100MB]
    python benchmarks/soak.py --simulate 300 --users 20 --interval 30

Mode 1 (this one): ``--calls`` synthetic finished-call records (``--deltas`` inter-token
gaps each, 1% failed) go through a sample store: ``new`` is the spilled store
(:class:`harness.core.spillstore.SpilledSampleStore`, samples on disk), ``old`` today's
:class:`harness.summary.SampleStore` (every sample in memory). Building the records is not
timed; only ``store.add``. Printed: RSS and µs per record at each million (each tenth of a run under 2 M), the
end-of-run reduction (``summary()``) time, and last ``rss_growth_mb_per_million=X``: the
RSS slope from the first million (buffers filled, allocator warm) to the last, per million
calls (over the whole run if it had under two millions).

``--store paired`` measures only the per-record cost, robustly on a shared machine: each
batch of records goes through both stores, in alternating order, and the figure is the
median over batches of the ratio new/old (1.0 = the same cost).

``--store listeners`` fires each record as a run does (``llm_request``) at a real
``Environment`` with every feature of the CLI's list installed (``--web``: the web UI's live
figures too) and ``--report-dir`` a temporary directory, so it measures every listener:
the run's store, ``requests.jsonl``, retries, rate limits, spend, the stage analysis.
The reduction time is then the whole ``test_stop`` (summary.json and every section).

Mode 2 (``--simulate SECONDS``): the harness against the embedded simulator (5 ms to the
first token, 8 tokens at 2,000 tokens/s, so calls of ~10 ms) with ``--users`` users of
the fast transport and no wait, through the real listeners, for SECONDS; every
``--interval`` it prints calls, calls/s, RSS and the listeners' µs per record (timed
around ``llm_request``), then the end-of-run ``test_stop`` time and the RSS slope.
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.measure import OK, CallRecord, Outcome
from harness.core.spillstore import SpilledSampleStore
from harness.core.summary import SampleStore

MILLION = 1_000_000
BATCH = 2000
RATE = 1000.0  # synthetic calls end this many per (monotonic-clock) second


def batch_of_records(rng: np.random.Generator, first: int, n: int, deltas: int, scenarios: int) -> list[CallRecord]:
    ttft = rng.lognormal(-1.5, 0.5, n).tolist()
    itl = rng.lognormal(-4.0, 0.3, (n, deltas))
    failed = (rng.random(n) < 0.01).tolist()
    records = []
    for i in range(n):
        gaps = itl[i].tolist()
        t = ttft[i]
        end = 1000.0 + (first + i) / RATE
        if failed[i]:
            records.append(
                CallRecord(
                    f"c{first + i}",
                    f"s{i % scenarios}",
                    "m",
                    True,
                    Outcome.http(429),
                    completion_s=t,
                    t_scheduled=end - t,
                    t_start=end - t,
                    t_end=end,
                )
            )
            continue
        completion = t + sum(gaps)
        records.append(
            CallRecord(
                f"c{first + i}",
                f"s{i % scenarios}",
                "m",
                True,
                OK,
                ttft_s=t,
                first_text_s=t,
                completion_s=completion,
                tpot_s=(completion - t) / deltas,
                itl_s=gaps,
                input_tokens=200,
                output_tokens=deltas + 1,
                t_scheduled=end - completion,
                t_start=end - completion,
                t_end=end,
            )
        )
    return records


class Listeners:
    """A run's every ``llm_request`` listener, as the CLI installs them: ``add`` fires one record."""

    def __init__(self, report_dir: Path, *, web: bool, rotate: str | None, host: str = "http://127.0.0.1:9") -> None:
        from locust.env import Environment

        from harness import plugin
        from harness.monitors import live
        from harness.runtime.options import HarnessOptions
        from harness.runtime.state import attach

        self.environment = env = Environment(user_classes=[], host=host)
        env.create_local_runner()
        self.harness = attach(env, HarnessOptions(report_dir=str(report_dir)))
        if rotate:
            from harness.runtime import rolling

            self.harness.install(rolling.FEATURE, rolling.SoakOptions(rotate_records=rolling._size(rotate)))
        for feature in plugin.FEATURES:
            self.harness.install(feature)
        if web:
            live.install(self.harness, always=True)
        env.events.test_start.fire(environment=env)
        self._fire = env.events.llm_request.fire  # type: ignore[attr-defined]

    def add(self, record: CallRecord) -> None:
        self._fire(record=record, environment=self.environment)

    def summary(self, duration_s: float) -> dict[str, Any]:
        self.environment.events.test_stop.fire(environment=self.environment)
        document = self.harness.last_summary
        assert document is not None
        return document

    def close(self) -> None:
        self.environment.events.quitting.fire(environment=self.environment)


def paired(rng: np.random.Generator, calls: int, deltas: int, scenarios: int) -> int:
    old, new = SampleStore(), SpilledSampleStore()
    ratios, spent = [], {"old": 0.0, "new": 0.0}
    for first in range(0, calls, BATCH):
        records = batch_of_records(rng, first, min(BATCH, calls - first), deltas, scenarios)
        took: dict[str, float] = {}
        order: list[tuple[str, SampleStore | SpilledSampleStore]] = [("old", old), ("new", new)]
        for name, store in order if (first // BATCH) % 2 else order[::-1]:
            t0 = time.perf_counter()
            for record in records:
                store.add(record)
            took[name] = time.perf_counter() - t0
            spent[name] += took[name]
        ratios.append(took["new"] / took["old"])
    new.close()
    print(f"per record: old={spent['old'] / calls * 1e6:.2f} us  new={spent['new'] / calls * 1e6:.2f} us")
    print(f"new/old per-record cost, median of {len(ratios)} paired batches: {float(np.median(ratios)):.3f}")
    return 0


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=MILLION)
    parser.add_argument("--store", choices=("old", "new", "paired", "listeners"), default="new")
    parser.add_argument("--web", action="store_true", help="listeners: the web UI's live figures too")
    parser.add_argument("--rotate-records", metavar="SIZE", help="listeners, --simulate: rotate requests.jsonl")
    parser.add_argument("--simulate", type=float, metavar="SECONDS", help="mode 2: against the simulator")
    parser.add_argument("--users", type=int, default=20, help="mode 2: users (default 20)")
    parser.add_argument("--interval", type=float, default=30.0, help="mode 2: seconds between lines (default 30)")
    parser.add_argument("--deltas", type=int, default=50, help="inter-token gaps per call (default 50)")
    parser.add_argument("--scenarios", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the new store spills (default: a temp dir)")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    if args.simulate:
        return simulate(args.simulate, args.users, args.interval, args.rotate_records)
    if args.store == "paired":
        return paired(rng, args.calls, args.deltas, args.scenarios)
    spill_dir = args.dir or Path(tempfile.mkdtemp(prefix="soak-"))
    store: SampleStore | SpilledSampleStore | Listeners
    if args.store == "listeners":
        store = Listeners(spill_dir, web=args.web, rotate=args.rotate_records)
    else:
        store = SampleStore() if args.store == "old" else SpilledSampleStore(directory=spill_dir)
    gc.collect()
    start_rss = rss_mb()
    marks = [(0, start_rss)]
    print(f"store={args.store} calls={args.calls:,} deltas={args.deltas} scenarios={args.scenarios}")
    print(f"start rss={start_rss:.1f} MB")
    add_s = window_s = 0.0
    step = MILLION if args.calls >= 2 * MILLION else max(BATCH, args.calls // 10)  # a line each step
    done = 0
    began = time.perf_counter()
    while done < args.calls:
        n = min(BATCH, args.calls - done)
        records = batch_of_records(rng, done, n, args.deltas, args.scenarios)
        t0 = time.perf_counter()
        for record in records:
            store.add(record)
        spent = time.perf_counter() - t0
        add_s += spent
        window_s += spent
        before = done
        done += n
        del records
        if done // step != before // step or done == args.calls:
            rss = rss_mb()
            marks.append((done, rss))
            calls_in_window = done - marks[-2][0]
            print(
                f"calls={done:>11,} rss={rss:8.1f} MB  add={window_s / calls_in_window * 1e6:5.2f} us/record"
                f"  elapsed={time.perf_counter() - began:6.1f} s",
                flush=True,
            )
            window_s = 0.0
    fed_rss = rss_mb()
    t0 = time.perf_counter()
    summary = store.summary(duration_s=1.0)
    reduce_s = time.perf_counter() - t0
    after_rss = rss_mb()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    disk = sum(p.stat().st_size for p in spill_dir.glob("**/*.f64")) / 2**20
    itl = summary["overall"]["itl_s"]
    print(f"samples: itl={itl['count']:,} p50={itl['p50']:.6f} p99={itl['p99']:.6f}")
    what = "llm_request listeners" if isinstance(store, Listeners) else "store.add"
    print(f"per record ({what}): {add_s / args.calls * 1e6:.2f} us")
    print(f"end-of-run reduction: {reduce_s:.2f} s  rss after={after_rss:.1f} MB  peak rss={peak_mb:.1f} MB")
    print(f"spilled on disk: {disk:,.0f} MB")
    print(f"rss growth over the run: {fed_rss - start_rss:.1f} MB")
    if isinstance(store, SpilledSampleStore | Listeners):
        store.close()
    if args.dir is None:
        shutil.rmtree(spill_dir, ignore_errors=True)
    print(f"rss_growth_mb_per_million={growth_per_million(marks):.2f}")
    return 0


def growth_per_million(marks: list[tuple[int, float]]) -> float:
    """The RSS slope from the first million calls (buffers full, allocator warm) to the last mark."""
    whole_millions = [m for m in marks if m[0] >= MILLION]
    if len(whole_millions) >= 2:
        (c0, r0), (c1, r1) = whole_millions[0], whole_millions[-1]
    else:
        # Short runs: from the first mark past a fifth of the run (start-up allocations done).
        later = [m for m in marks if m[0] >= marks[-1][0] / 5] or marks
        (c0, r0), (c1, r1) = later[0], marks[-1]
    return (r1 - r0) / ((c1 - c0) / MILLION) if c1 > c0 else 0.0


def simulate(seconds: float, users: int, interval: float, rotate: str | None) -> int:
    """Mode 2: the harness against the embedded simulator; see the module docstring."""
    import gevent
    from locust.env import Environment

    from harness import AnthropicUser, plugin
    from harness.runtime.options import HarnessOptions
    from harness.runtime.state import attach
    from harness.simulator.launcher import SimulatorProcess

    class Short(AnthropicUser):
        model = "claude-haiku-4-5"
        max_tokens = 8
        prompt = "hi"

    report_dir = Path(tempfile.mkdtemp(prefix="soak-sim-"))
    with SimulatorProcess(["--ttft", "0.005", "--tps", "2000", "--seed", "1", "--max-batch", "1000"]) as sim:
        assert sim.url is not None
        env = Environment(user_classes=[Short], host=sim.url)
        runner = env.create_local_runner()
        harness = attach(env, HarnessOptions(report_dir=str(report_dir), transport="fast"))
        if rotate:
            from harness.runtime import rolling

            harness.install(rolling.FEATURE, rolling.SoakOptions(rotate_records=rolling._size(rotate)))
        for feature in plugin.FEATURES:
            harness.install(feature)
        spent = [0.0, 0.0]  # listeners' seconds, and the one call's start

        def begin(**_: Any) -> None:
            spent[1] = time.perf_counter()

        def end(**_: Any) -> None:
            spent[0] += time.perf_counter() - spent[1]

        hook: Any = env.events.llm_request  # type: ignore[attr-defined]
        hook._handlers.insert(0, begin)  # first and last of the run's listeners
        harness.transport(sim.url)
        hook.add_listener(end)
        runner.start(users, spawn_rate=users)
        start_rss = rss_mb()
        marks: list[tuple[int, float]] = [(0, start_rss)]
        print(f"simulate {seconds:g} s, {users} users, fast transport; start rss={start_rss:.1f} MB", flush=True)
        began = time.monotonic()
        last_calls, last_spent, last_t = 0, 0.0, began
        while time.monotonic() - began < seconds:
            gevent.sleep(min(interval, seconds - (time.monotonic() - began)))
            calls, now = harness.store.calls, time.monotonic()
            rss = rss_mb()
            marks.append((calls, rss))
            n = calls - last_calls
            per = (spent[0] - last_spent) / n * 1e6 if n else 0.0
            print(
                f"t={now - began:6.0f} s  calls={calls:>9,}  calls/s={n / (now - last_t):7.1f}  rss={rss:7.1f} MB"
                f"  listeners={per:5.1f} us/record",
                flush=True,
            )
            last_calls, last_spent, last_t = calls, spent[0], now
        stopping = time.perf_counter()
        stop_hook: Any = env.events.test_stop
        stop_hook._handlers.insert(0, lambda **_: spent.__setitem__(1, time.perf_counter()))
        done: list[float] = []
        stop_hook.add_listener(lambda **_: done.append(time.perf_counter() - spent[1]))
        runner.quit()
        print(f"end-of-run test_stop (summary.json and its sections): {done[0] if done else float('nan'):.2f} s")
        print(f"stop and quit: {time.perf_counter() - stopping:.2f} s")
        calls = harness.store.calls
        env.events.quitting.fire(environment=env)
    print(f"calls={calls:,}  per record (llm_request listeners): {spent[0] / max(1, calls) * 1e6:.2f} us")
    shutil.rmtree(report_dir, ignore_errors=True)
    print(f"rss_growth_mb_per_million={growth_per_million(marks):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
