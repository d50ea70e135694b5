"""How far the harness's TTFT and completion time are from a server's scripted timing.

Runs ``tests/scripted_server.py`` (first text delta 200 ms after the request, then 19
more 10 ms apart: completion 390 ms) and an in-process Locust run of N users for T
seconds, then prints the measured TTFT and completion percentiles and their error.

    python benchmarks/scripted_timing.py [--users 1] [--seconds 10] [--transport sdk]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import AnthropicUser, HarnessOptions  # noqa: E402
from harness.core.summary import distribution  # noqa: E402
from tests.locust_runs import run_local  # noqa: E402

SCRIPTED_TTFT_S = 0.200
SCRIPTED_COMPLETION_S = 0.200 + 19 * 0.010


class Timed(AnthropicUser):
    model = "timed"
    prompt = "hi"
    max_tokens = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--transport", default="sdk")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "scripted_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        run = run_local(
            [Timed], url, users=args.users, seconds=args.seconds, options=HarnessOptions(transport=args.transport)
        )
    finally:
        server.terminate()
        server.wait()
    ok = [r for r in run.records if r.ok]
    print(f"{len(ok)} calls, {args.users} users, transport {args.transport}")
    for label, values, scripted in (
        ("TTFT", [r.ttft_s for r in ok if r.ttft_s is not None], SCRIPTED_TTFT_S),
        ("completion", [r.completion_s for r in ok], SCRIPTED_COMPLETION_S),
    ):
        d = distribution(values)
        line = "  ".join(
            f"{k} {float(d[k]) * 1000:7.2f} ms (+{(float(d[k]) - scripted) * 1000:5.2f})"  # type: ignore[arg-type]
            for k in ("p50", "p99", "max")
        )
        print(f"{label:>10} scripted {scripted * 1000:.0f} ms: {line}")


if __name__ == "__main__":
    main()
