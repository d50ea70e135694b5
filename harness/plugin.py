"""Wires the harness into Locust: options at parser time, checks and target at ``init``.

Importing :mod:`harness.user` imports this module once, which is all a locustfile
needs; nothing here runs for in-process ``Environment`` runs, which call
:func:`harness.attach` themselves.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.errors import ConfigError
from harness.locust_csv import FinalCSV
from harness.options import HarnessOptions, add_arguments
from harness.runtime import attach
from harness.target import resolve_target, start_simulator

__all__ = ["EXIT_CONFIG", "EXIT_SLO_BREACH", "fail_start", "prepare"]

# Same code as argparse's usage errors, so every bad-configuration exit looks alike.
EXIT_CONFIG = 2
EXIT_SLO_BREACH = 3


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
    attach(environment, options)


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


# Reliability and safety: their options and init listeners, after the plugin's own (order matters).
from harness import ratelimits, retries, safety, shutdown, spend  # noqa: E402, F401

events.init.add_listener(lambda environment, **_: ratelimits.install(environment))
