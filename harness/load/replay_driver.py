"""Trace replay's calls: each line of a trace at its recorded offset, open loop, with its synthesised prompt.

:class:`ReplayPlan` says what one process replays: the trace after ``--replay-window`` and
``--replay-speed`` (once, or forever with ``--replay-loop``), each line with its request body
(:class:`harness.core.synth.TracePrompts`), and, across Locust workers, this process's share of
the lines: line ``i`` of the schedule goes to the worker whose index is ``i % count``. Every
process walks the whole schedule, so a conversation's history is the same wherever its turns
land (it is rebuilt from the trace, not from the target's answers).

:class:`ReplayDriver` is the open-loop driver of ``--arrival`` (:class:`OpenLoopDriver`) fed from
the plan instead of a rate: line ``k`` is due at ``start + offset_s``, its call is measured from
that time (coordinated omission corrected), and ``--max-in-flight`` / ``--max-backlog`` make
late and dropped arrivals exactly as they do for ``--arrival``. The body of the next line is
built before the driver sleeps until it is due, so building it costs no lateness.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from gevent.event import Event
from locust.env import Environment

from harness.core.errors import ConfigError
from harness.core.request import MessageRequest
from harness.core.synth import Calibration, TracePrompts
from harness.core.trace import ReplayOptions, Trace, TraceLine
from harness.load.arrivals import ArrivalOptions, OpenLoopDriver
from harness.runtime.state import Harness
from harness.runtime.user import AnthropicUser

__all__ = ["ReplayDriver", "ReplayPlan", "calibrate"]

log = logging.getLogger(__name__)

Body = dict[str, Any]
_REQUEST_FIELDS = ("model", "max_tokens", "messages", "system", "temperature", "stream")


class ReplayPlan:
    """The lines one process replays, each with its request body, in schedule order."""

    def __init__(
        self,
        trace: Trace,
        options: ReplayOptions,
        calibration: Calibration | None = None,
        *,
        slot: tuple[int, int] = (0, 1),
    ) -> None:
        self.trace = trace
        self.options = options
        self.slot = slot
        self.shaped = options.apply(trace)
        self.prompts = TracePrompts(self.shaped.lines, calibration)

    def items(self) -> Iterator[tuple[TraceLine, Body]]:
        """``(line, body)`` for this process's lines; a conversation's turns are built wherever they land."""
        index, count = self.slot
        prompts = self.prompts
        history: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for i, line in enumerate(self.options.schedule(self.trace)):
            mine = i % count == index
            key = line.session_key
            if not mine and key is None:
                continue
            body = prompts.request(line, history.get(key, ()) if key is not None else ())
            if key is not None:
                if prompts.continues(line):
                    history[key] = prompts.next_history(line, body)
                else:  # its last turn: nothing will read this history again
                    history.pop(key, None)
            if mine:
                yield line, body


def calibrate(harness: Harness, host: str, model: str) -> tuple[Calibration, str]:
    """The target's tokens per character of filler, by its ``count_tokens``; the default if it has none."""
    from harness.transports.count_tokens import CountTokensError, count_tokens

    transport = harness.transport(host)
    try:
        return Calibration.measure(lambda body: count_tokens(transport, body), model), "count_tokens"
    except (CountTokensError, ConfigError) as exc:
        log.warning("trace replay: %s; prompts are sized at 4 characters per token", exc)
        return Calibration(), f"default (count_tokens unavailable: {exc})"


class ReplayDriver(OpenLoopDriver):
    """Issues the calls of a :class:`ReplayPlan` at their offsets from the replay's start."""

    def __init__(
        self,
        environment: Environment,
        arrival: ArrivalOptions,
        make_plan: Callable[[], ReplayPlan],
        template: type[AnthropicUser],
    ) -> None:
        super().__init__(environment, arrival, follow_test=False, note=self._count)
        self.make_plan = make_plan
        self.template = template
        self.due = 0
        self.dropped = 0
        self.t_start: float | None = None  # the replay's offset 0, on this process's monotonic clock
        self.done = Event()  # every line of this process's share was issued and its call has ended

    def start(self, **_: Any) -> None:
        self._running = True
        self.done.clear()
        self.due = self.dropped = 0
        self.t_start = None
        self._loop = gevent.spawn(self._replay)

    def _count(self, _label: str | None, _warmup: bool, dropped: bool) -> None:
        self.due += 1
        self.dropped += dropped

    def _replay(self) -> None:
        try:
            items = self.make_plan().items()
            pending = next(items, None)
            start = self.t_start = time.monotonic()
            while pending is not None:
                due = start + pending[0].offset_s
                delay = due - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                self._dispatch(due, pending)
                pending = next(items, None)  # the next body is built now, before its wait
            self.calls.join()  # a call that ends starts the backlog's next one in the same group
        except Exception:  # a bug must end this share of the replay, not leave the run waiting for it
            log.exception("trace replay stopped early")
        finally:
            self.done.set()

    def _issue(self, t_scheduled: float, item: Any) -> None:
        line, body = item
        template, options = self.template, self.harness.options
        extra = {k: v for k, v in body.items() if k not in _REQUEST_FIELDS}
        request = MessageRequest(
            model=options.model or body.get("model") or template.model,
            max_tokens=int(body["max_tokens"]),
            messages=body["messages"],
            system=body.get("system"),
            temperature=body.get("temperature", template.temperature),
            stream=bool(body.get("stream", template.stream)),
            extra={**template.params, **extra},
        )
        self.harness.call(
            request,
            host=template.host or self.environment.host or "",
            scenario=line.scenario or template.name(),
            t_scheduled=t_scheduled,
            trace=(line.line, line.input_tokens, line.output_tokens),
        )
