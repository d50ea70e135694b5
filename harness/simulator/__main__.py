"""Command line: `python -m harness.simulator [options]` runs the simulator until SIGTERM/SIGINT.

Prints exactly one line to stdout once listening — `harness simulator listening on http://HOST:PORT` —
which launcher.SimulatorProcess waits for; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from collections.abc import Sequence

from .config import SimulatorConfig, apply_file, load_config_file
from .faults import FAULT_HEADER
from .platform import PLATFORMS
from .ratelimit import OFF, TIERS
from .server import Simulator

FAULT_HELP = {
    "overloaded": "answer 529 overloaded_error",
    "api_error": "answer 500 api_error",
    "rate_limit": "answer 429 rate_limit_error with retry-after",
    "stream_error": "end a stream with event: error (overloaded_error) after some deltas",
    "drop": "close the connection mid-response",
    "stall": "send nothing for --stall-seconds partway through a response",
    "slow_headers": "delay the response head by --slow-headers-seconds",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.simulator",
        description=(
            "Anthropic Messages API simulator for load tests: POST /v1/messages (streaming and not), "
            "/v1/messages/count_tokens and GET /v1/models, with a seeded latency model, rate limits and "
            "fault injection. Model profiles (claude-haiku-4-5, claude-sonnet-4-5, claude-opus-4-5) are "
            "illustrative, not measurements of the real service. Precedence: built-in defaults < --config "
            "FILE < flags. Prints 'harness simulator listening on http://HOST:PORT' once ready; stops on "
            "SIGTERM/SIGINT."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to listen on; 0 (default) picks a free one")
    p.add_argument("--seed", type=int, default=None, help="seed for jitter, lengths and faults (default 0)")
    p.add_argument(
        "--ttft",
        type=float,
        default=None,
        metavar="SECONDS",
        help="base delay before the first token, for every model (sets base_delay_s; jitter, "
        "queueing and prefill add to it). Haiku's default is 0.25",
    )
    p.add_argument(
        "--tps",
        type=float,
        default=None,
        metavar="TOKENS_PER_S",
        help="decode rate of a stream alone in the batch, for every model (sets "
        "decode_tokens_per_s; it falls as the batch fills). Haiku's default is 170",
    )
    p.add_argument(
        "--prefill-tps",
        type=float,
        default=None,
        metavar="TOKENS_PER_S",
        help="prompt tokens processed per second before the first token, for every model (sets "
        "prefill_tokens_per_s; cache reads go cache_read_speedup = 10x faster). Haiku's default is 40000",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        metavar="N",
        help="requests decoded at once per model; more wait in a queue (sets max_batch)",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="JSON or TOML file: profiles, rate limits, faults and schedules (docs/simulator.md)",
    )
    p.add_argument(
        "--trace",
        default=None,
        metavar="FILE",
        help="append one JSON line per request with server-side time.monotonic() timestamps",
    )
    p.add_argument(
        "--require-key",
        default=None,
        metavar="KEY",
        help="accept only this API key (x-api-key or Authorization: Bearer); others get 401 "
        "authentication_error. Default: any key, or none, is accepted",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=None,
        metavar="N",
        help="larger request bodies get 413 request_too_large (default 32 MiB, like the API)",
    )
    p.add_argument(
        "--platform",
        default="anthropic",
        choices=PLATFORMS,
        help="the API to speak: Anthropic's /v1/messages (default), Amazon Bedrock's /model/{id}/invoke[-with-"
        "response-stream] (event stream, SigV4 or bearer auth), Google Vertex AI's /v1/projects/.../models/"
        "{model}:[stream]rawPredict (bearer auth), or all of them at once (docs/simulator.md)",
    )
    p.add_argument(
        "--aws-access-key-id",
        default=None,
        metavar="ID",
        help="the access key id Bedrock requests must be signed with (default: the fixed test one, "
        "harness.simulator.sigv4.DEFAULT_ACCESS_KEY_ID)",
    )
    p.add_argument(
        "--aws-secret-access-key",
        default=None,
        metavar="SECRET",
        help="its secret key (default: the fixed test one); any region is accepted",
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        metavar="PID",
        help="stop when process PID is gone (the harness passes its own pid, so a simulator it "
        "started never outlives it, even when it was killed)",
    )
    rl = p.add_argument_group("rate limits (per API key; without options, a generous default tier)")
    rl.add_argument(
        "--rate-limit-tier",
        default=None,
        choices=[*sorted(TIERS), OFF],
        help="illustrative per-minute limits shaped like Anthropic's usage tiers; without any limit "
        "option the generous 'default' tier (100,000 RPM) sends anthropic-ratelimit-* headers but never "
        "refuses; 'off' sends no such headers",
    )
    rl.add_argument("--rpm", type=int, default=None, help="requests per minute (overrides the tier)")
    rl.add_argument("--itpm", type=int, default=None, help="input tokens per minute (overrides the tier)")
    rl.add_argument("--otpm", type=int, default=None, help="output tokens per minute (overrides the tier)")
    f = p.add_argument_group(
        "faults (probability per request, 0-1, off by default; schedules need --config; a request can "
        f"also ask for one with the header '{FAULT_HEADER}: NAME')"
    )
    for name, what in FAULT_HELP.items():
        f.add_argument(f"--fault-{name.replace('_', '-')}", type=float, default=None, metavar="RATE", help=what)
    f.add_argument("--stall-seconds", type=float, default=None, metavar="S", help="length of a stall fault (default 5)")
    f.add_argument(
        "--slow-headers-seconds",
        type=float,
        default=None,
        metavar="S",
        help="extra delay of a slow_headers fault (default 3)",
    )
    f.add_argument(
        "--retry-after",
        type=float,
        default=None,
        metavar="S",
        help="retry-after seconds sent with the rate_limit fault (default 5)",
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
    if args.require_key is not None:
        config.require_key = args.require_key
    if args.max_body_bytes is not None:
        config.max_body_bytes = args.max_body_bytes
    config.platform = args.platform
    if args.aws_access_key_id is not None:
        config.aws_access_key_id = args.aws_access_key_id
    if args.aws_secret_access_key is not None:
        config.aws_secret_access_key = args.aws_secret_access_key
    limits = {
        "tier": args.rate_limit_tier,
        "requests_per_minute": args.rpm,
        "input_tokens_per_minute": args.itpm,
        "output_tokens_per_minute": args.otpm,
    }
    config.rate_limits.update({k: v for k, v in limits.items() if v is not None})
    for name in FAULT_HELP:
        rate = getattr(args, f"fault_{name}")
        if rate is not None:
            config.faults[name] = rate
    for flag, key in (
        ("stall_seconds", "stall_s"),
        ("slow_headers_seconds", "slow_headers_s"),
        ("retry_after", "retry_after_s"),
    ):
        if getattr(args, flag) is not None:
            config.faults[key] = getattr(args, flag)
    overrides = {
        "base_delay_s": args.ttft,
        "decode_tokens_per_s": args.tps,
        "prefill_tokens_per_s": args.prefill_tps,
        "max_batch": args.max_batch,
    }
    config.all_models.update({k: v for k, v in overrides.items() if v is not None})
    # A flag must win over a per-model value from the file too.
    for values in config.models.values():
        values.update({k: v for k, v in overrides.items() if v is not None})
    return config


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == pid:
        await asyncio.sleep(0.5)
    stop.set()


async def serve(config: SimulatorConfig, parent_pid: int | None = None) -> None:
    # Handlers first: whoever saw the listening line may signal at once, and must get a clean stop.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(config)
    host, port = await sim.start()
    # Everything allocated so far lives for the whole run: keep it out of every garbage collection.
    gc.freeze()
    print(f"harness simulator listening on http://{host}:{port}", flush=True)
    watcher = asyncio.ensure_future(_watch_parent(parent_pid, stop)) if parent_pid else None
    await stop.wait()
    if watcher is not None:
        watcher.cancel()
    await sim.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        asyncio.run(serve(config, args.parent_pid))
    except (OSError, ValueError) as exc:
        print(f"harness simulator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed: still a requested stop
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
