"""Fault injection: which failure, if any, a request suffers — at a configured rate or on a schedule.

Faults (off by default; rates are probabilities per request, at most one fault per request):
  overloaded    529 overloaded_error instead of a response
  api_error     500 api_error
  rate_limit    429 rate_limit_error with retry-after (independent of the real rate limiter)
  stream_error  a streamed response stops with `event: error` (overloaded_error) after some deltas;
                a non-streamed one answers 529 when it would have finished
  drop          the connection is closed mid-response (after some deltas; non-streamed: before answering)
  stall         no bytes for `stall_s` seconds partway through the response
  slow_headers  the response head is delayed by an extra `slow_headers_s` seconds

Config (`faults` in the config file, or --fault-* flags): {"overloaded": 0.05, ..., "stall_s": 5.0,
"slow_headers_s": 3.0, "retry_after_s": 5, "schedule": [{"fault": "overloaded", "start_s": 10,
"end_s": 20, "rate": 1.0}]}, schedule times in seconds since the simulator started. A request may also
ask for a fault with the header `x-simulator-fault: <name>` (used by tests and demos).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

FAULTS = ("overloaded", "api_error", "rate_limit", "stream_error", "drop", "stall", "slow_headers")
FAULT_HEADER = "x-simulator-fault"


@dataclass(slots=True)
class ScheduledFault:
    fault: str
    start_s: float
    end_s: float
    rate: float = 1.0


@dataclass(slots=True)
class FaultConfig:
    rates: dict[str, float] = field(default_factory=dict)
    schedule: list[ScheduledFault] = field(default_factory=list)
    stall_s: float = 5.0
    slow_headers_s: float = 3.0
    retry_after_s: float = 5.0

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> FaultConfig:
        out = cls()
        for key, value in cfg.items():
            if key in FAULTS:
                out.rates[key] = _rate(key, value)
            elif key in ("stall_s", "slow_headers_s", "retry_after_s"):
                setattr(out, key, float(value))
            elif key == "schedule":
                for i, entry in enumerate(value):
                    if entry.get("fault") not in FAULTS:
                        raise ValueError(f"faults.schedule[{i}].fault must be one of {FAULTS}")
                    out.schedule.append(
                        ScheduledFault(
                            entry["fault"],
                            float(entry.get("start_s", 0.0)),
                            float(entry.get("end_s", float("inf"))),
                            _rate(f"schedule[{i}]", entry.get("rate", 1.0)),
                        )
                    )
            else:
                known = [*FAULTS, "stall_s", "slow_headers_s", "retry_after_s", "schedule"]
                raise ValueError(f"faults: unknown key {key!r}; known: {known}")
        return out


def _rate(name: str, value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"faults.{name}: a rate is a probability in [0, 1]")
    return rate


class FaultInjector:
    def __init__(self, config: FaultConfig, started: float) -> None:
        self.config = config
        self.started = started

    def pick(self, now: float, rng: random.Random, requested: str | None) -> str | None:
        """The fault this request suffers, or None. Draws from the request's own seeded RNG."""
        if requested in FAULTS:
            return requested
        since = now - self.started
        for name in FAULTS:
            rate = self.config.rates.get(name, 0.0)
            for s in self.config.schedule:
                if s.fault == name and s.start_s <= since < s.end_s:
                    rate = max(rate, s.rate)
            if rate and rng.random() < rate:
                return name
        return None
