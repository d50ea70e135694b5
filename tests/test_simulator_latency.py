"""The latency model end to end: a throughput knee at max_batch, realistic defaults, seeded replays."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import anthropic
import pytest

from harness.simulator import SimulatorProcess

MODEL = "claude-haiku-4-5"
STEPS = (1, 2, 4, 8, 16, 32, 64)
MAX_BATCH = 8


def _server_deltas(url: str) -> int:
    with urllib.request.urlopen(url + "/v1/simulator/stats", timeout=10) as resp:
        return int(json.loads(resp.read())["deltas"])


async def _stepped_run(url: str, concurrency: int, duration: float, warmup: float) -> tuple[float, float]:
    """Closed loop at `concurrency` raw-socket streams: (deltas/s the server wrote in the window, TTFT p50).

    Throughput is the server's own count, so a client process starved of CPU on a busy machine does not
    make the server look slower than it was.
    """
    u = urlparse(url)
    assert u.hostname is not None and u.port is not None
    body = json.dumps(
        {"model": MODEL, "max_tokens": 40, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()
    request = b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    start = time.monotonic()
    end = start + duration
    ttfts: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        while time.monotonic() < end:
            sent = time.monotonic()
            writer.write(request)
            first = True
            buf = b""
            while not buf.endswith(b"0\r\n\r\n"):
                data = await reader.read(65536)
                assert data, "connection closed"
                if first and b"event: content_block_delta" in data:
                    ttfts.append(time.monotonic() - sent)
                    first = False
                buf = (buf + data)[-5:]
        writer.close()

    async def count() -> float:
        await asyncio.sleep(warmup)
        t0, n0 = time.monotonic(), await asyncio.to_thread(_server_deltas, url)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        t1, n1 = time.monotonic(), await asyncio.to_thread(_server_deltas, url)
        return (n1 - n0) / (t1 - t0)

    rate, *_ = await asyncio.gather(count(), *(worker() for _ in range(concurrency)))
    return rate, statistics.median(ttfts)


def _knee_problem(results: dict[int, tuple[float, float]]) -> str | None:
    """Why the stepped results do not show the knee at MAX_BATCH, or None if they do."""
    report = str({c: (round(results[c][0]), round(results[c][1] * 1e3, 1)) for c in STEPS})
    throughput = [results[c][0] for c in STEPS]
    gains = [b / a for a, b in itertools.pairwise(throughput)]
    knee = next((STEPS[i + 1] for i, g in enumerate(gains) if g < 1.15), None)
    checks = [
        (knee in (MAX_BATCH, 2 * MAX_BATCH), f"knee at {knee}"),
        # Flat beyond the knee, while TTFT grows by the queue wait.
        (all(0.85 < results[c][0] / results[8][0] < 1.2 for c in (16, 32, 64)), "not flat beyond the knee"),
        (results[16][1] > 5 * results[8][1], "TTFT does not jump past max_batch"),
        (results[64][1] > 2 * results[16][1], "TTFT does not keep growing with the queue"),
        (results[8][0] > 5 * results[1][0], "throughput does not rise below the knee"),
    ]
    failed = [why for ok, why in checks if not ok]
    return f"{failed}: {report}" if failed else None


def test_throughput_knee_at_max_batch(tmp_path: Path) -> None:
    config = tmp_path / "knee.json"
    profile = {
        "base_delay_s": 0.005,
        "base_delay_jitter": 0.0,
        "decode_tokens_per_s": 400.0,
        "batch_slowdown": 0.02,
        "max_batch": MAX_BATCH,
        "step_jitter": 0.1,
        "output_tokens_min": 1000,
    }
    config.write_text(json.dumps({"models": {MODEL: profile}}))
    problems = []
    with SimulatorProcess(["--seed", "11", "--config", str(config)]) as sim:
        assert sim.url is not None
        # A second attempt only if the first was disturbed: this 2-core machine is shared with other jobs.
        for _ in range(2):
            results = {c: asyncio.run(_stepped_run(sim.url, c, 1.2, 0.35)) for c in STEPS}
            problem = _knee_problem(results)
            if problem is None:
                return
            problems.append(problem)
    pytest.fail("\n".join(problems))


def test_default_haiku_profile_is_realistic() -> None:
    with SimulatorProcess(["--seed", "1"]) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
        # Warm-up: the SDK's first stream builds its models lazily and would read its deltas in a burst.
        with client.messages.stream(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]) as w:
            w.until_done()
        ttfts, rates = [], []
        for _ in range(3):
            t0 = time.monotonic()
            stamps = []
            with client.messages.stream(
                model=MODEL, max_tokens=60, messages=[{"role": "user", "content": "Hi"}]
            ) as stream:
                for event in stream:
                    if event.type == "content_block_delta":
                        stamps.append(time.monotonic())
            ttfts.append(stamps[0] - t0)
            # The median gap, not first-to-last: a client hiccup must not look like a server burst.
            rates.append(1.0 / statistics.median(b - a for a, b in itertools.pairwise(stamps)))
    assert all(0.1 < t < 1.0 for t in ttfts), ttfts
    assert len({round(t, 3) for t in ttfts}) == 3, ttfts  # jittered, not constant
    assert all(100 < r < 250 for r in rates), rates


def test_default_output_lengths() -> None:
    with SimulatorProcess(["--seed", "2", "--ttft", "0.001", "--tps", "100000"]) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
        lengths = [
            client.messages.create(
                model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "Hi"}]
            ).usage.output_tokens
            for _ in range(20)
        ]
    assert 40 < statistics.median(lengths) < 400 and len(set(lengths)) > 10, lengths


def _replay(seed: int) -> list[tuple[str, int]]:
    with SimulatorProcess(["--seed", str(seed), "--ttft", "0.001", "--tps", "100000"]) as sim:
        client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
        out = []
        for _ in range(3):
            m = client.messages.create(model=MODEL, max_tokens=4096, messages=[{"role": "user", "content": "Hi"}])
            out.append((m.content[0].text, m.usage.output_tokens))  # type: ignore[union-attr]
        return out


def test_same_seed_replays() -> None:
    assert _replay(42) == _replay(42)
    assert _replay(42) != _replay(43)


@pytest.mark.parametrize("module", ["harness.simulator", "harness.simulator.server", "harness.simulator.__main__"])
def test_no_locust_or_gevent_import(module: str) -> None:
    import subprocess
    import sys

    code = f"import sys, {module}; assert not {{'locust', 'gevent'}} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_launcher_under_gevent_monkey_patching() -> None:
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import urllib.request\n"
        "from harness.simulator.launcher import SimulatorProcess\n"
        "with SimulatorProcess(['--ttft', '0.001']) as sim:\n"
        "    urllib.request.urlopen(sim.url + '/v1/simulator/stats', timeout=5).read()\n"
        "assert sim.proc.returncode == 0, sim.proc.returncode\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent, timeout=30)
