"""The harness's state for one Locust :class:`~locust.env.Environment`.

Like Locust's ``Environment``, one :class:`Harness` object carries everything a run
shares: the options, the process-wide transport, the calls in flight, the raw samples,
the artefact files and the installed features (:mod:`harness.runtime.features`), each
found by its type. :func:`attach` creates it (the plugin does so at Locust's ``init``;
in-process runs may call it directly) and :func:`harness_of` finds it; it is the one
attribute the harness sets on Locust's ``Environment``.

A run's samples are spilled to disk (:class:`~harness.core.spillstore.SpilledSampleStore`,
in ``<report dir>/.samples`` or a temporary directory), so a run of any length holds a flat
amount of memory; reducing them to summary.json runs in gevent's threadpool
(:meth:`Harness.reduce`), so the event loop goes on timing calls and serving the web UI
meanwhile. The store is closed (its files removed) when the next run starts or the process
quits, after every reduction still reading it has finished.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from harness.core.artefacts import write_json_atomic
from harness.core.errors import CallError, ConfigError
from harness.core.measure import CANCELLED, OK, PROTOCOL, CallMeasurement, CallRecord
from harness.core.options import from_namespace
from harness.core.platforms import platform_model
from harness.core.records_io import RotatingRequestsWriter
from harness.core.redact import redact
from harness.core.request import MessageRequest
from harness.core.slo import SLO, call_meets
from harness.core.spillstore import SpilledSampleStore
from harness.core.summary import SampleStore
from harness.runtime import events as llm_events
from harness.runtime.deadline import call_deadline
from harness.runtime.idle_reports import IdleReporter
from harness.runtime.offloop import OffLoop
from harness.runtime.options import HarnessOptions
from harness.runtime.target import transport_auth
from harness.transports.base import Transport, TransportConfig
from harness.transports.registry import get_transport

if TYPE_CHECKING:
    from harness.core.schedule import Block
    from harness.runtime.features import Feature

__all__ = ["Harness", "attach", "harness_of"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_ATTR = "llm_harness"
STOPPED = "run stopped mid-call"

SAMPLES_DIR = ".samples"
"""Where a run that writes artefacts spills its samples, inside the report directory (removed at the end)."""

Store = SampleStore | SpilledSampleStore


class Harness:
    """Run state and the one path every measured call takes."""

    def __init__(self, environment: Environment, options: HarnessOptions) -> None:
        self.environment = environment
        self.options = options
        self._stage: str | None = None
        # Called with each new stage label (a master forwards it to its workers).
        self.stage_listeners: list[Callable[[str | None], None]] = []
        # Called at test stop before the summary (a master waits there for its workers' last records).
        self.before_summary: list[Callable[[], None]] = []
        self.warmup = False  # set by a load shape while its stage warms up; stamped on each record
        self.block: Block | None = None  # set by a lever study while one of its blocks runs; stamped likewise
        self.slos: list[SLO] = []
        # In memory until a run starts (nothing is written for a process that never runs one).
        self.store: Store = SampleStore(good=self._good)
        self.requests: RotatingRequestsWriter | None = None
        self.rotate_bytes: int | None = None  # --rotate-records, set by the rolling-artefacts feature
        # The last reduction of the store: (its summary document, the run's elapsed seconds then).
        self.reduced: tuple[dict[str, Any], float] | None = None
        # Reductions and gzip of rotated parts, in gevent's threadpool: waited for before the
        # files they read are closed or removed.
        self.off_loop = OffLoop()
        self._in_flight: dict[str, CallMeasurement] = {}
        self._run_started: float | None = None
        # The run began to stop and kills its users without waiting (no --stop-timeout): a call
        # that ends from now on was cut or delayed by the stop, never a measurement.
        self._cutting = False
        # While the run runs, a finished call's bookkeeping waits for an idle loop (idle_reports.py).
        # A feature that acts on each call as it ends sets defer_reports False before the run
        # starts: a lever study admits a user's next call, or stops the user, on its record.
        self.defer_reports = True
        self._reports = IdleReporter(self._deliver)
        self._run_ended: float | None = None
        self.last_summary: dict[str, Any] | None = None
        self._platform_models: dict[str, str] = {}  # scenario model name -> the platform's id
        self._last_transport: tuple[str, HarnessOptions, Transport] | None = None
        self._features: dict[str, Any] = {}  # feature name -> its per-run object
        self._by_type: dict[type, Any] = {}
        # This worker's (index, count) among the run's workers, from the master; (0, 1) elsewhere.
        self.worker_slot: tuple[int, int] = (0, 1)
        llm_events.install(environment.events)
        environment.events.llm_request.add_listener(self._on_llm_request)  # type: ignore[attr-defined]
        environment.events.test_start.add_listener(self._on_test_start)
        environment.events.test_stopping.add_listener(self._on_test_stopping)
        environment.events.test_stop.add_listener(self._on_test_stop)
        environment.events.quitting.add_listener(self._on_quitting)

    # -- features -------------------------------------------------------------------

    def install(self, feature: Feature[T], *args: Any, **kwargs: Any) -> T:
        """Install ``feature`` into this run (once) and return its per-run object.

        Extra arguments go to the feature's install function: a run built in code passes
        what the command line would have given (``harness.install(retries.FEATURE, policy)``).
        """
        if feature.name in self._features:
            installed: T = self._features[feature.name]
            return installed
        value = feature.install(self, *args, **kwargs)
        self._features[feature.name] = value
        if value is not None:
            self._by_type[type(value)] = value
        return value

    def feature(self, kind: type[T]) -> T | None:
        """The installed feature object of type ``kind``, if its feature is installed."""
        found: T | None = self._by_type.get(kind)
        return found

    def installed(self, name: str) -> bool:
        return name in self._features

    def options_of(self, options_class: type[T]) -> T:
        """A feature's options for this run, from Locust's parsed options (defaults for a run built in code)."""
        return from_namespace(options_class, self.environment.parsed_options)

    def _good(self, record: CallRecord) -> bool:
        return call_meets(record, self.slos)

    def _new_store(self) -> SpilledSampleStore:
        report_dir = self.options.report_dir
        directory = Path(report_dir) / SAMPLES_DIR if report_dir and self.writes_artefacts else None
        if directory is not None and directory.is_dir():
            for stale in directory.iterdir():  # a killed run's samples (only this process writes here)
                if stale.suffix == ".f64" or stale.name == "columns.json":
                    stale.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # made anew, so it is removed at the end again
                directory.rmdir()
        return SpilledSampleStore(good=self._good, directory=directory)

    def _close_store(self) -> None:
        """Remove the store's files, once every reduction reading them has finished."""
        self.off_loop.wait()
        if isinstance(self.store, SpilledSampleStore):
            self.store.close()

    def reduce(self) -> dict[str, Any]:
        """:meth:`summary`, computed in gevent's threadpool while this greenlet waits; kept as :attr:`reduced`.

        numpy releases the GIL while it reads, counts and sorts, so the event loop goes on
        timing calls meanwhile.
        """
        duration, extra = self.duration_s, {"config": self.run_config()}
        store = self.store
        if isinstance(store, SpilledSampleStore):
            snapshot = store.snapshot()
            document = self.off_loop.run(lambda: snapshot.summary(duration_s=duration, extra=extra))
        else:
            document = store.summary(duration_s=duration, extra=extra)
        if self.store is store:  # not a reduction of the last run that ended after the next one began
            self.reduced = (document, duration)
        return document

    @property
    def stage(self) -> str | None:
        """The label stamped on each call that starts from now on."""
        return self._stage

    @stage.setter
    def stage(self, value: str | None) -> None:
        self._stage = value
        for listener in self.stage_listeners:
            listener(value)

    # -- calls ----------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def transport(self, host: str) -> Transport:
        # Every call asks; building and hashing a TransportConfig each time is a measurable
        # share of a call's CPU, so the last answer is kept while host and options stay.
        last = self._last_transport
        if last is not None and last[0] == host and last[1] is self.options:
            return last[2]
        config = TransportConfig(
            base_url=host,
            **transport_auth(self.options, host, os.environ),
            timeout_s=self.options.request_timeout,
            connect_timeout_s=self.options.connect_timeout,
            max_retries=self.options.max_retries,
            verify_tls=not self.options.insecure,
        )
        transport = get_transport(self.options.transport, config)
        self._last_transport = (host, self.options, transport)
        return transport

    def call(
        self,
        request: MessageRequest,
        *,
        host: str,
        scenario: str,
        user_id: int | None = None,
        t_scheduled: float | None = None,
        attempt: int = 1,
        retry_of: str | None = None,
        trace: tuple[int, int, int] | None = None,
    ) -> CallRecord:
        """Send ``request``, measure it, report it once; never raises for a failed call.

        A greenlet killed mid-call (the run stopped) records the call as ``cancelled``
        and lets the kill go on. So does a call that ends after the run began to stop
        without waiting for calls (no ``--stop-timeout``): Locust's stop stalls the event
        loop before it kills the users, and a call that reads its bytes after that stall
        would carry it in its TTFT, or fail on a connection the stop cut. Such a call is
        ``cancelled`` and raises ``GreenletExit``, as the kill on its way would have; none
        starts once the stop has begun. On Bedrock or Vertex the model is sent (and recorded) by
        the platform's id (:func:`harness.core.platforms.platform_model`). ``trace`` is a
        replayed call's (line, input tokens, output tokens) from its trace, kept on the record.
        """
        if self._cutting:
            raise gevent.GreenletExit
        if self.options.platform != "anthropic":
            request = self._on_platform(request)
        block = self.block
        measurement = CallMeasurement(
            scenario=scenario,
            model=request.model,
            stream=request.stream,
            user_id=user_id,
            worker=self.worker_name,
            stage=self.stage,
            warmup=self.warmup,
            t_scheduled=t_scheduled,
            attempt=attempt,
            retry_of=retry_of,
            arm=None if block is None else block.arm,
            round=None if block is None else block.round,
            block=None if block is None else block.index,
            trace=trace,
        )
        self._in_flight[measurement.call_id] = measurement
        outcome, reason = OK, None
        try:
            with call_deadline(self.options.call_timeout):
                self.transport(host).send(request, measurement)
        except CallError as exc:
            outcome, reason = exc.outcome, exc.reason  # CallError redacts it
        except gevent.GreenletExit:
            self._cancel(measurement, STOPPED)
            raise
        except Exception as exc:  # a bug must cost one call, not the user
            log.exception("unexpected error in a call of %s", scenario)
            outcome, reason = PROTOCOL, redact(f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight.pop(measurement.call_id, None)
        if self._cutting:
            self._cancel(measurement, STOPPED)
            raise gevent.GreenletExit
        record = measurement.finish(outcome, error_message=reason)
        self._report(record)
        return record

    def _on_platform(self, request: MessageRequest) -> MessageRequest:
        model = self._platform_models.get(request.model)
        if model is None:
            model = platform_model(request.model, self.options.platform)
            if model is None:
                log.warning(
                    "no %s id is known for model %r: sent as given (give the platform's id with --model)",
                    self.options.platform,
                    request.model,
                )
                model = request.model
            self._platform_models[request.model] = model
        return request if model == request.model else replace(request, model=model)

    def _cancel(self, measurement: CallMeasurement, why: str) -> None:
        if measurement.finished is None:
            self._report(measurement.finish(CANCELLED, error_message=why))

    def _report(self, record: CallRecord) -> None:
        self._reports.report(record)

    def _deliver(self, record: CallRecord) -> None:
        llm_events.report_to_locust(self.environment, record)
        self.environment.events.llm_request.fire(record=record, environment=self.environment)  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Report every finished call still waiting for an idle moment (see ``_report``)."""
        self._reports.flush()

    # -- the run --------------------------------------------------------------------

    def _on_llm_request(self, *, record: CallRecord, **_: Any) -> None:
        self.store.add(record)
        if self.requests is not None:
            self.requests.write(record)

    def _on_test_start(self, **_: Any) -> None:
        # The run starts now, before this listener's own work: Locust's --run-time counts from
        # here too (its timer is armed just before test_start), so duration_s is the -t asked.
        self._run_started = time.monotonic()
        self._cutting = False
        self._run_ended = None
        self._reports.deferring = self.defer_reports
        # A full garbage collection in mid-run stops every greenlet while it scans the heap
        # (~100 ms in a large process: a TTFT 100 ms late). Collect before the first call,
        # then freeze what exists, so the run's collections scan only the run's own objects;
        # Locust freezes the same way before it forks --processes workers.
        gc.collect()
        gc.freeze()
        self._refresh_options()
        self._close_store()
        self.store = self._new_store()
        self.reduced = None
        if self.environment.host and not isinstance(self.environment.runner, MasterRunner):
            # Build the shared client now, so its ~1 s first import is not charged to a call.
            # (A master makes no calls: blocking it here would delay every worker's spawn.)
            self.transport(self.environment.host)
        if self.writes_artefacts:
            # Rotated parts are gzipped in the threadpool: the event loop never waits for zlib.
            self.requests = RotatingRequestsWriter(
                Path(self.options.report_dir or "."), self.rotate_bytes, run_in=self.off_loop.start
            )
            self.requests.open()

    def _refresh_options(self) -> None:
        # The web UI's start form (and, on a worker, the master's spawn message) may have
        # changed the options since the last run; each run uses the values it started with.
        parsed = self.environment.parsed_options
        if parsed is None:
            return
        try:
            self.options = HarnessOptions.from_namespace(parsed)
        except ConfigError as exc:
            log.error("keeping the previous options: %s", exc)

    @property
    def in_flight_by_scenario(self) -> dict[str, int]:
        """Calls in flight per scenario."""
        counts: dict[str, int] = {}
        for measurement in self._in_flight.values():
            counts[measurement.scenario] = counts.get(measurement.scenario, 0) + 1
        return counts

    def _on_test_stopping(self, **_: Any) -> None:
        # The run ends when its stop begins (the -t timer fired, Ctrl-C, the web UI's stop),
        # not once every user has been stopped and counted.
        self._run_ended = time.monotonic()
        self._cutting = not self.environment.stop_timeout
        self._reports.deferring = False  # what ends from now on is reported as it ends
        self.flush()

    def _on_test_stop(self, **_: Any) -> None:
        self._reports.deferring = False  # a stop without test_stopping (the flush at a hard exit)
        self.flush()
        # Users killed without a chance to run their own handler still get their record.
        for measurement in list(self._in_flight.values()):
            self._cancel(measurement, STOPPED)
        self._cutting = False  # every user has stopped: calls made from here on are measured
        if self._run_ended is None:  # a stop without test_stopping (the flush at a hard exit)
            self._run_ended = time.monotonic()
        for hook in self.before_summary:
            hook()
        self.last_summary = self.reduce()
        self.environment.events.llm_summary.fire(  # type: ignore[attr-defined]
            summary=self.last_summary, harness=self, environment=self.environment
        )
        self.write_summary(self.last_summary)

    @property
    def duration_s(self) -> float:
        if self._run_started is None:
            return 0.0
        end = self._run_ended if self._run_ended is not None else time.monotonic()
        return end - self._run_started

    def summary(self) -> dict[str, Any]:
        """The summary.json document for the run so far."""
        return self.store.summary(
            duration_s=self.duration_s,
            extra={"config": self.run_config()},
        )

    def run_config(self) -> dict[str, Any]:
        """What the run was asked to do; never the API key."""
        env = self.environment
        parsed = env.parsed_options
        return {
            "host": env.host,
            "scenarios": [u.__name__ for u in env.user_classes],
            "users": getattr(parsed, "num_users", None),
            "spawn_rate": getattr(parsed, "spawn_rate", None),
            "run_time": getattr(parsed, "run_time", None),
            **self.options.public(),
        }

    @property
    def writes_artefacts(self) -> bool:
        # Workers leave the files to the master, which sees every worker's calls.
        return bool(self.options.report_dir) and not isinstance(self.environment.runner, WorkerRunner)

    def write_summary(self, document: dict[str, Any]) -> None:
        if not self.writes_artefacts or self.options.report_dir is None:
            return
        if self.requests is not None:
            self.requests.close()
            self.off_loop.wait()  # the last rotated part compressed before anything reads the set
        write_json_atomic(Path(self.options.report_dir) / "summary.json", document)

    @property
    def running(self) -> bool:
        """A run has started and not stopped yet."""
        return self._run_started is not None and self._run_ended is None

    def write_periodic_summary(self, every_s: float) -> bool:
        """Rewrite summary.json with the run so far (``--summary-every``); False once the run stopped.

        The document holds the final one's figures so far, plus ``periodic``; the sections
        that features add at the end (stages, SLOs, cost, ...) are not in it.
        """
        if not self.running or not self.writes_artefacts or self.options.report_dir is None:
            return False
        document = self.reduce()
        if not self.running:  # stopped while reducing: the final summary is (being) written
            return False
        document["periodic"] = {
            "every_s": every_s,
            "elapsed_s": document["duration_s"],
            "written_at": time.time(),
            "final": False,
        }
        write_json_atomic(Path(self.options.report_dir) / "summary.json", document)
        return True

    def _on_quitting(self, **_: Any) -> None:
        # Locust fires quitting before it stops a run still going (its test_stop then reads the
        # store): that run's files are left to the exit hook of harness.core.spill.
        if self.running:
            return
        self._close_store()
        self.store = SampleStore(good=self._good)

    @property
    def worker_name(self) -> str:
        runner = self.environment.runner
        return str(runner.client_id) if isinstance(runner, WorkerRunner) else "local"


def attach(environment: Environment, options: HarnessOptions | None = None) -> Harness:
    """Create the harness for ``environment`` (once); later calls return the same one."""
    existing: Harness | None = getattr(environment, _ATTR, None)
    if existing is not None:
        return existing
    if options is None:
        options = HarnessOptions.from_namespace(environment.parsed_options)
    harness = Harness(environment, options)
    setattr(environment, _ATTR, harness)
    return harness


def harness_of(environment: Environment) -> Harness:
    """The environment's harness, attached with default options if nothing attached one yet."""
    return attach(environment)
