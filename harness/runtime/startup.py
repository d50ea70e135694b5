"""A CLI run's start-up: quiet the HTTP loggers, check the scenarios, pick the target, pay the SDK import.

The target depends on ``--platform`` (:mod:`harness.runtime.target`); building the transport
here also resolves a platform's credentials, so a missing one stops the run at start.

Everything here happens at Locust's ``init``, before any load, so a bad scenario or
target stops the run with one line and exit code 2, and no call is charged with a
second of imports.
"""

from __future__ import annotations

import importlib
import logging
import os

import gevent
from locust.env import Environment
from locust.runners import WorkerRunner

from harness.runtime.features import Feature
from harness.runtime.state import Harness
from harness.runtime.target import platform_of, resolve_target, start_simulator
from harness.runtime.user import AnthropicUser

__all__ = ["FEATURE", "install", "validate_user_classes"]


def validate_user_classes(environment: Environment) -> None:
    """Raise ConfigError (one line naming the scenario and file) for a class that cannot run."""
    for user_class in environment.user_classes:
        if issubclass(user_class, AnthropicUser):
            user_class.validate()


def install(harness: Harness) -> None:
    """Check the configuration and pick the target; raises ConfigError."""
    environment = harness.environment
    # The SDK's HTTP client logs every request at INFO, which would drown Locust's output.
    for name in ("httpx2", "httpx", "httpcore2", "anthropic", "botocore", "google.auth", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    validate_user_classes(environment)
    if not isinstance(environment.runner, WorkerRunner):
        # Workers get the host from the master with every spawn message.
        platform = platform_of(harness.options, os.environ)
        target = resolve_target(environment.host, os.environ, platform)
        if target.url is None:
            environment.host = start_simulator(harness.options.simulator_args, platform.name)
        else:
            environment.host = target.url
    # Importing the SDK takes a second or more on a busy machine and blocks the event loop
    # (a worker that blocks misses its heartbeats): pay it here, before any load.
    if environment.host:
        harness.transport(environment.host)
    elif harness.options.transport == "sdk":
        importlib.import_module("harness.transports.sdk")
    # That blocked the loop without it noticing: libev times a new timer from its cached "now",
    # which would make Locust's -t timer, armed next, fire early by as long as the import took.
    gevent.get_hub().loop.update_now()


FEATURE = Feature("start-up", install)
