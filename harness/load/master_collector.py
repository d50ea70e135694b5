"""The master's side of the record channel: every worker's records re-fired on the master, exactly once.

The master re-fires ``llm_request`` for each received record, and nothing else (Locust's
stats arrive through Locust's own reports). At test stop it asks every worker still
running to stop and send its last batch (``llm_flush``), and waits for it before the
summary is written; a worker that vanished loses only the calls in flight at its last
report, and the master logs how many. It sends the stage label to the workers as it
changes, and each worker's slot among the run's workers for open-loop rate splits.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner

from harness.load.channel import (
    BOUND_CPU_PERCENT,
    BOUND_SHARE,
    FLUSH_TIMEOUT_S,
    MSG_FLUSH,
    MSG_RECORDS,
    MSG_SLOT,
    MSG_STAGE,
    decode_batch,
)
from harness.load.context import update_context
from harness.runtime.state import Harness, harness_of

__all__ = ["MasterCollector", "WorkerView"]

log = logging.getLogger(__name__)


@dataclass
class WorkerView:
    """What the master knows of one worker in the current run."""

    client_id: str
    index: int
    seq: int = 0
    calls: int = 0
    ok: int = 0
    cancelled: int = 0
    deltas: int = 0
    in_flight: int = 0
    last_report: float = field(default_factory=time.monotonic)
    final: bool = False
    lost: bool = False
    declared_calls: int | None = None
    health: dict[str, Any] | None = None
    cpu: list[float] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "lost" if self.lost else "finished" if self.final else "running"

    def generator_bound(self) -> str | None:
        """Why this worker's figures are not trustworthy, or None."""
        for section in (self.health or {}).values():
            if isinstance(section, dict) and section.get("generator_bound"):
                return str(section.get("reason") or "its generator health check says so")
        if self.cpu:
            busy = sum(c >= BOUND_CPU_PERCENT for c in self.cpu) / len(self.cpu)
            if busy >= BOUND_SHARE:
                return f"CPU at {BOUND_CPU_PERCENT:.0f}% or more in {busy:.0%} of its one-second samples"
        return None

    def to_dict(self, duration_s: float) -> dict[str, Any]:
        per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)
        return {
            "index": self.index,
            "status": self.status,
            "calls": self.calls,
            "ok": self.ok,
            "cancelled": self.cancelled,
            "lost_in_flight": self.in_flight if self.lost else 0,
            "calls_per_s": per_s(self.calls - self.cancelled),
            "deltas": self.deltas,
            "deltas_per_s": per_s(self.deltas),
            "cpu_percent": {
                "mean": sum(self.cpu) / len(self.cpu) if self.cpu else None,
                "max": max(self.cpu) if self.cpu else None,
            },
            "generator_bound": self.generator_bound() is not None,
            "health": self.health,
        }


