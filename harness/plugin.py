"""Wires the harness into Locust: every feature, from one ordered list, and nothing else.

Importing this module (``from harness import AnthropicUser`` does) adds two listeners to
Locust's global events: when Locust builds its parser, each feature of :data:`FEATURES`
adds its options (and :func:`~harness.runtime.startup.finish_start_up` becomes the last
``init`` listener); at ``init``, the run's :class:`~harness.runtime.state.Harness` is
attached and each feature is installed, in the list's order. A feature that cannot run
raises ConfigError; the run then stops before any load with one line on stderr and exit
code 2. Runs built in code (``Environment(...)`` and :func:`harness.attach`) install the
features they want themselves; this module does nothing for them.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from locust import events
from locust.env import Environment

from harness.core.errors import ConfigError
from harness.core.exitcodes import EXIT_CONFIG
from harness.load import distributed, replay, shapes
from harness.monitors import health, live, ratelimits, spend
from harness.outputs import live_export, locust_csv, run_files, slo_gate, webui
from harness.runtime import catalog, retries, rolling, safety, shutdown, startup
from harness.runtime.features import Feature
from harness.runtime.options import HarnessOptions
from harness.runtime.state import attach

__all__ = ["FEATURES", "fail_start"]

# The run's own options (--report-dir, --transport, ...): the Harness reads them when it is attached.
HARNESS_OPTIONS = Feature("harness", lambda harness: None, options=(HarnessOptions,), title="LLM harness options")

FEATURES: tuple[Feature[Any], ...] = (
    safety.FEATURE,  # first: every line logged after it has the API key redacted
    HARNESS_OPTIONS,
    rolling.FEATURE,  # --rotate-records, --summary-every: read when the run opens its files
    shutdown.FEATURE,  # artefacts flushed at a hard exit; Ctrl-C to Locust's main greenlet
    catalog.FEATURE,  # before the checks: they see only the scenarios this run spawns
    startup.FEATURE,  # scenario checks, the target (or the simulator), the SDK import before load
    retries.FEATURE,
    ratelimits.FEATURE,
    spend.FEATURE,  # its estimate is printed before any load
    health.FEATURE,
    distributed.FEATURE,  # worker -> master records, before anything that reads the master's records
    shapes.ARRIVAL_OPTIONS,
    shapes.FEATURE,  # with the stage analysis, whose summary sections the outputs below read
    replay.FEATURE,  # --trace-replay: its own shape, so after --load-shape/--arrival are known
    live.FEATURE,
    webui.FEATURE,  # after the live figures it serves
    slo_gate.FEATURE,
    run_files.FEATURE,  # stages.csv and report.html after the stage analysis's sections; its table after the verdict
    locust_csv.FEATURE,
    live_export.FEATURE,  # last: its wait at exit for a final scrape comes after every other quit listener
)


def fail_start(message: str) -> NoReturn:
    """Stop the process before any load with one line on stderr."""
    sys.stderr.write(f"locust: error: {message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_CONFIG)


_finishing_registered = False


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    global _finishing_registered
    for feature in FEATURES:
        feature.add_arguments(parser)
    if not _finishing_registered:
        # Locust builds its parser after importing the locustfiles, so an init listener added now
        # comes after every listener they added: at init it runs last, after all start-up work.
        events.init.add_listener(startup.finish_start_up)
        _finishing_registered = True


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    try:
        harness = attach(environment, HarnessOptions.from_namespace(environment.parsed_options))
        for feature in FEATURES:
            harness.install(feature)
    except ConfigError as exc:
        fail_start(str(exc))


# A worker connects to its master before init: pay the SDK's import while the locustfile loads.
distributed.import_before_connecting()
