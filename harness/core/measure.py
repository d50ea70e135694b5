"""Measurement of one LLM call: time stamps in, one :class:`CallRecord` out.

Every definition here is ``docs/METRICS.md`` turned into code, in one place, so that
every transport produces the same record. A transport tells a :class:`CallMeasurement`
what happened (request written, response headers, each typed stream event, the end or
the failure) and the measurement stamps times with ``time.monotonic()``, checks the
event order and derives TTFT, completion time, ITL, TPOT and per-call tokens/s.
"""

from __future__ import annotations

import itertools
import os
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from harness.core.errors import CallError, ProtocolError
from harness.core.outcome import CANCELLED, CONNECTION, OK, PROTOCOL, TIMEOUT, Outcome
from harness.core.ratelimits import ratelimit_headers
from harness.core.stream_events import (
    CONTENT_DELTA_TYPES,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    StreamEvent,
    Usage,
)

__all__ = [
    "CANCELLED",
    "CONNECTION",
    "OK",
    "PROTOCOL",
    "TIMEOUT",
    "CallMeasurement",
    "CallRecord",
    "Outcome",
    "error_detail",
]


def error_detail(body: object, headers: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(error type, message) of an error response, as far as its body (parsed JSON or text) and headers say.

    The type is the Messages API's ``error.type``; on Amazon Bedrock, whose body is only
    ``{"message": ...}``, the exception named by ``x-amzn-ErrorType`` (``ThrottlingException``);
    on Google Vertex AI's own errors, ``error.status`` (``RESOURCE_EXHAUSTED``).
    """
    aws_type = headers.get("x-amzn-errortype") if headers is not None else None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            kind = error.get("type") or aws_type or error.get("status")
            message = error.get("message") or error.get("Message") or ""
            return str(kind or "unknown_error").partition(":")[0], str(message)
    if aws_type:
        return aws_type.partition(":")[0], str(body)[:200] if body else ""
    return "unknown_error", str(body)[:200] if body else ""


_call_ids = itertools.count(1)
_PID = os.getpid()


def _next_call_id() -> str:
    return f"{_PID}-{next(_call_ids)}"


def _reset_call_ids() -> None:
    # Workers forked by --processes import this module in the parent: give each its own ids.
    global _PID, _call_ids
    _PID = os.getpid()
    _call_ids = itertools.count(1)


os.register_at_fork(after_in_child=_reset_call_ids)


@dataclass(slots=True)
class CallRecord:
    """Everything measured about one call; one line of ``requests.jsonl``.

    Absolute times (``t_*``) are ``time.monotonic()`` seconds; durations (``*_s``) are
    seconds. Token counts come from the server's ``usage`` only, ``None`` if it sent none.
    """

    call_id: str
    scenario: str
    model: str
    stream: bool
    outcome: Outcome
    user_id: int | None = None
    worker: str | None = None
    stage: str | None = None
    warmup: bool = False  # started during its stage's warm-up: kept in the file, left out of stage figures
    http_status: int | None = None
    error_message: str | None = None
    retry_after_s: float | None = None
    request_id: str | None = None
    stop_reason: str | None = None
    timestamp: float = 0.0
    t_scheduled: float = 0.0
    t_start: float = 0.0
    t_message_start: float | None = None
    t_first_token: float | None = None
    t_first_text: float | None = None
    t_last_token: float | None = None
    t_end: float = 0.0
    queue_s: float = 0.0
    ttft_s: float | None = None
    first_text_s: float | None = None
    completion_s: float = 0.0
    tpot_s: float | None = None
    output_tps: float | None = None
    itl_s: list[float] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    attempt: int = 1
    retry_of: str | None = None
    # The response's anthropic-ratelimit-* headers, prefix stripped (e.g. "requests-remaining").
    ratelimit: dict[str, int] | None = None
    # In a lever study (python -m harness.study): the arm (scenario class) and the schedule's
    # round and block the call started in; None outside a study.
    arm: str | None = None
    round: int | None = None
    block: int | None = None
    # --trace-replay: the trace's line number and the lengths it recorded for the call; None otherwise.
    trace_line: int | None = None
    trace_input_tokens: int | None = None
    trace_output_tokens: int | None = None

    def __post_init__(self) -> None:
        if type(self.outcome) is not Outcome:  # a record built from text (a file, a worker's batch, a test)
            self.outcome = Outcome.parse(self.outcome)

    @property
    def ok(self) -> bool:
        return self.outcome is OK

    def to_dict(self) -> dict[str, Any]:
        # What dataclasses.asdict gives, without its deep copy field by field (~100 us a record
        # of 50 gaps, the largest cost of writing requests.jsonl): the fields are scalars, one
        # list of floats and one flat dict, so copying those two is a deep copy.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["itl_s"] = list(self.itl_s)
        if self.ratelimit is not None:
            data["ratelimit"] = dict(self.ratelimit)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


_FIELDS = tuple(f.name for f in fields(CallRecord))


class CallMeasurement:
    """The state of one call in flight. Not thread-safe; one greenlet owns it."""

    # Slots: every content delta reads several of these, thousands of calls at a time.
    __slots__ = (
        "_delta_times",
        "_final_usage",
        "_open_blocks",
        "_open_loop",
        "_record",
        "_started",
        "_stopped",
        "_t_begin",
        "_t_scheduled",
        "_t_stop",
        "_usage",
        "clock",
        "finished",
    )

    def __init__(
        self,
        *,
        scenario: str,
        model: str,
        stream: bool,
        user_id: int | None = None,
        worker: str | None = None,
        stage: str | None = None,
        warmup: bool = False,
        t_scheduled: float | None = None,
        attempt: int = 1,
        retry_of: str | None = None,
        arm: str | None = None,
        round: int | None = None,
        block: int | None = None,
        trace: tuple[int, int, int] | None = None,  # (line, input tokens, output tokens) of a replayed call
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        now = clock()
        self._record = CallRecord(
            call_id=_next_call_id(),
            scenario=scenario,
            model=model,
            stream=stream,
            outcome=OK,
            user_id=user_id,
            worker=worker,
            stage=stage,
            warmup=warmup,
            timestamp=time.time(),
            t_start=now,
            attempt=attempt,
            retry_of=retry_of,
            arm=arm,
            round=round,
            block=block,
        )
        if trace is not None:
            rec = self._record
            rec.trace_line, rec.trace_input_tokens, rec.trace_output_tokens = trace
        self._t_begin = now
        self._open_loop = t_scheduled is not None
        self._t_scheduled = t_scheduled
        self._delta_times = array("d")
        self._started = False
        self._stopped = False
        self._t_stop: float | None = None
        self._open_blocks: set[int] = set()
        self._usage = Usage()
        self._final_usage: Usage | None = None
        self.finished: CallRecord | None = None

    @property
    def call_id(self) -> str:
        return self._record.call_id

    @property
    def scenario(self) -> str:
        return self._record.scenario

    # -- what the transport reports -------------------------------------------------

    def request_sent(self, t: float | None = None) -> None:
        """The request is about to be written to the connection (after any pool wait)."""
        self._record.t_start = self.clock() if t is None else t

    def response(self, status: int, headers: Mapping[str, str]) -> None:
        """Response headers arrived."""
        self._record.http_status = status
        # Bedrock names it x-amzn-requestid; Vertex sends none (the message id stands in: event()).
        self._record.request_id = (
            headers.get("request-id") or headers.get("x-request-id") or headers.get("x-amzn-requestid")
        )
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                self._record.retry_after_s = float(retry_after)
            except ValueError:
                self._record.retry_after_s = None
        self._record.ratelimit = ratelimit_headers(headers)

    def event(self, event: StreamEvent, t: float | None = None) -> None:
        """One typed stream event, stamped now; raises CallError to end the call."""
        now = self.clock() if t is None else t
        if self._stopped and not isinstance(event, Ping):
            raise ProtocolError(f"{event.type} after message_stop")
        if isinstance(event, ContentBlockDelta):
            if not self._started or event.index not in self._open_blocks:
                raise ProtocolError("content_block_delta outside an open content block")
            if event.payload:
                self.content_delta(event.delta_type, now)
            return
        if isinstance(event, MessageStart):
            if self._started:
                raise ProtocolError("second message_start")
            self._started = True
            self._record.t_message_start = now
            self._usage = event.usage
            if self._record.request_id is None:
                self._record.request_id = event.message_id
            return
        if isinstance(event, Ping):
            return
        if not self._started and not isinstance(event, StreamError):
            raise ProtocolError(f"{event.type} before message_start")
        if isinstance(event, ContentBlockStart):
            self._open_blocks.add(event.index)
        elif isinstance(event, ContentBlockStop):
            self._open_blocks.discard(event.index)
        elif isinstance(event, MessageDelta):
            self._record.stop_reason = event.stop_reason or self._record.stop_reason
            self._final_usage = event.usage
        elif isinstance(event, MessageStop):
            self._stopped = True
            self._t_stop = now
        elif isinstance(event, StreamError):
            raise CallError(Outcome.stream(event.error_type), event.message[:200])

    @property
    def t_first_token(self) -> float | None:
        """When the call's first token was stamped; ``None`` until then."""
        return self._record.t_first_token

    @property
    def deltas(self) -> int:
        """How many content deltas have been timed so far."""
        return len(self._delta_times)

    def content_delta(self, delta_type: str, t: float) -> None:
        """One more non-empty delta of an open content block, at ``t``: all its timing needs.

        :meth:`event` calls it for every delta it has checked; a reader may call it
        directly for a delta its decoder has already placed (one more delta of the block
        the previous one was in: :attr:`StreamEventDecoder.repeat
        <harness.core.stream_decoder.StreamEventDecoder.repeat>`) and skip building the event.
        """
        if delta_type in CONTENT_DELTA_TYPES:
            rec = self._record
            if rec.t_first_token is None:
                rec.t_first_token = t
            if delta_type == "text_delta" and rec.t_first_text is None:
                rec.t_first_text = t
            self._delta_times.append(t)

    def message(self, usage: Usage, stop_reason: str | None, message_id: str | None = None) -> None:
        """A complete non-streaming message arrived."""
        if self._record.request_id is None:
            self._record.request_id = message_id
        self._usage = usage
        self._record.stop_reason = stop_reason
        self._stopped = True

    def stream_ended(self) -> None:
        """The body ended; a stream that never sent message_stop is broken."""
        if not self._stopped:
            raise ProtocolError("stream ended before message_stop")

    # -- the end --------------------------------------------------------------------

    def finish(
        self,
        outcome: Outcome = OK,
        *,
        error_message: str | None = None,
        t: float | None = None,
    ) -> CallRecord:
        """Close the call and derive every metric; idempotent.

        ``t_end`` is ``t`` if given; for a successful stream, when its ``message_stop`` was
        stamped (not after the transport's own end of call: draining, closing, pooling);
        otherwise now.
        """
        if self.finished is not None:
            return self.finished
        rec = self._record
        if t is None:
            t = self._t_stop if outcome.ok and self._t_stop is not None else self.clock()
        rec.t_end = t
        rec.outcome = outcome
        rec.error_message = error_message
        rec.queue_s = max(0.0, rec.t_start - self._t_begin)
        rec.t_scheduled = self._t_scheduled if self._open_loop and self._t_scheduled is not None else rec.t_start
        base = rec.t_scheduled
        rec.completion_s = rec.t_end - base
        if rec.t_first_token is not None:
            rec.ttft_s = rec.t_first_token - base
        if rec.t_first_text is not None:
            rec.first_text_s = rec.t_first_text - base
        times = self._delta_times
        if times:
            rec.t_last_token = times[-1]
            rec.itl_s = [b - a for a, b in itertools.pairwise(times)]
        self._apply_usage()
        n = rec.output_tokens
        if rec.t_first_token is not None and n is not None and n >= 2:
            rec.tpot_s = (rec.t_end - rec.t_first_token) / (n - 1)
            assert rec.t_last_token is not None
            span = rec.t_last_token - rec.t_first_token
            rec.output_tps = (n - 1) / span if span > 0 else None
        self.finished = rec
        return rec

    def _apply_usage(self) -> None:
        # message_start carries input and cache counts; message_delta's usage is
        # cumulative and, where a count is present, the later and truer figure.
        start, final = self._usage, self._final_usage or Usage()
        rec = self._record
        rec.input_tokens = _pick(final.input_tokens, start.input_tokens)
        rec.output_tokens = _pick(final.output_tokens, start.output_tokens)
        rec.cache_creation_input_tokens = _pick(final.cache_creation_input_tokens, start.cache_creation_input_tokens)
        rec.cache_read_input_tokens = _pick(final.cache_read_input_tokens, start.cache_read_input_tokens)


def _pick(later: int | None, earlier: int | None) -> int | None:
    return later if later is not None else earlier
