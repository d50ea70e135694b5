"""Locust's distributed mode for the harness: every worker's call records reach the master, exactly once.

Locust merges its own stats across workers; this module does the same for the harness's
records, over Locust's own worker channel (custom messages), so that the master's
``requests.jsonl``, exact percentiles in ``summary.json`` and every ``llm_request``
listener (the web tab, SLOs, stages) see every call of every worker:

- a worker batches the records of its finished calls (every :data:`REPORT_INTERVAL_S`,
  or at :data:`MAX_BATCH` records) into one compact ``llm_records`` message: the field
  names once, then one row of values per call;
- the master re-fires ``llm_request`` for each received record, and nothing else:
  Locust's stats already arrive through Locust's own reports, so they are not fed twice;
- at test stop the master asks every worker still running to stop and send its last
  batch (``llm_flush``), and waits for it before the summary is written, so calls cut
  off by the stop are in the results as ``cancelled``; a worker that vanished (killed,
  network lost) loses only the calls in flight at its last report, and the master logs
  how many;
- the stage label follows the master: a new ``harness.stage`` goes to every worker at
  once (``llm_stage``), and with each spawn message for workers that join later;
- :func:`worker_share` splits an open-loop rate across workers so the total is the asked rate.

Nothing here runs in a local (single-process) run. ``--processes N`` is the same
master/worker pair on one machine, so it works the same way.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_INIT, STATE_MISSING, STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from harness import events as llm_events
from harness.measure import CANCELLED, OK, CallRecord
from harness.runtime import Harness, harness_of

__all__ = [
    "MAX_BATCH",
    "REPORT_INTERVAL_S",
    "decode_batch",
    "encode_batch",
    "install",
    "rate_share",
    "worker_share",
    "worker_slot",
]

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.25  # how stale the master's view of a worker may be; also what a killed worker loses at most
MAX_BATCH = 1000  # records per message, so one message stays well under a megabyte
FLUSH_TIMEOUT_S = 15.0  # longest wait at test stop for a live worker's last batch
BOUND_CPU_PERCENT = 90.0  # Locust's own worker CPU warning threshold
BOUND_SHARE = 0.25  # generator-bound when at least this share of a worker's CPU samples pass the threshold

MSG_RECORDS = "llm_records"  # worker -> master: a batch of records
MSG_STAGE = "llm_stage"  # master -> workers: the new stage label
MSG_FLUSH = "llm_flush"  # master -> worker: stop now and send your last batch
MSG_SLOT = "llm_slot"  # master -> worker: your position among the run's workers (for rate splits)

# Names the master adds to Locust's parsed options; Locust copies them to workers with every spawn.
OPT_RUN = "llm_run_id"
OPT_STAGE = "llm_stage"
OPT_WORKERS = "llm_worker_count"

# Sections of a worker's own summary carried to the master as that worker's health.
HEALTH_SECTIONS = ("generator", "health")

_FIELDS = [f.name for f in fields(CallRecord)]
_SLOT_ATTR = "llm_worker_slot"


# -- rate split -------------------------------------------------------------------------


def worker_share(total_rate: float, worker_index: int, worker_count: int) -> float:
    """The part of an open-loop ``total_rate`` (calls/s) that worker ``worker_index`` issues.

    ``worker_index`` is the worker's position among the run's ``worker_count`` workers
    (0-based). Shares are equal and add up to ``total_rate`` (computed as differences of
    cumulative shares, so they sum exactly even in floating point).
    """
    if worker_count < 1:
        raise ValueError(f"worker_count must be at least 1, got {worker_count}")
    if not 0 <= worker_index < worker_count:
        raise ValueError(f"worker_index {worker_index} is not in 0..{worker_count - 1}")
    if total_rate < 0:
        raise ValueError(f"total_rate must be 0 or more, got {total_rate}")
    return total_rate * (worker_index + 1) / worker_count - total_rate * worker_index / worker_count


def worker_slot(environment: Environment) -> tuple[int, int]:
    """``(index, count)`` of this process among the run's workers; ``(0, 1)`` when not a worker."""
    slot: tuple[int, int] | None = getattr(environment, _SLOT_ATTR, None)
    return slot if slot is not None else (0, 1)


def rate_share(environment: Environment, total_rate: float) -> float:
    """This process's share of ``total_rate``; read it again from time to time, as workers join or leave."""
    index, count = worker_slot(environment)
    return worker_share(total_rate, index, count)


