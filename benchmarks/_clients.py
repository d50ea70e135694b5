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

from harness.core.lag import LagHistogram
from harness.monitors.sampler import timer_overshoots

Sink = list[tuple[str | None, list[float]]]
GOLDEN = (5**0.5 - 1) / 2
FIRST_CALL_S = 1.5  # every stream has finished its first call (50 ms + 1 s) this long after it started
DRAIN_S = 1.2  # calls in flight when the window closes finish, so their deltas inside it are counted
PROMPT = "Write a short poem."


def run(
    mode: str,
    url: str,
    streams: int,
    seconds: float,
    *,
    model: str,
    max_tokens: int,
    ramp_s: float,
    gap_s: float,
    platform: str = "anthropic",
) -> dict[str, Any]:
    """One mode's figures; its streams start as :func:`start_offsets` says (``ramp_s`` 0: all at once)."""
    process = psutil.Process()
    sink: Sink = []
    client = _MODES[mode](url, streams, sink, model, max_tokens, platform)
    rss0 = process.memory_info().rss
    offsets = start_offsets(streams, ramp_s, gap_s)
    client.start(offsets)
    gevent.sleep(max(offsets) + FIRST_CALL_S)
    lag = client.lag_window()
    w0, c0 = time.monotonic(), time.process_time()
    gevent.sleep(seconds)
    w1, c1 = time.monotonic(), time.process_time()
    rss1 = process.memory_info().rss
    p99 = lag.percentile(99)
    client.end_lag_window()
    gevent.sleep(DRAIN_S)
    client.stop()
    deltas = sum(1 for _, stamps in sink for t in stamps if w0 <= t <= w1)
    calls = [[rid, st[0], st[-1]] for rid, st in sink if st and w0 <= st[0] <= w1 and rid]
    cpu = c1 - c0
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
        "verdict": client.verdict(),
    }


def start_offsets(n: int, ramp_s: float, gap_s: float) -> list[float]:
    """When each of ``n`` streams starts: spread over ``ramp_s``, their deltas out of step.

    Evenly spaced starts alone keep streams in step: 100 streams over 1 s start 10 ms
    apart, so with deltas 20 ms apart every delta comes in one of two bursts of 50, and
    10 streams 100 ms apart all come in one. A golden-ratio share of ``gap_s`` added to
    each start spreads the deltas' phases evenly over the gap, as unrelated clients' are.
    """
    if ramp_s <= 0:
        return [0.0] * n  # the lockstep worst case
    return [i * ramp_s / n + gap_s * ((i * GOLDEN) % 1.0) for i in range(n)]


class Client:
    """One mode's streams: started, measured for loop lag over the window, stopped.

    Every mode runs exactly one 50 ms lag probe while it is measured, so none is charged
    for two: the bare clients get the benchmark's probe (:meth:`lag_window`), the harness
    modes measure with their own health sampler instead (on a mostly idle core each extra
    timer wake-up costs ~0.2 ms of CPU, several µs per delta at 10 streams).
    """

    def __init__(self, start: Callable[[list[float]], None], stop: Callable[[], None]) -> None:
        self.start, self.stop = start, stop
        self._probe: gevent.Greenlet[Any, Any] | None = None

    def lag_window(self) -> LagHistogram:
        lag = LagHistogram()
        self._probe = gevent.spawn(_probe, lag)
        return lag

    def end_lag_window(self) -> None:
        if self._probe is not None:
            self._probe.kill()

    def verdict(self) -> str:
        return ""


def _probe(lag: LagHistogram) -> None:
    for _, late in timer_overshoots():
        lag.add(late)


def _greenlets(n: int, target: Callable[[], None]) -> Client:
    group: list[gevent.Greenlet[Any, Any]] = []

    def start(offsets: list[float]) -> None:
        # libev times a new timer from the loop's cached "now", which is as old as the
        # loop's last iteration: here, before the mode's imports (~1 s for the SDK), so
        # without this every stream would start at once, in lockstep, whatever its offset.
        # (gevent.sleep refreshes it itself; spawn_later does not.)
        gevent.get_hub().loop.update_now()
        group.extend(gevent.spawn_later(offset, target) for offset in offsets)

    def stop() -> None:
        gevent.killall(group, block=True, timeout=5)

    return Client(start, stop)


# -- floor: bare sockets, split lines, stamp deltas -----------------------------------------


def _floor(url: str, n: int, sink: Sink, model: str, max_tokens: int, platform: str) -> Client:
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


def _sdk_bare(url: str, n: int, sink: Sink, model: str, max_tokens: int, platform: str) -> Client:
    from harness.transports._compat import import_http_stack

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


def _harness(transport: str) -> Callable[[str, int, Sink, str, int, str], Client]:
    def mode(url: str, n: int, sink: Sink, model: str, max_tokens: int, platform: str) -> Client:
        from locust.env import Environment

        from harness import AnthropicUser, HarnessOptions, attach
        from harness.core.measure import CallRecord
        from harness.monitors import health

        offsets: list[float] = []
        t0 = [0.0]
        order = itertools.count()

        class Bench(AnthropicUser):
            def on_start(self) -> None:
                # Locust starts a tick's users in the same instant (its dispatcher spawns
                # floor(rate) users per second at once); each waits its turn here, so the
                # streams start spread exactly as the other modes' do.
                gevent.sleep(max(0.0, t0[0] + offsets[next(order)] - time.monotonic()))

        Bench.model, Bench.max_tokens, Bench.prompt = model, max_tokens, PROMPT
        env = Environment(user_classes=[Bench], host=url)
        env.create_local_runner()
        harness = attach(env, HarnessOptions(transport=transport, platform=platform))
        harness.transport(url)
        wiring = harness.install(health.FEATURE, health.HealthOptions())

        def on_record(record: CallRecord, **_: Any) -> None:
            if record.t_first_token is None:
                return
            stamps = list(itertools.accumulate(record.itl_s, initial=record.t_first_token))
            sink.append((record.request_id, stamps))

        env.events.llm_request.add_listener(on_record)  # type: ignore[attr-defined]
        assert env.runner is not None
        runner = env.runner

        def start(at: list[float]) -> None:
            offsets[:] = at
            t0[0] = time.monotonic()
            runner.start(n, spawn_rate=n * 100)

        return _HarnessClient(start, runner.quit, wiring)

    return mode


class _HarnessClient(Client):
    """The harness measures its own loop lag: its sampler's histogram, restarted for the window."""

    def __init__(self, start: Callable[[list[float]], None], stop: Callable[[], None], wiring: Any) -> None:
        super().__init__(start, stop)
        self._wiring = wiring

    def lag_window(self) -> LagHistogram:
        lag = self._wiring.sampler.lag = LagHistogram()
        return lag

    def end_lag_window(self) -> None:
        pass

    def verdict(self) -> str:
        last = self._wiring.last
        if last is None:
            return ""
        # The verdict's own measure of first tokens, beside the benchmark's ground truth.
        late = last["processes"].get("local", {}).get("first_token_late_s")
        return str(last["verdict"]) + (f" (first tokens late p99 {late['p99'] * 1000:.1f} ms)" if late else "")


_MODES: dict[str, Callable[[str, int, Sink, str, int, str], Client]] = {
    "floor": _floor,
    "sdk-bare": _sdk_bare,
    "fast": _harness("fast"),
    "sdk": _harness("sdk"),
}
