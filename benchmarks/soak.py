"""A soak's memory, per-record cost and end-of-run reduction, with synthetic finished calls.

    python benchmarks/soak.py --calls 10000000 --store new
    python benchmarks/soak.py --calls 1000000 --store old
    python benchmarks/soak.py --calls 1000000 --store paired

Mode 1 (this one): ``--calls`` synthetic finished-call records (``--deltas`` inter-token
gaps each, 1% failed) go through a sample store: ``new`` is the spilled store
(:class:`harness.core.spillstore.SpilledSampleStore`, samples on disk), ``old`` today's
:class:`harness.summary.SampleStore` (every sample in memory). Building the records is not
timed; only ``store.add``. Printed: RSS and µs per record at each million, the
end-of-run reduction (``summary()``) time, and last ``rss_growth_mb_per_million=X``: the
RSS slope from the first million (buffers filled, allocator warm) to the last, per million
calls (over the whole run if it had under two millions).

``--store paired`` measures only the per-record cost, robustly on a shared machine: each
batch of records goes through both stores, in alternating order, and the figure is the
median over batches of the ratio new/old (1.0 = the same cost).

Mode 2 (against the simulator through the real listeners) comes with the runtime wiring.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.measure import OK, CallRecord, Outcome
from harness.core.spillstore import SpilledSampleStore
from harness.core.summary import SampleStore

MILLION = 1_000_000
BATCH = 2000


def batch_of_records(rng: np.random.Generator, first: int, n: int, deltas: int, scenarios: int) -> list[CallRecord]:
    ttft = rng.lognormal(-1.5, 0.5, n).tolist()
    itl = rng.lognormal(-4.0, 0.3, (n, deltas))
    failed = (rng.random(n) < 0.01).tolist()
    records = []
    for i in range(n):
        gaps = itl[i].tolist()
        t = ttft[i]
        if failed[i]:
            records.append(
                CallRecord(f"c{first + i}", f"s{i % scenarios}", "m", True, Outcome.http(429), completion_s=t)
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
            )
        )
    return records


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
    parser.add_argument("--store", choices=("old", "new", "paired"), default="new")
    parser.add_argument("--deltas", type=int, default=50, help="inter-token gaps per call (default 50)")
    parser.add_argument("--scenarios", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the new store spills (default: a temp dir)")
    args = parser.parse_args()

    rng = np.random.default_rng(1)
    if args.store == "paired":
        return paired(rng, args.calls, args.deltas, args.scenarios)
    spill_dir = args.dir or Path(tempfile.mkdtemp(prefix="soak-"))
    store: SampleStore | SpilledSampleStore = (
        SampleStore() if args.store == "old" else SpilledSampleStore(directory=spill_dir)
    )
    gc.collect()
    start_rss = rss_mb()
    marks = [(0, start_rss)]
    print(f"store={args.store} calls={args.calls:,} deltas={args.deltas} scenarios={args.scenarios}")
    print(f"start rss={start_rss:.1f} MB")
    add_s = window_s = 0.0
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
        if done // MILLION != before // MILLION or done == args.calls:
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
    disk = sum(p.stat().st_size for p in spill_dir.glob("*.f64")) / 2**20
    itl = summary["overall"]["itl_s"]
    print(f"samples: itl={itl['count']:,} p50={itl['p50']:.6f} p99={itl['p99']:.6f}")
    print(f"per record (store.add): {add_s / args.calls * 1e6:.2f} us")
    print(f"end-of-run reduction: {reduce_s:.2f} s  rss after={after_rss:.1f} MB  peak rss={peak_mb:.1f} MB")
    print(f"spilled on disk: {disk:,.0f} MB")
    print(f"rss growth over the run: {fed_rss - start_rss:.1f} MB")
    if isinstance(store, SpilledSampleStore):
        store.close()
    if args.dir is None:
        spill_dir.rmdir()
    whole_millions = [m for m in marks if m[0] >= MILLION]
    if len(whole_millions) >= 2:
        (c0, r0), (c1, r1) = whole_millions[0], whole_millions[-1]
    else:
        (c0, r0), (c1, r1) = marks[0], marks[-1]
    print(f"rss_growth_mb_per_million={(r1 - r0) / ((c1 - c0) / MILLION):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
