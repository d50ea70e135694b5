"""A locustfile for benchmarks/metrics_scrape.py: the CPU the scrapes of ``--metrics-port`` take, measured in-process.

    locust -f locustfile.py,benchmarks/scrape_probe.py ... --metrics-port PORT

A greenlet switch trace charges the thread CPU time (``time.thread_time``) of each slice a
greenlet runs to that greenlet; the greenlets answering ``/metrics`` are marked for the
span of the WSGI app (snapshot, collect, text format, body written). CPU that other
processes take is not counted (thread time), nor the calls' own work between a scrape's
pauses: what is left is what the scrapes cost the run's loop. At exit the figures go to
the JSON file named by ``SCRAPE_PROBE_OUT``: ``{"scrapes": n, "cpu_s": ...}``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import greenlet
from locust import events
from locust.env import Environment

from harness import harness_of
from harness.outputs.live_export import LiveExport

_marked: set[Any] = set()
_figures = {"scrapes": 0, "cpu_s": 0.0}
_last = [time.thread_time()]


def _trace(event: str, args: Any) -> None:
    if event in ("switch", "throw"):
        origin = args[0]
        now = time.thread_time()
        if origin in _marked:
            _figures["cpu_s"] += now - _last[0]
        _last[0] = now


def _marking(app: Any) -> Any:
    def scrape(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        me = greenlet.getcurrent()
        _marked.add(me)
        _last[0] = time.thread_time()
        body = app(environ, start_response)
        try:
            yield from body
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()  # what the server would have called: MetricsServer counts the scrape as answered
            _figures["cpu_s"] += time.thread_time() - _last[0]
            _last[0] = time.thread_time()
            _marked.discard(me)
            _figures["scrapes"] += 1

    return scrape


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    export = harness_of(environment).feature(LiveExport)
    if export is None or export.server is None:
        return
    httpd = export.server._httpd
    httpd.set_app(_marking(httpd.get_app()))
    greenlet.settrace(_trace)


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    path = os.environ.get("SCRAPE_PROBE_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(_figures, f)
