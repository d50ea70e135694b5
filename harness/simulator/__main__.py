"""Command line: `python -m harness.simulator [options]` runs the simulator until SIGTERM/SIGINT.

Prints exactly one line to stdout once listening — `harness simulator listening on http://HOST:PORT` —
which launcher.SimulatorProcess waits for; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from .config import SimulatorConfig, apply_file, load_config_file
from .server import Simulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.simulator",
        description=(
            "Anthropic Messages API simulator for load tests: POST /v1/messages (streaming and not) and "
            "/v1/messages/count_tokens with a seeded latency model. Model profiles are illustrative, not "
            "measurements of the real service. Precedence: defaults < --config FILE < flags."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free port (printed)")
    p.add_argument("--seed", type=int, default=None, help="seed for all jitter and output lengths (default 0)")
    p.add_argument(
        "--ttft",
        type=float,
        default=None,
        metavar="SECONDS",
        help="base delay before the first token for every model (overrides profiles' "
        "base_delay_s; queueing and prefill add to it)",
    )
    p.add_argument(
        "--tps",
        type=float,
        default=None,
        metavar="TOKENS_PER_S",
        help="per-stream decode rate of a stream alone in the batch, for every model "
        "(overrides profiles' decode_tokens_per_s)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="requests decoded concurrently per model before they queue (overrides max_batch)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="JSON or TOML file with profiles, rate limits and faults (see docs/simulator.md)",
    )
    p.add_argument(
        "--trace",
        default=None,
        metavar="FILE",
        help="append one JSON line per request with server-side monotonic timestamps",
    )
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    config = SimulatorConfig(host=args.host, port=args.port)
    if args.config:
        apply_file(config, load_config_file(args.config))
    if args.seed is not None:
        config.seed = args.seed
    if args.trace is not None:
        config.trace = args.trace
    overrides = {"base_delay_s": args.ttft, "decode_tokens_per_s": args.tps, "max_batch": args.max_batch}
    config.all_models.update({k: v for k, v in overrides.items() if v is not None})
    # A flag must win over a per-model value from the file too.
    for values in config.models.values():
        values.update({k: v for k, v in overrides.items() if v is not None})
    return config


async def serve(config: SimulatorConfig) -> None:
    sim = Simulator(config)
    host, port = await sim.start()
    print(f"harness simulator listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        asyncio.run(serve(config))
    except (OSError, ValueError) as exc:
        print(f"harness simulator: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
