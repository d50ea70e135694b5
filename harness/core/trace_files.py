"""Trace files read into typed lines (:class:`harness.core.trace.Trace`), their format detected or forced.

Four formats, told apart by the first line's fields or columns (or forced by name):

``mooncake``  JSONL, Mooncake's FAST'25 traces as AIPerf and GuideLLM read them::

                  {"timestamp": 27482, "input_length": 655, "output_length": 52, "hash_ids": [46, 47]}

              ``timestamp`` in milliseconds; ``hash_ids`` one id per 512-token block of the prompt
              (equal ids = equal text, i.e. a shared prefix); optional ``session_id``.
``azure``     CSV, the Azure LLM inference traces (2023 and 2024)::

                  TIMESTAMP,ContextTokens,GeneratedTokens
                  2023-11-16 18:15:46.6805900,4808,10

              ``TIMESTAMP`` a wall-clock datetime (up to 100 ns digits, optional UTC offset).
``burstgpt``  CSV, BurstGPT's release files::

                  Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type
                  5,ChatGPT,472,18,490,Conversation log

              ``Timestamp`` in seconds; ``Model`` and ``Log Type`` are kept as the line's ``source``
              (they name OpenAI models, never sent); a ``Session ID`` column, where present, is used.
``harness``   JSONL, this harness's own format (docs/trace-replay.md)::

                  {"offset_s": 0.0, "input_tokens": 1200, "output_tokens": 150}
                  {"offset_s": 0.8, "input_tokens": 2400, "output_tokens": 90, "hash_ids": [1, 2],
                   "session_id": "s1", "turn": 1, "model": "claude-haiku-4-5", "scenario": "chat"}

              required: ``offset_s`` (seconds, >= 0), ``input_tokens``, ``output_tokens``;
              optional: ``hash_ids``, ``session_id`` + ``turn`` (a conversation), ``request`` (a full
              Messages API body, sent as it is), ``model``, ``scenario``. Other fields are refused.

Every line's ``offset_s`` counts from the earliest line. A file out of time order is sorted
(stable, by offset) and :attr:`Trace.notes` says so. Any bad line is a ConfigError naming the
file, the line number, what is wrong and how to fix it. Nothing here does I/O but reading the file.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from harness.core.errors import ConfigError
from harness.core.prompts import check_request_body
from harness.core.trace import Trace, TraceFormat, TraceLine

__all__ = ["detect_format", "load_trace"]


# -- reading --------------------------------------------------------------------------

_CSV_COLUMNS = {
    TraceFormat.AZURE: ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    TraceFormat.BURSTGPT: ("Timestamp", "Request tokens", "Response tokens"),
}
_HARNESS_FIELDS = frozenset(
    {"offset_s", "input_tokens", "output_tokens", "hash_ids", "session_id", "turn", "request", "model", "scenario"}
)


def detect_format(path: Path, text: str | None = None) -> TraceFormat:
    """The format of a trace from its first non-blank line; ConfigError if it is none of them."""
    body = _read(path) if text is None else text
    first = next((line for line in body.splitlines() if line.strip()), None)
    if first is None:
        raise ConfigError(f"trace {path} is empty; give a trace with one call per line")
    if first.lstrip().startswith("{"):
        try:
            keys = set(json.loads(first))
        except (json.JSONDecodeError, TypeError):
            raise ConfigError(f"trace {path} line 1 is not a JSON object; fix the line or the file") from None
        if {"timestamp", "input_length"} <= keys:
            return TraceFormat.MOONCAKE
        if "offset_s" in keys:
            return TraceFormat.HARNESS
        raise ConfigError(
            f"trace {path}: JSONL with fields {sorted(keys)} is no known trace; Mooncake lines need "
            '"timestamp" and "input_length", harness lines "offset_s" (or pass --replay-format)'
        )
    columns = {c.strip() for c in next(csv.reader([first]))}
    for fmt, needed in _CSV_COLUMNS.items():
        if set(needed) <= columns:
            return fmt
    raise ConfigError(
        f"trace {path}: CSV columns {sorted(columns)} are no known trace; Azure needs "
        f"{', '.join(_CSV_COLUMNS[TraceFormat.AZURE])}, BurstGPT {', '.join(_CSV_COLUMNS[TraceFormat.BURSTGPT])}"
    )


def load_trace(path: str | Path, fmt: TraceFormat | str | None = None) -> Trace:
    """Read and check a trace file; ``fmt`` forces a format (a :class:`TraceFormat` or its name)."""
    path = Path(path)
    text = _read(path)
    if fmt is None:
        chosen = detect_format(path, text)
    else:
        try:
            chosen = TraceFormat(fmt)
        except ValueError:
            names = ", ".join(f.value for f in TraceFormat)
            raise ConfigError(f"--replay-format {fmt!r} is unknown; choose one of: {names}") from None
    raw = _csv_lines(path, text, chosen) if chosen in _CSV_COLUMNS else _jsonl_lines(path, text, chosen)
    if not raw:
        raise ConfigError(f"trace {path} has no calls (only a header or blank lines); add one call per line")
    return _finish(path, chosen, raw)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # -sig: a CSV saved by a spreadsheet starts with a BOM
    except FileNotFoundError:
        raise ConfigError(f"trace {path} not found; check the --trace-replay path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"trace {path} cannot be read as UTF-8 text: {exc}") from None


def _jsonl_lines(path: Path, text: str, fmt: TraceFormat) -> list[TraceLine]:
    lines: list[TraceLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"trace {path} line {number}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where} is not valid JSON ({exc.msg} at column {exc.colno}); fix or remove it"
            ) from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where} is not a JSON object; write one object per line")
        f = _Fields(obj, where)
        if fmt is TraceFormat.MOONCAKE:
            lines.append(
                TraceLine(
                    line=number,
                    offset_s=f.number("timestamp") / 1000.0,
                    input_tokens=f.count("input_length"),
                    output_tokens=f.count("output_length"),
                    hash_ids=f.hash_ids(),
                    session_id=f.text("session_id"),
                )
            )
            continue
        unknown = sorted(set(obj) - _HARNESS_FIELDS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown field(s) {unknown}; known fields: {', '.join(sorted(_HARNESS_FIELDS))}"
            )
        request = obj.get("request")
        lines.append(
            TraceLine(
                line=number,
                offset_s=f.number("offset_s"),
                input_tokens=f.count("input_tokens"),
                output_tokens=f.count("output_tokens"),
                hash_ids=f.hash_ids(),
                session_id=f.text("session_id"),
                turn=f.optional_count("turn", 1),
                request=None if request is None else check_request_body(request, f'{where} "request"'),
                model=f.text("model"),
                scenario=f.text("scenario"),
            )
        )
    return lines


def _csv_lines(path: Path, text: str, fmt: TraceFormat) -> list[TraceLine]:
    reader = csv.reader(io.StringIO(text))
    header = [c.strip() for c in next(reader, [])]
    missing = [c for c in _CSV_COLUMNS[fmt] if c not in header]
    if missing:
        raise ConfigError(
            f"trace {path} line 1: no column {', '.join(missing)} for a {fmt.value} trace; header: {header}"
        )
    index = {name: i for i, name in enumerate(header)}
    lines: list[TraceLine] = []
    epoch: datetime | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"trace {path} line {reader.line_num}"
        if len(row) < len(header):
            raise ConfigError(f"{where} has {len(row)} columns, the header {len(header)}; fix or remove the line")
        f = _Fields({name: row[i].strip() for name, i in index.items()}, where)
        if fmt is TraceFormat.AZURE:
            stamp = _datetime(row[index["TIMESTAMP"]], where)
            epoch = epoch or stamp
            offset = (stamp - epoch) / timedelta(seconds=1)
            tokens = (f.count("ContextTokens"), f.count("GeneratedTokens"))
            source = session = None
        else:
            offset = f.number("Timestamp")
            tokens = (f.count("Request tokens"), f.count("Response tokens"))
            origin = [row[index[c]].strip() for c in ("Model", "Log Type") if c in index and row[index[c]].strip()]
            source = " / ".join(origin) or None
            session = f.text("Session ID") if "Session ID" in index else None
        lines.append(TraceLine(reader.line_num, offset, *tokens, session_id=session, source=source))
    return lines


_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?$")


def _datetime(text: str, where: str) -> datetime:
    # Azure writes 7 fractional digits (100 ns), which datetime.fromisoformat refuses before 3.11.
    match = _STAMP.match(text.strip())
    if match is None:
        raise ConfigError(f"{where}: TIMESTAMP {text!r} is not a datetime like 2023-11-16 18:15:46.6805900")
    zone = match[3] or ""
    stamp = datetime.fromisoformat(match[1].replace(" ", "T") + ("+00:00" if zone == "Z" else zone))
    if stamp.tzinfo is not None:  # mixed naive/aware stamps cannot be subtracted: compare as UTC-naive
        stamp = stamp.replace(tzinfo=None) - (stamp.utcoffset() or timedelta())
    return stamp + timedelta(seconds=float(f"0.{match[2]}") if match[2] else 0.0)


class _Fields:
    """Typed reads of one line's fields, each failure a one-line ConfigError."""

    def __init__(self, obj: Mapping[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def number(self, name: str) -> float:
        """A required number of 0 or more."""
        value = self.obj.get(name)
        if value is None or value == "":
            raise ConfigError(f'{self.where}: no "{name}"; every line needs one')
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number != number or number < 0:
            raise ConfigError(f'{self.where}: "{name}" is {value!r}; write a number of 0 or more')
        return number

    def count(self, name: str) -> int:
        """A required whole number of 0 or more."""
        value = self.optional_count(name, 0)
        if value is None:
            raise ConfigError(f'{self.where}: no "{name}"; every line needs one')
        return value

    def optional_count(self, name: str, minimum: int) -> int | None:
        value = self.obj.get(name)
        if value is None or value == "":
            return None
        try:
            number = float(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or number != int(number) or number < minimum:
            raise ConfigError(f'{self.where}: "{name}" is {value!r}; write a whole number of {minimum} or more')
        return int(number)

    def text(self, name: str) -> str | None:
        value = self.obj.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(f'{self.where}: "{name}" is {value!r}; write a string')
        return str(value)

    def hash_ids(self) -> tuple[int, ...]:
        value = self.obj.get("hash_ids")
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f'{self.where}: "hash_ids" is {str(value)[:40]}; write a list of whole numbers')
        return tuple(value)


def _finish(path: Path, fmt: TraceFormat, raw: list[TraceLine]) -> Trace:
    """Sort by offset, re-base to the earliest line, number the sessions' turns, set the period."""
    notes: list[str] = []
    ordered = sorted(raw, key=lambda x: x.offset_s)
    moved = sum(a is not b for a, b in zip(raw, ordered, strict=True))
    if moved:
        notes.append(f"trace {path} was not in time order; sorted by offset ({moved} lines moved)")
    first = ordered[0].offset_s
    # Rounded to the microsecond: subtracting large epoch-like clocks leaves float noise.
    lines = [replace(x, offset_s=round(x.offset_s - first, 6)) for x in ordered]
    lines = _number_turns(path, lines)
    span = lines[-1].offset_s
    # One period is the span plus one mean gap: a loop then keeps the recorded rate, and the
    # next pass's first call does not land on this pass's last.
    duration = span * len(lines) / (len(lines) - 1) if len(lines) > 1 else 0.0
    return Trace(path, fmt, tuple(lines), duration, tuple(notes))


def _number_turns(path: Path, lines: list[TraceLine]) -> list[TraceLine]:
    sessions: dict[str, list[int]] = {}
    for i, x in enumerate(lines):
        if x.session_id is not None:
            sessions.setdefault(x.session_id, []).append(i)
        elif x.turn is not None:
            raise ConfigError(f'trace {path} line {x.line}: "turn" without "session_id"; add the session_id')
    for session, indexes in sessions.items():
        turns = [lines[i].turn for i in indexes]
        if all(t is None for t in turns):
            for n, i in enumerate(indexes, start=1):
                lines[i] = replace(lines[i], turn=n)
        elif any(t is None for t in turns):
            raise ConfigError(f"trace {path}: session {session!r} numbers some turns only; give every line a turn")
        elif turns != sorted(set(turns)):  # type: ignore[type-var]
            raise ConfigError(
                f"trace {path}: session {session!r} has turns {turns} in time order; "
                "each turn must be new and come after the previous one"
            )
    return lines
