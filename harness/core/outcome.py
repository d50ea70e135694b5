"""How one call ended: a typed :class:`Outcome`, written as its METRICS.md class name.

Every call ends with exactly one outcome: ``ok``, ``cancelled`` (the run stopped it), or an
error class: ``timeout``, ``connection``, ``protocol``, ``http_<status>`` or
``stream_<error type>`` (an ``event: error`` mid-stream). Code asks an outcome typed
questions (:attr:`Outcome.kind`, :attr:`Outcome.status`, :attr:`Outcome.ok`) and never
parses its text; the text is the form artefacts, Locust's failure table and SLOs use.

An :class:`Outcome` is a ``str`` subclass, as httpx's status codes are ``int``s: the
artefacts (``requests.jsonl``, summary.json's ``errors``, the worker channel) carry it
unchanged, and ``record.outcome == "ok"`` still holds. Instances are interned, so making
one per call costs a dictionary lookup.
"""

from __future__ import annotations

import enum

__all__ = [
    "CANCELLED",
    "CONNECTION",
    "OK",
    "PROTOCOL",
    "TIMEOUT",
    "Outcome",
    "OutcomeKind",
]


class OutcomeKind(enum.Enum):
    """The families of METRICS.md's outcome classes."""

    OK = "ok"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    PROTOCOL = "protocol"
    HTTP = "http"  # an HTTP error response: ``http_<status>``
    STREAM = "stream"  # an error event mid-stream: ``stream_<error type>``


_MAX_INTERNED = 4096
_PLAIN = {kind.value: kind for kind in OutcomeKind if kind not in (OutcomeKind.HTTP, OutcomeKind.STREAM)}


class Outcome(str):
    """One outcome class; build it with :meth:`parse`, :meth:`http` or :meth:`stream`."""

    kind: OutcomeKind
    status: int | None  # the HTTP status of an ``http_*`` outcome
    error_type: str | None  # the error type of a ``stream_*`` outcome

    _interned: dict[str, Outcome] = {}

    def __new__(cls, text: str) -> Outcome:
        known = cls._interned.get(text)
        if known is not None:
            return known
        outcome = super().__new__(cls, text)
        outcome.kind, outcome.status, outcome.error_type = _classify(text)
        if len(cls._interned) < _MAX_INTERNED:  # a hostile server may invent error types without end
            cls._interned[str(text)] = outcome
        return outcome

    @classmethod
    def parse(cls, text: str) -> Outcome:
        """The outcome an artefact names (``"http_429"``); ValueError if it names none."""
        return cls(text)

    @classmethod
    def http(cls, status: int) -> Outcome:
        """The class of an HTTP error response, e.g. ``http_429``."""
        return cls(f"http_{status}")

    @classmethod
    def stream(cls, error_type: str) -> Outcome:
        """The class of a mid-stream ``event: error``, e.g. ``stream_overloaded_error``."""
        return cls(f"stream_{error_type}")

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK

    @property
    def cancelled(self) -> bool:
        return self.kind is OutcomeKind.CANCELLED

    @property
    def failed(self) -> bool:
        """An error class: neither ``ok`` nor ``cancelled``."""
        return self.kind not in (OutcomeKind.OK, OutcomeKind.CANCELLED)

    def __reduce__(self) -> tuple[type[Outcome], tuple[str]]:
        return (Outcome, (str(self),))

    # Immutable and interned, like the str it is: dataclasses.asdict's deep copy keeps it.
    def __copy__(self) -> Outcome:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Outcome:
        return self


def _classify(text: str) -> tuple[OutcomeKind, int | None, str | None]:
    kind = _PLAIN.get(text)
    if kind is not None:
        return kind, None, None
    family, _, rest = text.partition("_")
    if family == "http" and rest.isdigit():
        return OutcomeKind.HTTP, int(rest), None
    if family == "stream" and rest:
        return OutcomeKind.STREAM, None, rest
    raise ValueError(f"{text!r} is not an outcome class (METRICS.md: ok, cancelled, timeout, ...)")


OK = Outcome("ok")
CANCELLED = Outcome("cancelled")
TIMEOUT = Outcome("timeout")
CONNECTION = Outcome("connection")
PROTOCOL = Outcome("protocol")
