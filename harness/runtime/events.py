"""The harness's own Locust event, and how each finished call reaches Locust's stats.

Locust's ``request`` event feeds both a name's row and the Aggregated row, so firing it
twice per call would count every call twice. A call is therefore reported once through
``request`` (request_type ``COMPLETION``, failures included), and its TTFT goes straight
into a ``TTFT`` row of Locust's stats without touching the Aggregated row. Both rows
are ordinary :class:`locust.stats.StatsEntry` objects, so Locust's table, CSV, web UI
and worker-to-master merge carry them like any other.
"""

from __future__ import annotations

from typing import Any

from locust.env import Environment
from locust.event import EventHook, Events

from harness.core.errors import CallError
from harness.core.measure import CANCELLED, CallRecord
from harness.core.outcome import OutcomeKind

__all__ = ["COMPLETION", "TTFT", "install", "report_to_locust"]

COMPLETION = "COMPLETION"
TTFT = "TTFT"

LLM_REQUEST_DOC = """
Fired once for every started call, when it ends: ok, failed or cancelled.

Event arguments (keyword-only):

:param record: the :class:`harness.CallRecord` with every metric of METRICS.md
:param environment: the Locust :class:`~locust.env.Environment` the call ran in

Every consumer of the harness's figures listens here: ``requests.jsonl``,
``summary.json``, and any listener a locustfile adds.
"""


LLM_SUMMARY_DOC = """
Fired when a test stops, after every in-flight call has been recorded and before
``summary.json`` is written.

Event arguments (keyword-only):

:param summary: the summary document (a dict); listeners may add sections to it
:param harness: the :class:`harness.Harness` of the run
:param environment: the Locust :class:`~locust.env.Environment`

Analyses that extend the summary (stages, SLO verdicts, generator health) listen here.
"""

_HOOKS = {"llm_request": LLM_REQUEST_DOC, "llm_summary": LLM_SUMMARY_DOC}


def install(events: Events) -> None:
    """Add the harness's hooks (``llm_request``, ``llm_summary``) to a Locust ``Events`` (once)."""
    for name, doc in _HOOKS.items():
        if getattr(events, name, None) is None:
            hook = EventHook()
            hook.__doc__ = doc
            setattr(events, name, hook)


def report_to_locust(environment: Environment, record: CallRecord) -> None:
    """Feed Locust's own stats with one finished call (a cancelled call feeds nothing)."""
    if record.outcome is CANCELLED:
        return
    exception: Any = None if record.ok else CallError(record.outcome, _short_reason(record))
    environment.events.request.fire(
        request_type=COMPLETION,
        name=record.scenario,
        response_time=record.completion_s * 1000.0,
        response_length=record.output_tokens or 0,
        response=None,
        context={"call_id": record.call_id, "model": record.model},
        exception=exception,
    )
    if record.ttft_s is not None:
        # Locust types response_time as int but stores floats fine (its request event passes floats).
        entry = environment.stats.get(record.scenario, TTFT)
        entry.log(record.ttft_s * 1000.0, record.output_tokens or 0)  # type: ignore[arg-type]


def _short_reason(record: CallRecord) -> str:
    # Only the class and the API's error type, so Locust's failure table groups by cause.
    message = record.error_message or ""
    if record.outcome.kind is OutcomeKind.HTTP:
        return message.split(":", 1)[0]
    return ""
