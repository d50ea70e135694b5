"""Wires the harness into Locust: options at parser time, checks and target at ``init``.

Importing :mod:`harness.user` imports this module once, which is all a locustfile
needs; nothing here runs for in-process ``Environment`` runs, which call
:func:`harness.attach` themselves.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any, NoReturn

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from harness import catalog as _catalog  # noqa: F401  (its init listener must run before this module's)
from harness import distributed as _distributed  # noqa: F401  (worker -> master records)
from harness import health as _health  # noqa: F401  (generator-health sampler and options)
from harness import slo_cli  # noqa: F401  (registers --slo, --junit-xml)
from harness import webui as _webui  # noqa: F401  (the web UI's LLM tab, at init)
from harness.errors import ConfigError
from harness.exitcodes import EXIT_CONFIG, EXIT_COST_CAP, EXIT_GENERATOR_BOUND, EXIT_SLO_BREACH
from harness.locust_csv import FinalCSV
from harness.options import HarnessOptions, add_arguments
from harness.runtime import attach
from harness.target import resolve_target, start_simulator

__all__ = [
    "EXIT_CONFIG",
    "EXIT_COST_CAP",
    "EXIT_GENERATOR_BOUND",
    "EXIT_SLO_BREACH",
    "fail_start",
    "prepare",
]


def fail_start(message: str) -> NoReturn:
    """Stop the process before any load with one line on stderr."""
    sys.stderr.write(f"locust: error: {message}\n")
    sys.stderr.flush()
    sys.exit(EXIT_CONFIG)


def validate_user_classes(environment: Environment) -> None:
    from harness.user import AnthropicUser

    for user_class in environment.user_classes:
        if issubclass(user_class, AnthropicUser):
            user_class.validate()


def prepare(environment: Environment) -> None:
    """Check the configuration and pick the target; raises ConfigError."""
    options = HarnessOptions.from_namespace(environment.parsed_options)
    validate_user_classes(environment)
    if not isinstance(environment.runner, WorkerRunner):
        # Workers get the host from the master with every spawn message.
        target = resolve_target(environment.host, os.environ)
        if target.url is None:
            environment.host = start_simulator(options.simulator_args)
        else:
            environment.host = target.url
    harness = attach(environment, options)
    # Importing the SDK takes a second or more on a busy machine and blocks the event loop
    # (a worker that blocks misses its heartbeats): pay it here, before any load.
    if environment.host:
        harness.transport(environment.host)
    elif options.transport == "sdk":
        importlib.import_module("harness.sdk_transport")


@events.init_command_line_parser.add_listener
def _on_parser(parser: Any, **_: Any) -> None:
    add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    # The SDK's HTTP client logs every request at INFO, which would drown Locust's output.
    for name in ("httpx2", "httpx", "httpcore2", "anthropic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        prepare(environment)
    except ConfigError as exc:
        fail_start(str(exc))
    FinalCSV.install(environment)


# Load shapes, open-loop arrivals and the per-stage analysis register their own options and listeners.
# Reliability and safety: their options and init listeners, after the plugin's own (order matters).
from harness import ratelimits, retries, safety, shutdown, spend  # noqa: E402, F401
from harness import shapes as _shapes  # noqa: E402, F401  (imports harness.arrivals too)

events.init.add_listener(lambda environment, **_: ratelimits.install(environment))
