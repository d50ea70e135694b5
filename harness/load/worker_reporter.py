"""A worker's side of the record channel: its records to the master in batches, the master's stage followed.

A worker batches the records of its finished calls (every
:data:`~harness.load.distributed.REPORT_INTERVAL_S`, or at
:data:`~harness.load.distributed.MAX_BATCH` records) into one compact ``llm_records``
message; at its test stop it sends the last batch with its health; it follows the
master's stage (``llm_stage``), its slot among the workers (``llm_slot``) and the
master's request to stop now and flush (``llm_flush``).
"""

from __future__ import annotations

from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WorkerRunner

from harness.core.measure import CallRecord
from harness.load.channel import (
    HEALTH_SECTIONS,
    MAX_BATCH,
    MSG_FLUSH,
    MSG_RECORDS,
    MSG_SLOT,
    MSG_STAGE,
    REPORT_INTERVAL_S,
    encode_batch,
    import_transport,
)
from harness.load.context import read_context
from harness.runtime.state import Harness, harness_of

__all__ = ["WorkerReporter"]


class WorkerReporter:
    """Sends this worker's records to the master in batches, and follows the master's stage."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.run_id: str | None = None
        self._pending: list[CallRecord] = []
        self._seq = 0
        self._sent_in_flight = -1
        self._flusher: gevent.Greenlet | None = None
        self._final_sent = True
        self._summary_hooked = False
        runner = environment.runner
        assert isinstance(runner, WorkerRunner)
        self.runner = runner
        environment.events.llm_request.add_listener(self._on_record)  # type: ignore[attr-defined]
        environment.events.test_start.add_listener(self._on_test_start)
        runner.register_message(MSG_STAGE, self._on_stage_message)
        runner.register_message(MSG_FLUSH, self._on_flush_message)
        runner.register_message(MSG_SLOT, self._on_slot_message)
        import_transport(environment)
        if runner.worker_state in (STATE_SPAWNING, STATE_RUNNING):
            # A worker joining a running test can get its first spawn, and fire test_start,
            # while it waits for the master's ack, before init: catch up once init is over.
            gevent.spawn(self._on_test_start)

    @property
    def harness(self) -> Harness:
        return harness_of(self.environment)

    def _on_test_start(self, **_: Any) -> None:
        context = read_context(self.environment.parsed_options)
        self.run_id = context.run_id if context is not None else None
        count = context.worker_count if context is not None else None
        index = self.runner.worker_index
        if isinstance(count, int) and 0 <= index < count:
            self.harness.worker_slot = (index, count)
        if context is not None:
            self.harness.stage = context.stage
        if not self._summary_hooked:
            # Hooked now rather than at init, so sections other listeners add to this
            # worker's summary (its generator health) are there when the last batch leaves.
            self.environment.events.llm_summary.add_listener(self._on_summary)  # type: ignore[attr-defined]
            self._summary_hooked = True
        self._pending.clear()
        self._seq = 0
        self._sent_in_flight = -1
        self._final_sent = False
        self._send()  # says "I am in this run" before any call ends
        self._flusher = gevent.spawn(self._flush_loop)

    def _on_record(self, *, record: CallRecord, **_: Any) -> None:
        self._pending.append(record)
        if len(self._pending) >= MAX_BATCH:
            self._send()

    def _flush_loop(self) -> None:
        while True:
            gevent.sleep(REPORT_INTERVAL_S)
            if self._pending or self.harness.in_flight != self._sent_in_flight:
                self._send()

    def _send(self, *, final: bool = False, health: dict[str, Any] | None = None) -> None:
        # Records and the in-flight count are read together, with no yield between them:
        # every call this worker started is either in a sent batch or in that count.
        records, self._pending = self._pending, []
        in_flight = self.harness.in_flight
        self._seq += 1
        message = {
            "run": self.run_id,
            "seq": self._seq,
            "in_flight": in_flight,
            "final": final,
            **encode_batch(records),
        }
        if final:
            message["health"] = health
            message["calls"] = self.harness.store.calls
        self.runner.send_message(MSG_RECORDS, message)
        self._sent_in_flight = in_flight

    def _on_summary(self, *, summary: dict[str, Any], **_: Any) -> None:
        # The worker's test stop: every in-flight call is already recorded as cancelled.
        if self._final_sent:
            return
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
        health = {k: summary[k] for k in HEALTH_SECTIONS if k in summary} or None
        self._send(final=True, health=health)
        self._final_sent = True

    def _on_stage_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.harness.stage = msg.data["stage"]

    def _on_slot_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        self.harness.worker_slot = (int(msg.data["index"]), int(msg.data["count"]))

    def _on_flush_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        if msg.data.get("run") != self.run_id or self._final_sent:
            return
        # Stopping fires test_stop, which records the calls in flight as cancelled and
        # sends the last batch (_on_summary); Locust's own stop/quit that follows is a no-op.
        self.runner.stop()
