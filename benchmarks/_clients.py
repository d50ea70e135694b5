"""The client side of benchmarks/generator.py: one mode's N streams in this (pinned) process.

Imported after gevent's monkey-patching. Every mode stamps each content delta with
``time.monotonic()`` as it reads it and hands ``(request_id, stamps)`` per finished call
to one sink, so the window arithmetic and the figures are the same for all of them.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import gevent
import psutil

from harness.health import PROBE_INTERVAL_S, LagHistogram

Sink = list[tuple[str | None, list[float]]]
FIRST_CALL_S = 1.5  # every stream has finished its first call (50 ms + 1 s) this long after it started
DRAIN_S = 1.2  # calls in flight when the window closes finish, so their deltas inside it are counted
PROMPT = "Write a short poem."


def run(
    mode: str, url: str, streams: int, seconds: float, *, model: str, max_tokens: int, ramp_s: float
) -> dict[str, Any]:
    """One mode's figures; its streams start evenly spread over ``ramp_s`` (0: all at once)."""
    process = psutil.Process()
    sink: Sink = []
    start, stop, verdict = _MODES[mode](url, streams, sink, model, max_tokens)
    rss0 = process.memory_info().rss
    start(ramp_s)
    gevent.sleep(ramp_s + FIRST_CALL_S)
    lag = LagHistogram()
    probe = gevent.spawn(_probe, lag)
    w0, c0 = time.monotonic(), time.process_time()
    gevent.sleep(seconds)
    w1, c1 = time.monotonic(), time.process_time()
    rss1 = process.memory_info().rss
    probe.kill()
    gevent.sleep(DRAIN_S)
    stop()
    deltas = sum(1 for _, stamps in sink for t in stamps if w0 <= t <= w1)
    calls = [[rid, st[0], st[-1]] for rid, st in sink if st and w0 <= st[0] <= w1 and rid]
    cpu = c1 - c0
    p99 = lag.percentile(99)
    return {
        "mode": mode,
        "streams": streams,
        "deltas_per_s": deltas / (w1 - w0),
        "cpu_percent": 100.0 * cpu / (w1 - w0),
        "cpu_us_per_delta": 1e6 * cpu / deltas if deltas else float("nan"),
        "lag_p99_ms": 1000.0 * p99 if p99 is not None else float("nan"),
        "rss_kb_per_stream": (rss1 - rss0) / 1024.0 / streams,
        "rss_mb": rss1 / 2**20,
        "calls": calls,
        "verdict": verdict(),
    }


def _probe(lag: LagHistogram) -> None:
    while True:
        before = time.monotonic()
        gevent.sleep(PROBE_INTERVAL_S)
        lag.add(max(0.0, time.monotonic() - before - PROBE_INTERVAL_S))


Mode = tuple[Callable[[float], None], Callable[[], None], Callable[[], str]]


def _greenlets(n: int, target: Callable[[], None]) -> Mode:
    group: list[gevent.Greenlet[Any, Any]] = []

    def start(ramp_s: float) -> None:
        group.extend(gevent.spawn_later(i * ramp_s / n, target) for i in range(n))

    def stop() -> None:
        gevent.killall(group, block=True, timeout=5)

    return start, stop, lambda: ""


# -- floor: bare sockets, split lines, stamp deltas -----------------------------------------


def _floor(url: str, n: int, sink: Sink, model: str, max_tokens: int) -> Mode:
    import json

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps(
        {"model": model, "max_tokens": max_tokens, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    ).encode()
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: %s:%d\r\nx-api-key: k\r\nanthropic-version: 2023-06-01\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (host.encode(), port, len(body), body)
    )
    clock = time.monotonic

    def stream() -> None:
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            sock.sendall(request)
            pending, rid, stamps = b"", None, []
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                now = clock()
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line.startswith(b"event: content_block_delta"):
                        stamps.append(now)
                    elif rid is None and line[:11].lower() == b"request-id:":
                        rid = line[11:].strip().decode()
                if data.endswith(b"0\r\n\r\n"):
                    break
            sink.append((rid, stamps))

    return _greenlets(n, stream)


# -- sdk-bare: the anthropic SDK's own loop ----------------------------------------------------


def _sdk_bare(url: str, n: int, sink: Sink, model: str, max_tokens: int) -> Mode:
    from harness._compat import import_http_stack

    import_http_stack()
    import anthropic
    import httpx2

    client = anthropic.Anthropic(
        api_key="k",
        base_url=url,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=100_000, max_keepalive_connections=10_000)
        ),
    )
    clock = time.monotonic

    def stream() -> None:
        while True:
            with client.messages.create(
                model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": PROMPT}], stream=True
            ) as events:
                rid = events.response.headers.get("request-id")
                stamps = [clock() for event in events if event.type == "content_block_delta"]
            sink.append((rid, stamps))

    return _greenlets(n, stream)


# -- the harness itself: real Locust users -------------------------------------------------------


def _harness(transport: str) -> Callable[[str, int, Sink, str, int], Mode]:
    def mode(url: str, n: int, sink: Sink, model: str, max_tokens: int) -> Mode:
        from locust.env import Environment

        from harness import AnthropicUser, HarnessOptions, attach, health
        from harness.measure import CallRecord

        gap = [0.0]
        order = itertools.count()

        class Bench(AnthropicUser):
            def on_start(self) -> None:
                # Locust starts a tick's users in the same instant (its dispatcher spawns
                # floor(rate) users per second at once); each waits its turn here, so the
                # streams start spread exactly as the other modes' do.
                gevent.sleep(next(order) * gap[0])

        Bench.model, Bench.max_tokens, Bench.prompt = model, max_tokens, PROMPT
        env = Environment(user_classes=[Bench], host=url)
        env.create_local_runner()
        attach(env, HarnessOptions(transport=transport)).transport(url)
        wiring = health.install(env, health.HealthOptions())

        def on_record(record: CallRecord, **_: Any) -> None:
            if record.t_first_token is None:
                return
            stamps = list(itertools.accumulate(record.itl_s, initial=record.t_first_token))
            sink.append((record.request_id, stamps))

        env.events.llm_request.add_listener(on_record)  # type: ignore[attr-defined]
        assert env.runner is not None
        runner = env.runner

        def verdict() -> str:
            last = wiring.last
            return "" if last is None else str(last["verdict"])

        def start(ramp_s: float) -> None:
            gap[0] = ramp_s / n
            runner.start(n, spawn_rate=n * 100)

        return start, runner.quit, verdict

    return mode


_MODES: dict[str, Callable[[str, int, Sink, str, int], Mode]] = {
    "floor": _floor,
    "sdk-bare": _sdk_bare,
    "fast": _harness("fast"),
    "sdk": _harness("sdk"),
}
