"""``requests.jsonl`` as a rotated set: one writer that rotates it, one reader for every consumer.

Naming, in the report directory (``N`` counts up from 1, six digits, in writing order)::

    requests-000001.jsonl.gz    closed parts, oldest first, gzip-compressed
    requests-000002.jsonl.gz
    requests-000003.jsonl       a closed part whose compression has not finished yet
    requests.jsonl              the part being written: always the newest lines

With ``--rotate-records SIZE`` the writer closes ``requests.jsonl`` once it holds SIZE
bytes or more (whole lines only), renames it ``requests-N.jsonl``, starts a new one and
compresses the closed part to ``requests-N.jsonl.gz`` (via a temporary name, so a ``.gz``
that exists is complete; the plain part is removed after). Without it nothing changes:
one ``requests.jsonl``. The file is line-buffered, so a run killed at any moment loses no
whole line.

:func:`read_records` (and :func:`read_lines`) read the set in order: the parts by number
(a part's ``.gz`` when it exists, else its plain file), then ``requests.jsonl``. Only the
very last line of the set may be torn (a run killed mid-write): it is skipped when it has
no final newline and is not valid JSON; any other bad line is an error naming file and
line.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from harness.core.errors import ConfigError
from harness.core.measure import CallRecord

__all__ = [
    "CURRENT",
    "RotatingRequestsWriter",
    "gzip_part",
    "parse_size",
    "read_lines",
    "read_records",
    "record_files",
]

CURRENT = "requests.jsonl"
GZIP_LEVEL = 6  # gzip's own default of 9 costs ~3x the time for ~5% smaller JSON lines
_PART = re.compile(r"^requests-(\d{6,})\.jsonl(\.gz)?$")
_TEMP = re.compile(r"^\.requests-\d{6,}\.jsonl\.gz\.tmp$")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30}

Job = Callable[[], None]


def parse_size(text: str, option: str = "--rotate-records") -> int:
    """``"100MB"`` -> 100_000_000 bytes (K/M/G: powers of 1000, KiB/MiB/GiB: powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) * _UNITS[unit] < 1:
        raise ConfigError(f"{option} {text!r}: give a size in bytes such as 100MB, 512KiB or 1G")
    return int(float(match.group(1)) * _UNITS[unit])


def gzip_part(path: Path) -> Path:
    """Compress the closed part ``path`` to ``path.gz`` (atomically) and remove ``path``."""
    final = path.with_name(path.name + ".gz")
    temporary = path.with_name(f".{final.name}.tmp")
    try:
        with open(path, "rb") as source, gzip.open(temporary, "wb", compresslevel=GZIP_LEVEL) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    path.unlink()
    return final


def _inline(job: Job) -> None:
    job()


class RotatingRequestsWriter:
    """Appends one JSON line per finished call to ``DIR/requests.jsonl``, rotating past ``rotate_bytes``.

    ``run_in`` runs each compression: inline by default; a gevent runtime passes its hub's
    ``threadpool.spawn`` so the event loop never waits for gzip (zlib releases the GIL).
    """

    def __init__(
        self,
        directory: Path,
        rotate_bytes: int | None = None,
        *,
        compress: bool = True,
        run_in: Callable[[Job], object] = _inline,
    ) -> None:
        if rotate_bytes is not None and rotate_bytes < 1:
            raise ValueError("rotate_bytes must be positive")
        self.directory = directory
        self.path = directory / CURRENT
        self.rotate_bytes = rotate_bytes
        self.compress = compress
        self.run_in = run_in
        self.lines = 0
        self.parts = 0  # closed parts so far
        self._bytes = 0
        self._file: IO[str] | None = None

    def open(self) -> None:
        """Start a fresh set for a new run: the last run's parts are removed."""
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.iterdir():
            if _PART.match(stale.name) or _TEMP.match(stale.name):
                stale.unlink(missing_ok=True)
        self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self.lines = self.parts = self._bytes = 0

    def write(self, record: CallRecord) -> None:
        self.write_line(json.dumps(record.to_dict(), separators=(",", ":")))

    def write_line(self, text: str) -> None:
        """One line (``text`` without its newline)."""
        if self._file is None:
            self.open()
        assert self._file is not None
        line = text + "\n"
        self._file.write(line)
        self.lines += 1
        self._bytes += len(line) if line.isascii() else len(line.encode("utf-8"))
        if self.rotate_bytes is not None and self._bytes >= self.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self.parts += 1
        part = self.directory / f"requests-{self.parts:06d}.jsonl"
        os.replace(self.path, part)
        self._file = open(self.path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._bytes = 0
        if self.compress:
            self.run_in(lambda: _compress_quietly(part))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _compress_quietly(part: Path) -> None:
    with contextlib.suppress(OSError):  # the plain part stays and is read as is: a full disk must not stop the run
        gzip_part(part)


def record_files(directory: Path) -> list[Path]:
    """The files of the set in reading order; empty if there is none."""
    parts: dict[int, Path] = {}
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _PART.match(path.name)
        if match is None:
            continue
        number = int(match.group(1))
        if match.group(2) or number not in parts:  # a finished .gz wins over its plain original
            parts[number] = path
    files = [parts[n] for n in sorted(parts)]
    current = directory / CURRENT
    return [*files, current] if current.is_file() else files


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_lines(directory: Path) -> Iterator[dict[str, Any]]:
    """Every line of the set in order, parsed (see the module docstring for a torn last line)."""
    files = record_files(directory)
    if not files:
        raise FileNotFoundError(f"{directory / CURRENT} not found: run with --report-dir {directory}")
    for index, path in enumerate(files):
        last_file = index == len(files) - 1
        try:
            with _open_text(path) as f:
                previous: tuple[int, str] | None = None
                for number, line in enumerate(f, 1):
                    if previous is not None:
                        parsed = _parse(path, *previous, may_be_torn=False)
                        if parsed is not None:
                            yield parsed
                    previous = (number, line)
                if previous is not None:  # the file's last line: the set's may be torn
                    parsed = _parse(path, *previous, may_be_torn=last_file and not previous[1].endswith("\n"))
                    if parsed is not None:
                        yield parsed
        except (EOFError, gzip.BadGzipFile) as exc:
            raise ConfigError(f"{path}: damaged gzip part ({exc}); remove it to read the rest") from exc


def _parse(path: Path, number: int, line: str, *, may_be_torn: bool) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        if may_be_torn:
            return None
        raise ConfigError(f"{path}:{number}: not a JSON line ({exc.msg}); the file is damaged") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:{number}: not a JSON object; is this a requests.jsonl of the harness?")
    return data


def read_records(directory: Path) -> Iterator[CallRecord]:
    """Every call of the set in order, as :class:`~harness.measure.CallRecord`."""
    for data in read_lines(directory):
        yield CallRecord.from_dict(data)