class MasterCollector:
    """Receives the workers' records, re-fires them on the master, and closes the run exactly."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        runner = environment.runner
        assert isinstance(runner, MasterRunner)
        self.runner = runner
        self.run_id: str | None = None
        self.workers: dict[str, WorkerView] = {}
        self._closed = True
        self._monitor: gevent.Greenlet | None = None
        self._hooked: Harness | None = None
        runner.register_message(MSG_RECORDS, self._on_records)
        environment.events.test_start.add_listener(self._on_test_start)

    @property
    def harness(self) -> Harness:
        return harness_of(self.environment)

    # the run

    def _on_test_start(self, **_: Any) -> None:
        harness = self.harness
        if self._hooked is not harness:
            harness.stage_listeners.append(self._on_stage)
            harness.before_summary.append(self._collect_last_batches)
            self.environment.events.llm_summary.add_listener(self._on_summary)  # type: ignore[attr-defined]
            self._hooked = harness
        self.run_id = uuid.uuid4().hex if self.environment.parsed_options is not None else None
        self.workers = {}
        self._closed = False
        # Spawn messages carry the parsed options to every worker, late joiners included.
        self._set_context(run_id=self.run_id, stage=harness.stage, worker_count=self.runner.worker_count)
        self._monitor = gevent.spawn(self._monitor_loop)

    def _set_context(self, **changes: Any) -> None:
        # Without parsed options (an in-process Environment) workers learn no run id,
        # and the master then takes batches marked with none (see _on_test_start).
        update_context(self.environment.parsed_options, **changes)

    def _on_stage(self, stage: str | None) -> None:
        self._set_context(stage=stage)
        if not self._closed:
            # Sent now, so it reaches each worker before the spawn messages of the new stage.
            self.runner.send_message(MSG_STAGE, {"run": self.run_id, "stage": stage})

    # records

    def _on_records(self, environment: Environment, msg: Any, **_: Any) -> None:
        data = msg.data
        if data.get("run") != self.run_id:
            log.debug("Dropped a batch of %d records from %s for another run", len(data["rows"]), msg.node_id)
            return
        if self._closed:
            if data["rows"]:
                log.warning(
                    "Worker %s sent %d records after the summary was written; they are not in the results",
                    msg.node_id,
                    len(data["rows"]),
                )
            return
        view = self.workers.get(msg.node_id)
        if view is None:
            view = self.workers[msg.node_id] = WorkerView(msg.node_id, self.runner.get_worker_index(msg.node_id))
            self._send_slots()
        if data["seq"] <= view.seq or view.final:
            log.warning("Worker %s re-sent batch %s; ignored", msg.node_id, data["seq"])
            return
        if view.lost:
            log.info("Worker %s is reporting again; its records are counted", msg.node_id)
            view.lost = False
        view.seq = data["seq"]
        view.in_flight = data["in_flight"]
        view.last_report = time.monotonic()
        fire = environment.events.llm_request.fire  # type: ignore[attr-defined]
        for record in decode_batch(data):
            view.calls += 1
            view.ok += record.outcome.ok
            view.cancelled += record.outcome.cancelled
            view.deltas += len(record.itl_s) + 1 if record.t_first_token is not None else 0
            # Only the harness's consumers: Locust's stats come through Locust's own reports.
            fire(record=record, environment=environment)
        if data["final"]:
            view.final = True
            view.health = data.get("health")
            view.declared_calls = data.get("calls")
            self._send_slots()
            if view.declared_calls is not None and view.declared_calls != view.calls:
                log.warning(
                    "Worker %s made %d calls but %d reached the master", msg.node_id, view.declared_calls, view.calls
                )

    def _send_slots(self) -> None:
        """Tell each running worker its position, so open-loop rates add up to the asked total."""
        done = {v.client_id for v in self.workers.values() if v.final or v.lost}
        # Workers Locust runs that have not reported yet count too: the first to report
        # must not take the whole rate until the others do.
        ids = {v.client_id for v in self.workers.values()} | {c.id for c in self.runner.clients.all}
        running = sorted(
            (i for i in ids if i not in done and self._counts_in_split(i)), key=self.runner.get_worker_index
        )
        for position, client_id in enumerate(running):
            if client_id in self.workers:
                self.runner.send_message(
                    MSG_SLOT, {"run": self.run_id, "index": position, "count": len(running)}, client_id=client_id
                )
        self._set_context(worker_count=max(len(running), self.runner.worker_count))

    def _counts_in_split(self, client_id: str) -> bool:
        if client_id in self.workers:
            return True
        node = self.runner.clients.get(client_id)
        return node is not None and node.state in (STATE_INIT, STATE_SPAWNING, STATE_RUNNING)

    # workers that vanish

    def _alive(self, view: WorkerView) -> bool:
        node = self.runner.clients.get(view.client_id)
        return node is not None and node.state != STATE_MISSING

    def _mark_lost(self, view: WorkerView) -> None:
        view.lost = True
        log.warning(
            "Worker %s (index %d) stopped reporting: %d calls in flight at its last report %.1f s ago are lost; "
            "its %d calls reported before are in the results",
            view.client_id,
            view.index,
            view.in_flight,
            time.monotonic() - view.last_report,
            view.calls,
        )
        self._send_slots()

    def _monitor_loop(self) -> None:
        while not self._closed:
            gevent.sleep(1.0)
            for view in list(self.workers.values()):
                if view.final or view.lost:
                    continue
                if not self._alive(view):
                    self._mark_lost(view)
                    continue
                node = self.runner.clients.get(view.client_id)
                if node is not None:
                    view.cpu.append(float(node.cpu_usage))

    # the end

    def _collect_last_batches(self) -> None:
        """At the master's test stop: stop every live worker and wait for its last batch."""
        waiting = [v for v in self.workers.values() if not v.final and not v.lost]
        for view in waiting:
            if self._alive(view):
                self.runner.send_message(MSG_FLUSH, {"run": self.run_id}, client_id=view.client_id)
        deadline = time.monotonic() + FLUSH_TIMEOUT_S + (self.environment.stop_timeout or 0.0)
        while time.monotonic() < deadline:
            waiting = [v for v in waiting if not v.final and not v.lost]
            for view in waiting:
                if not self._alive(view):
                    self._mark_lost(view)
            if not any(not v.final and not v.lost for v in waiting):
                break
            gevent.sleep(0.02)
        for view in waiting:
            if not view.final and not view.lost:
                log.warning("Worker %s sent no last batch within %.0f s", view.client_id, FLUSH_TIMEOUT_S)
                self._mark_lost(view)
        self._closed = True
        if self._monitor is not None:
            self._monitor.kill(block=False)
            self._monitor = None

    def _on_summary(self, *, summary: dict[str, Any], harness: Harness, **_: Any) -> None:
        duration = harness.duration_s
        warnings = []
        for view in self.workers.values():
            reason = view.generator_bound()
            if reason is not None:
                warnings.append(
                    f"worker {view.client_id} (index {view.index}) is generator-bound ({reason}): "
                    "its latency figures are not trustworthy; use fewer users per worker or more workers"
                )
            if view.lost:
                warnings.append(f"worker {view.client_id} (index {view.index}) lost {view.in_flight} calls in flight")
        for warning in warnings:
            log.warning(warning)
        summary["workers"] = {
            "count": len(self.workers),
            "lost_calls": sum(v.in_flight for v in self.workers.values() if v.lost),
            "warnings": warnings,
            "per_worker": {v.client_id: v.to_dict(duration) for v in sorted(self.workers.values(), key=_by_index)},
        }


def _by_index(view: WorkerView) -> int:
    return view.index
