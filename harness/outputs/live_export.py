"""Live metrics where teams already look: ``GET /metrics`` for Prometheus, and the OTLP push.

The feature that puts :class:`~harness.outputs.metrics.LiveMetrics` into a run: every
record of ``llm_request`` counted once (on a master that is every worker's, which the
master re-fires), the counters starting again at each test start, and the run-state
gauges read from the run's monitors at each scrape (:mod:`harness.outputs.live_sources`).
Served

* on Locust's web UI, ``GET /metrics`` under ``--web-base-path``;
* on ``--metrics-port PORT`` (``--metrics-host``, loopback by default), for headless runs
  or a scraper that cannot pass the web UI's login; with ``--metrics-linger S`` the process
  waits at exit, at most S seconds, for one scrape of the final figures;
* pushed to ``--otlp-endpoint URL`` every 10 s, once more after each run's summary, and a
  last time at exit.

Only a master or a single process serves and pushes: a worker's calls are counted on its
master, so a worker ignores these options (``--processes N`` hands them to every child).

``--web-login``: the web UI's ``/metrics`` asks for the same login as every other page
(the harness opens no way around an access control the operator chose). A request the
team's auth plugin does not accept (a Flask-Login ``request_loader`` can take a token
Prometheus sends with ``authorization:``) gets a plain 401 rather than the login form,
so a scraper fails visibly; ``--metrics-port`` is the listener without a login, on
loopback unless ``--metrics-host`` says otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import gevent
from flask import Blueprint, Response
from flask_login import current_user
from locust.runners import WorkerRunner
from locust.web import WebUI

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord
from harness.core.options import option
from harness.outputs.live_sources import run_sources
from harness.outputs.metrics import LiveMetrics, MetricsServer
from harness.outputs.otlp import OtlpPush, otlp_metrics_url
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "LiveExport", "LiveMetricsOptions", "install"]

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LiveMetricsOptions:
    """Where the live metrics are served and pushed (docs/live-metrics.md)."""

    metrics_port: int | None = option(
        "--metrics-port",
        default=None,
        type=int,
        metavar="PORT",
        help="Serve the live metrics in the Prometheus format at http://HOST:PORT/metrics (0: any free port, "
        "logged). The web UI serves them at /metrics anyway. Default: no separate port.",
    )
    metrics_host: str = option(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="Interface of --metrics-port; 0.0.0.0 serves every interface (the metrics have no login). "
        "Default 127.0.0.1.",
    )
    metrics_linger: float = option(
        "--metrics-linger",
        default=0.0,
        type=float,
        metavar="SECONDS",
        help="At exit, keep serving --metrics-port until the final figures have been scraped once, "
        "at most SECONDS, so that Prometheus sees a headless run's last calls. Default 0: exit at once.",
    )
    otlp_endpoint: str | None = option(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="Push the live metrics over OTLP/HTTP to this collector every 10 s and after each run "
        "(e.g. http://localhost:4318; headers from OTEL_EXPORTER_OTLP_HEADERS). Default: no push.",
    )

    def __post_init__(self) -> None:
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port {self.metrics_port}: give a TCP port, 0-65535 (0: any free port)")
        if not self.metrics_host.strip():
            raise ConfigError("--metrics-host is empty: give an interface address, e.g. 127.0.0.1 or 0.0.0.0")
        if not self.metrics_linger >= 0:
            raise ConfigError(f"--metrics-linger {self.metrics_linger}: give a number of seconds, 0 or more")
        if self.otlp_endpoint is not None:
            otlp_metrics_url(self.otlp_endpoint)  # one line if it is not an http(s) URL


class LiveExport:
    """One run's live metrics and where they go: the web UI route, the port, the OTLP push."""

    def __init__(self, harness: Harness, options: LiveMetricsOptions) -> None:
        environment = harness.environment
        self.options = options
        self.metrics = LiveMetrics(run_sources(harness))
        self.server: MetricsServer | None = None
        self.push: OtlpPush | None = None
        self._ended: float | None = None  # time.monotonic() when the last run's summary was written
        self._flush: gevent.Greenlet[Any, Any] | None = None
        self._flushed: bool | None = None  # whether the push after the last run got through
        if options.metrics_port is not None:
            self.server = MetricsServer(self.metrics, options.metrics_port, options.metrics_host)
            log.info("live metrics: %s", self.server.url)
        if options.otlp_endpoint is not None:
            self.push = OtlpPush(self.metrics, options.otlp_endpoint, timeout_s=_FLUSH_TIMEOUT_S)
            log.info("live metrics: pushed over OTLP to %s", self.push.endpoint)
        web_ui = environment.web_ui
        if web_ui is not None:
            add_route(web_ui, self.metrics)
            if web_ui.web_login and self.server is None:
                log.info(
                    "live metrics: /metrics needs the web UI's login; Prometheus can scrape --metrics-port instead"
                )
        events: Any = environment.events
        events.test_start.add_listener(self._on_test_start)
        events.llm_request.add_listener(self._on_record)
        # After the Harness's own test_stop listener, which wrote the summary: the counts are final.
        events.test_stop.add_listener(self._on_test_stop)
        events.quit.add_listener(self._on_quit)

    def _on_test_start(self, **_: Any) -> None:
        self.metrics.reset()
        self._ended = None

    def _on_record(self, record: CallRecord, **_: Any) -> None:
        self.metrics.observe(record)

    def _on_test_stop(self, **_: Any) -> None:
        self._ended = time.monotonic()
        if self.push is not None:
            # In the background: a collector that is slow or down must not hold the stop up.
            self._flush = gevent.spawn(self._push_now)

    def _push_now(self) -> None:
        if self.push is None:
            return
        self._flushed = self.push.flush(timeout_s=_FLUSH_TIMEOUT_S)
        if not self._flushed:
            log.warning("live metrics: the OTLP push to %s after the run did not get through", self.push.endpoint)

    def _on_quit(self, **_: Any) -> None:
        # Locust fires quit after its final tables, so a linger delays no output.
        server = self.server
        if server is not None:
            if self.options.metrics_linger > 0 and self._ended is not None:
                self._linger(server, self._ended, self.options.metrics_linger)
            server.close()
        if self.push is not None:
            if self._flush is not None:
                self._flush.join(timeout=_FLUSH_TIMEOUT_S)
            # A last push of the final figures, unless the collector did not take the one after the run.
            self.push.shutdown(last_push=self._flushed is not False)

    @staticmethod
    def _linger(server: MetricsServer, ended: float, seconds: float) -> None:
        if server.served_since(ended):
            return
        log.info("live metrics: waiting up to %g s for a last scrape of %s", seconds, server.url)
        deadline = time.monotonic() + seconds
        while not server.served_since(ended) and time.monotonic() < deadline:
            gevent.sleep(0.05)


