"""Timestamped traffic traces as typed lines: a trace, its lines, and how to cut, speed up or loop it.

:mod:`harness.core.trace_files` reads the four file formats into a :class:`Trace`; every
line's ``offset_s`` counts from the earliest line. :class:`ReplayOptions` (``--replay-speed``,
``--replay-window``, ``--replay-loop``) shapes what is replayed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError
from harness.core.units import parse_duration

__all__ = [
    "ReplayOptions",
    "Trace",
    "TraceFormat",
    "TraceLine",
    "parse_window",
]


class TraceFormat(str, Enum):
    MOONCAKE = "mooncake"
    AZURE = "azure"
    BURSTGPT = "burstgpt"
    HARNESS = "harness"


@dataclass(frozen=True)
class TraceLine:
    """One recorded call: when it arrived (``offset_s`` from the trace's start) and its lengths."""

    line: int  # line number in the file (a CSV's header is line 1)
    offset_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    session_id: str | None = None
    turn: int | None = None  # 1-based within the session; set for every line of a session
    request: Mapping[str, Any] | None = field(default=None, hash=False)
    model: str | None = None
    scenario: str | None = None
    source: str | None = None  # what the trace says of the line's origin (BurstGPT's model and log type)
    loop: int = 0  # the repetition under --replay-loop: 0 for the first pass

    @property
    def session_key(self) -> tuple[str, int] | None:
        """The conversation this line continues; each loop repetition is a conversation of its own."""
        return None if self.session_id is None else (self.session_id, self.loop)


@dataclass(frozen=True)
class Trace:
    """A loaded trace, in offset order. ``duration_s`` is one loop period (see :meth:`looped`)."""

    path: Path
    format: TraceFormat
    lines: tuple[TraceLine, ...]
    duration_s: float
    notes: tuple[str, ...] = ()

    @property
    def recorded_rate(self) -> float:
        """Calls per second over one period (0 for a trace without one)."""
        return len(self.lines) / self.duration_s if self.duration_s > 0 else 0.0

    def window(self, start_s: float, end_s: float | None) -> Trace:
        """The lines with ``start_s <= offset < end_s``, re-based so ``start_s`` is offset 0."""
        end = end_s if end_s is not None else self.duration_s
        kept = tuple(replace(x, offset_s=x.offset_s - start_s) for x in self.lines if start_s <= x.offset_s < end)
        if not kept:
            raise ConfigError(
                f"--replay-window {_fmt(start_s)}:{_fmt(end_s)} holds no line of trace {self.path} "
                f"(its lines span 0s to {_fmt(self.lines[-1].offset_s)}); widen the window"
            )
        return replace(self, lines=kept, duration_s=max(0.0, end - start_s))

    def scaled(self, speed: float) -> Trace:
        """Every offset divided by ``speed`` (2 replays twice as fast)."""
        if not speed > 0:
            raise ConfigError(f"--replay-speed {speed:g} must be above 0, e.g. 2 to replay twice as fast")
        lines = tuple(replace(x, offset_s=x.offset_s / speed) for x in self.lines)
        return replace(self, lines=lines, duration_s=self.duration_s / speed)

    def looped(self) -> Iterator[TraceLine]:
        """The lines forever: repetition k is shifted by k periods and carries ``loop=k``."""
        if not self.duration_s > 0:
            raise ConfigError(f"--replay-loop needs a trace that lasts longer than 0s; {self.path} does not")
        for k in itertools.count():
            shift = k * self.duration_s
            for x in self.lines:
                yield replace(x, offset_s=x.offset_s + shift, loop=k)


@dataclass(frozen=True)
class ReplayOptions:
    """``--replay-speed``, ``--replay-window`` and ``--replay-loop``, checked."""

    speed: float = 1.0
    window: tuple[float, float | None] | None = None
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ConfigError(f"--replay-speed {self.speed:g} must be above 0, e.g. 2 to replay twice as fast")

    def apply(self, trace: Trace) -> Trace:
        """The window (in trace time), then the speed."""
        cut = trace.window(*self.window) if self.window is not None else trace
        return cut.scaled(self.speed) if self.speed != 1.0 else cut

    def schedule(self, trace: Trace) -> Iterator[TraceLine]:
        """The lines to replay in offset order: once, or forever with ``loop``."""
        shaped = self.apply(trace)
        return shaped.looped() if self.loop else iter(shaped.lines)


def parse_window(text: str) -> tuple[float, float | None]:
    """``START:END`` in trace time (``30s:5m``, ``:90s``, ``1m:``) as seconds; END None = to the end."""
    start_text, sep, end_text = text.partition(":")
    if not sep:
        raise ConfigError(f"--replay-window {text!r} needs START:END, e.g. 30s:5m (either side may be empty)")
    start = parse_duration(start_text, "--replay-window start") if start_text.strip() else 0.0
    end = parse_duration(end_text, "--replay-window end") if end_text.strip() else None
    if start < 0 or (end is not None and end <= start):
        raise ConfigError(f"--replay-window {text!r} must end after it starts, e.g. 30s:5m")
    return start, end


def _fmt(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:g}s"
