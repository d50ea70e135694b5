"""What a master tells its workers with every spawn message: run id, stage, worker count, open-loop rate.

Locust copies the master's parsed options to each worker with every spawn message, late
joiners included; that is the one channel a worker reads before its first test start.
The harness rides it with one entry, :data:`CONTEXT_KEY`, holding a :class:`RunContext`
(as a plain dict, which Locust's message encoding carries), instead of loose attributes
on Locust's options.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["CONTEXT_KEY", "RunContext", "read_context", "update_context"]

CONTEXT_KEY = "llm_run_context"


@dataclass(frozen=True)
class RunContext:
    """The master's view of the run that each worker follows."""

    run_id: str | None = None  # marks the records of this run (a worker's late batch of an old one is dropped)
    stage: str | None = None  # the label stamped on every call
    worker_count: int | None = None  # how many workers share an open-loop rate
    arrival_rate: float | None = None  # the open-loop total rate of the current stage


def read_context(options: Any) -> RunContext | None:
    """The context a master put in ``options``; ``None`` if none did (a local run, or no master yet)."""
    raw = getattr(options, CONTEXT_KEY, None)
    if not isinstance(raw, dict):
        return None
    names = {f.name for f in fields(RunContext)}
    return RunContext(**{k: v for k, v in raw.items() if k in names})


def update_context(options: Any, **changes: Any) -> None:
    """Change the context a master sends with its next spawn messages (nothing without options)."""
    if options is None:
        return
    current = read_context(options) or RunContext()
    setattr(options, CONTEXT_KEY, asdict(replace(current, **changes)))
