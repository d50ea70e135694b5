"""Nothing is lost at a hard exit: the artefacts are flushed, and Ctrl-C stops the run, not a call.

* :func:`flush_at_exit`: Locust handles the first Ctrl-C by stopping the run and firing
  ``test_stop``, which records in-flight calls as ``cancelled`` and writes summary.json.
  A second Ctrl-C while it waits for ``--stop-timeout`` raises ``KeyboardInterrupt`` out
  of Locust's shutdown, so ``test_stop`` never fires; at interpreter exit this fires it
  for every run still open, so the artefacts are complete anyway.
* Ctrl-C reaches Locust's main greenlet: Python raises ``KeyboardInterrupt`` in whichever
  greenlet runs when SIGINT arrives, and under load that is often a user in mid-call,
  which then dies with a traceback instead of being recorded as ``cancelled``. The CLI's
  SIGINT is therefore delivered by gevent's loop and thrown into the main greenlet,
  where Locust catches it.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from typing import Any

import gevent
from locust.env import Environment

from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "flush_at_exit", "flushing_at_exit", "install", "track_open_runs"]

log = logging.getLogger(__name__)


_open_runs: weakref.WeakSet[Environment] = weakref.WeakSet()


def track_open_runs(environment: Environment) -> None:
    """Remember when ``environment`` has a started run whose ``test_stop`` has not fired."""
    hooks: Any = environment.events

    def opened(**_: Any) -> None:
        _open_runs.add(environment)

    def closed(**_: Any) -> None:
        _open_runs.discard(environment)

    hooks.test_start.add_listener(opened)
    hooks.test_stop.add_listener(closed)


_flushing = False


def flushing_at_exit() -> bool:
    """Whether the artefacts being written are an interrupted run's, at interpreter exit."""
    return _flushing


def flush_at_exit() -> None:
    """Fire ``test_stop`` for every run still open (a second Ctrl-C cut Locust's own stop short)."""
    global _flushing
    _flushing = True
    for environment in list(_open_runs):
        log.warning("The run was interrupted before it stopped; writing what it has")
        try:
            environment.events.test_stop.fire(environment=environment)
        except Exception:
            log.exception("could not write every artefact of the interrupted run")


def interrupt_main_greenlet_on_sigint() -> None:
    """Deliver SIGINT as KeyboardInterrupt in the calling (main) greenlet, never in a user's."""
    if threading.current_thread() is not threading.main_thread():
        return
    main = gevent.getcurrent()
    # gevent runs the handler in a greenlet of its own; kill() has the hub throw into main.
    gevent.signal_handler(signal.SIGINT, gevent.kill, main, KeyboardInterrupt)


def install(harness: Harness) -> None:
    """Flush the run's artefacts at a hard exit; in the CLI, deliver Ctrl-C to the main greenlet."""
    environment = harness.environment
    track_open_runs(environment)
    # Registered after the plugin's own exit hooks (the final --csv files), so it runs before them.
    atexit.register(flush_at_exit)
    if environment.parsed_options is not None:  # the locust CLI, not an Environment built in code
        interrupt_main_greenlet_on_sigint()


FEATURE = Feature("shutdown", install)