def add_route(web_ui: WebUI, metrics: LiveMetrics) -> None:
    """``GET /metrics`` on Locust's web UI, under ``--web-base-path``; a 401, not a login form, without the login."""
    parsed = web_ui.environment.parsed_options
    base_path = (getattr(parsed, "web_base_path", None) or "") if parsed is not None else ""
    blueprint = Blueprint("llm_metrics", __name__, url_prefix=base_path or None)

    @blueprint.route("/metrics")
    def scrape() -> Response:
        # Locust's own login check answers with a redirect to its form (HTML with status 200
        # after the redirect): a scraper would fail on a parse error instead of a refusal.
        if web_ui.web_login and not current_user.is_authenticated:
            return Response(
                "/metrics needs the web UI's login (--web-login): send credentials your auth plugin accepts, "
                "or scrape --metrics-port\n",
                status=401,
                mimetype="text/plain",
            )
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    app = web_ui.app
    assert app is not None, "Locust's WebUI always has a Flask app"
    app.register_blueprint(blueprint)


def install(harness: Harness, options: LiveMetricsOptions | None = None) -> LiveExport | None:
    """The live metrics of ``harness``'s run (nothing on a worker: its master counts its calls)."""
    if isinstance(harness.environment.runner, WorkerRunner):
        return None
    return LiveExport(harness, options or harness.options_of(LiveMetricsOptions))


FEATURE = Feature(
    "live metrics", install, options=(LiveMetricsOptions,), title="LLM harness: live metrics (Prometheus, OTLP)"
)
