"""Nothing hangs and nothing is lost: the per-call deadline, and the flush on a hard exit.

* :func:`call_deadline` bounds a whole call (``--call-timeout``): a server that trickles
  pings or bytes forever defeats the read timeout, never this one. It uses a
  ``gevent.Timeout`` (a ``BaseException``, so neither the SDK nor httpx can swallow it)
  and turns it into the call's ``timeout`` outcome.
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
from types import TracebackType
from typing import Any

import gevent
from locust import events
from locust.env import Environment

from harness.errors import CallError

__all__ = ["call_deadline", "flush_at_exit", "flushing_at_exit", "track_open_runs"]

log = logging.getLogger(__name__)


class call_deadline:  # lower case: used like the function it replaced, `with call_deadline(s):`
    """Raise ``CallError("timeout")`` in the calling greenlet after ``seconds`` (0/None: never).

    ``with call_deadline(s):`` around a call. A class rather than a generator-based
    context manager: it is entered once per call.
    """

    __slots__ = ("_seconds", "_timer")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._timer: gevent.Timeout | None = None

    def __enter__(self) -> None:
        if self._seconds:
            self._timer = gevent.Timeout(self._seconds)
            self._timer.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        timer = self._timer
        if timer is None:
            return
        timer.close()
        if exc is timer:
            raise CallError("timeout", f"call exceeded --call-timeout {self._seconds:g} s") from None


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


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    track_open_runs(environment)
    # Registered after the plugin's own exit hooks (the final --csv files), so it runs before them.
    atexit.register(flush_at_exit)
    if environment.parsed_options is not None:  # the locust CLI, not an Environment built in code
        interrupt_main_greenlet_on_sigint()