# -- the wire format --------------------------------------------------------------------


def encode_batch(records: Iterable[CallRecord]) -> dict[str, Any]:
    """Records as ``{"fields": [...], "rows": [[...], ...]}``: field names once, not once per call."""
    return {"fields": _FIELDS, "rows": [[getattr(r, name) for name in _FIELDS] for r in records]}


def decode_batch(batch: dict[str, Any]) -> list[CallRecord]:
    """The records of :func:`encode_batch` (fields unknown to this version are dropped)."""
    names = batch["fields"]
    return [CallRecord.from_dict(dict(zip(names, row, strict=True))) for row in batch["rows"]]


# -- the worker side --------------------------------------------------------------------


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
        _import_transport(environment)
        if runner.worker_state in (STATE_SPAWNING, STATE_RUNNING):
            # A worker joining a running test can get its first spawn, and fire test_start,
            # while it waits for the master's ack, before init: catch up once init is over.
            gevent.spawn(self._on_test_start)

    @property
    def harness(self) -> Harness:
        return harness_of(self.environment)

    def _on_test_start(self, **_: Any) -> None:
        options = self.environment.parsed_options
        self.run_id = getattr(options, OPT_RUN, None)
        count = getattr(options, OPT_WORKERS, None)
        index = self.runner.worker_index
        if isinstance(count, int) and 0 <= index < count:
            setattr(self.environment, _SLOT_ATTR, (index, count))
        if options is not None and hasattr(options, OPT_STAGE):
            self.harness.stage = getattr(options, OPT_STAGE)
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
        setattr(environment, _SLOT_ATTR, (int(msg.data["index"]), int(msg.data["count"])))

    def _on_flush_message(self, environment: Environment, msg: Any, **_: Any) -> None:
        if msg.data.get("run") != self.run_id or self._final_sent:
            return
        # Stopping fires test_stop, which records the calls in flight as cancelled and
        # sends the last batch (_on_summary); Locust's own stop/quit that follows is a no-op.
        self.runner.stop()


def _import_transport(environment: Environment) -> None:
    # The SDK's first import costs one to three seconds of CPU. Paid at init at the latest,
    # rather than in the first spawn's test_start, where it would delay the users.
    if getattr(environment.parsed_options, "transport", "sdk") == "sdk":
        importlib.import_module("harness.sdk_transport")


def _import_before_connecting(argv: list[str], environ: dict[str, str]) -> bool:
    """True for a worker (``--worker``) or a master about to fork workers (``--processes``).

    Locust connects a worker to its master before ``init``: a worker busy importing then
    misses heartbeats (three seconds on a busy machine), the master marks it missing,
    and a late joiner is given users it cannot start. Importing while the locustfile
    loads costs the same time before the connection; forked workers inherit the import.
    """
    flags = {a.split("=", 1)[0] for a in argv}
    from_env = environ.get("LOCUST_MODE_WORKER") or environ.get("LOCUST_PROCESSES")
    return bool(flags & {"--worker", "--processes"} or from_env)


if _import_before_connecting(sys.argv[1:], dict(os.environ)):
    importlib.import_module("harness.sdk_transport")


# -- the master side --------------------------------------------------------------------


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
        self._set_option(OPT_RUN, self.run_id)
        self._set_option(OPT_STAGE, harness.stage)
        self._set_option(OPT_WORKERS, self.runner.worker_count)
        self._monitor = gevent.spawn(self._monitor_loop)

    def _set_option(self, name: str, value: Any) -> None:
        # Without parsed options (an in-process Environment) workers learn no run id,
        # and the master then takes batches marked with none (see _on_test_start).
        if self.environment.parsed_options is not None:
            setattr(self.environment.parsed_options, name, value)

    def _on_stage(self, stage: str | None) -> None:
        self._set_option(OPT_STAGE, stage)
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
            view.ok += record.outcome == OK
            view.cancelled += record.outcome == CANCELLED
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
        self._set_option(OPT_WORKERS, max(len(running), self.runner.worker_count))

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


# -- wiring -----------------------------------------------------------------------------


def install(environment: Environment) -> WorkerReporter | MasterCollector | None:
    """Wire the record channel into ``environment``'s runner; nothing for a local runner."""
    llm_events.install(environment.events)
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return WorkerReporter(environment)
    if isinstance(runner, MasterRunner):
        return MasterCollector(environment)
    return None


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    install(environment)
