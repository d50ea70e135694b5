"""Nothing hangs: the per-call deadline (``--call-timeout``).

:class:`call_deadline` bounds a whole call: a server that trickles pings or bytes forever
defeats the read timeout, never this one. It uses a ``gevent.Timeout`` (a
``BaseException``, so neither the SDK nor httpx can swallow it) and turns it into the
call's ``timeout`` outcome.
"""

from __future__ import annotations

from types import TracebackType

import gevent

from harness.core.errors import CallError
from harness.core.outcome import TIMEOUT

__all__ = ["call_deadline"]


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
            raise CallError(TIMEOUT, f"call exceeded --call-timeout {self._seconds:g} s") from None
