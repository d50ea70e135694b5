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
import os
import sys

from locust.runners import MasterRunner, WorkerRunner

from harness.load.master_collector import MasterCollector
from harness.load.worker_reporter import WorkerReporter
from harness.runtime.features import Feature
from harness.runtime.state import Harness

__all__ = ["FEATURE", "import_before_connecting", "install"]


def install(harness: Harness) -> WorkerReporter | MasterCollector | None:
    """Wire the record channel into the run's runner: a worker's reporter, a master's collector, else nothing."""
    environment = harness.environment
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return WorkerReporter(environment)
    if isinstance(runner, MasterRunner):
        return MasterCollector(environment)
    return None


FEATURE = Feature("distributed", install)


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


def import_before_connecting() -> None:
    """Pay the SDK's import while the locustfile loads, in a process that connects to a master before ``init``."""
    if _import_before_connecting(sys.argv[1:], dict(os.environ)):
        importlib.import_module("harness.transports.sdk")
