"""Work run off the event loop, in gevent's threadpool, and waited for cooperatively.

A soak's reductions (minutes of reading spilled samples at 10 million calls) and the gzip
of rotated ``requests.jsonl`` parts must not stall the event loop that times calls. numpy
and zlib release the GIL while they work, so a thread lets the loop go on. What runs there
reads files the run later removes, so every job is remembered until :meth:`OffLoop.wait`
has seen it finish.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gevent

__all__ = ["OffLoop"]

T = TypeVar("T")


class OffLoop:
    """The threadpool jobs of one run's state."""

    def __init__(self) -> None:
        self._jobs: list[Any] = []  # gevent ThreadResults not yet seen finished

    def start(self, job: Callable[[], Any]) -> Any:
        """Start ``job`` in gevent's threadpool; its result (``.get()``, ``.ready()``) is returned."""
        result = gevent.get_hub().threadpool.spawn(job)
        self._jobs = [r for r in self._jobs if not r.ready()]
        self._jobs.append(result)
        return result

    def run(self, job: Callable[[], T]) -> T:
        """``job()`` in the threadpool while this greenlet waits; inline from the hub (nothing to wait with)."""
        if gevent.getcurrent() is gevent.get_hub():
            return job()
        value: T = self.start(job).get()
        return value

    def wait(self) -> None:
        """Wait (cooperatively) for every job started so far."""
        if gevent.getcurrent() is gevent.get_hub():
            return
        for result in list(self._jobs):
            result.wait()
        self._jobs = [r for r in self._jobs if not r.ready()]
