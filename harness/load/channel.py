"""The worker-to-master channel's vocabulary: message names, the compact record batch, rate shares.

Shared by both ends (:mod:`harness.load.worker_reporter`, :mod:`harness.load.master_collector`)
and by the open-loop split across workers (:func:`rate_share`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from locust.env import Environment

from harness.core.measure import CallRecord
from harness.runtime.state import harness_of

__all__ = [
    "MAX_BATCH",
    "REPORT_INTERVAL_S",
    "decode_batch",
    "encode_batch",
    "import_transport",
    "rate_share",
    "worker_share",
]

REPORT_INTERVAL_S = 0.25  # how stale the master's view of a worker may be; also what a killed worker loses at most
MAX_BATCH = 1000  # records per message, so one message stays well under a megabyte
FLUSH_TIMEOUT_S = 15.0  # longest wait at test stop for a live worker's last batch
BOUND_CPU_PERCENT = 90.0  # Locust's own worker CPU warning threshold
BOUND_SHARE = 0.25  # generator-bound when at least this share of a worker's CPU samples pass the threshold

MSG_RECORDS = "llm_records"  # worker -> master: a batch of records
MSG_STAGE = "llm_stage"  # master -> workers: the new stage label
MSG_FLUSH = "llm_flush"  # master -> worker: stop now and send your last batch
MSG_SLOT = "llm_slot"  # master -> worker: your position among the run's workers (for rate splits)


# Sections of a worker's own summary carried to the master as that worker's health.
HEALTH_SECTIONS = ("generator", "health")

_FIELDS = [f.name for f in fields(CallRecord)]


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


def rate_share(environment: Environment, total_rate: float) -> float:
    """This process's share of ``total_rate``; read it again from time to time, as workers join or leave."""
    index, count = harness_of(environment).worker_slot
    return worker_share(total_rate, index, count)


# -- the wire format --------------------------------------------------------------------


def encode_batch(records: Iterable[CallRecord]) -> dict[str, Any]:
    """Records as ``{"fields": [...], "rows": [[...], ...]}``: field names once, not once per call."""
    return {"fields": _FIELDS, "rows": [[getattr(r, name) for name in _FIELDS] for r in records]}


def decode_batch(batch: dict[str, Any]) -> list[CallRecord]:
    """The records of :func:`encode_batch` (fields unknown to this version are dropped)."""
    names = batch["fields"]
    return [CallRecord.from_dict(dict(zip(names, row, strict=True))) for row in batch["rows"]]


def import_transport(environment: Environment) -> None:
    # The SDK's first import costs one to three seconds of CPU. Paid at init at the latest,
    # rather than in the first spawn's test_start, where it would delay the users.
    if getattr(environment.parsed_options, "transport", "sdk") == "sdk":
        importlib.import_module("harness.transports.sdk")
