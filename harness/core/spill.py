"""Sample columns that keep a bounded tail in memory and spill the rest to disk, reduced exactly.

A :class:`SpillColumn` holds float64 samples: at most ``buffer_values`` of them in an
``array('d')``; when that fills, it is appended to the column's file (raw native-endian
float64, 8 bytes a sample, nothing else) and emptied. No file handle stays open between
spills, so a process holds none however many columns it has. Each spill also folds the
buffer into the column's running count, sum, min and max, so the running figures (all
but the percentiles; the sum in float arithmetic) never need the file.

The reduction (:func:`figures_of`, :func:`figures_of_pools`) gives count, mean, min, max
and the percentiles, all exact: the mean equals ``math.fsum(values) / count`` and each
percentile equals :func:`harness.summary.percentile` on the sorted values (linear
interpolation between closest ranks), by :func:`harness.core.exact.reduce_pools`, which
reads the files in chunks a few times instead of loading them. It reads a
:class:`ColumnSnapshot`, so it can run in another thread while the columns grow.

A :class:`SpillGroup` keys columns by (scope, metric), as ``SampleStore`` keys its
buckets (scenario by latency metric), one file per column, in a given directory or a
temporary one that is removed at :meth:`SpillGroup.close` (unless ``keep``).

Memory: ``buffer_values * 8`` bytes per column (64 KB by default), plus ~20 MB while a
reduction runs (chunks, histograms; at most ~40 MB with eight or more scenarios). Disk: 8
bytes per sample. Tens of scenarios by five metrics (a few hundred columns and files) are
the intended scale; thousands of columns would hold ``columns * 64 KB`` of buffers.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import secrets
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.exact import COLLECT_LIMIT, IN_MEMORY_LIMIT, POOLS_PER_PASS, Floats, exact_sum, reduce_pools
from harness.core.figures import Figures, percentile_ranks, with_percentiles
from harness.core.summary import PERCENTILES

__all__ = [
    "BUFFER_VALUES",
    "Accumulator",
    "ColumnSnapshot",
    "SpillColumn",
    "SpillGroup",
    "figures_of",
    "figures_of_pools",
]

BUFFER_VALUES = 8192
"""Samples a column keeps in memory before it appends them to its file (64 KB)."""

CHUNK_VALUES = 1 << 18
"""Samples read per chunk while reducing (2 MB)."""

MANIFEST = "columns.json"


@dataclass(slots=True)
class Accumulator:
    """A run-wide count, sum, min and max that never grows, for figures with no percentiles."""

    count: int = 0
    total: float = 0
    min: float | None = None
    max: float | None = None

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Accumulator) -> None:
        self.count += other.count
        self.total += other.total
        for v in (other.min, other.max):
            if v is not None:
                self.min = v if self.min is None else min(self.min, v)
                self.max = v if self.max is None else max(self.max, v)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


class SpillColumn:
    """One column of float64 samples; see the module docstring."""

    __slots__ = ("_max", "_min", "_total", "buffer", "limit", "path", "spilled")

    def __init__(self, path: Path, buffer_values: int = BUFFER_VALUES) -> None:
        if buffer_values < 1:
            raise ValueError("buffer_values must be at least 1")
        self.path = path
        self.limit = buffer_values
        self.buffer: array[float] = array("d")
        self.spilled = 0  # samples in the file
        self._total = 0.0  # their running sum (the exact one is computed when the file is read)
        self._min = math.inf
        self._max = -math.inf

    def append(self, value: float) -> None:
        buffer = self.buffer
        buffer.append(value)
        if len(buffer) >= self.limit:
            self.spill()

    def extend(self, values: Iterable[float]) -> None:
        buffer = self.buffer
        buffer.extend(values)
        if len(buffer) >= self.limit:
            self.spill()

    def __len__(self) -> int:
        return self.spilled + len(self.buffer)

    def spill(self) -> None:
        """Append the buffer to the file and empty it."""
        if not self.buffer:
            return
        values = np.frombuffer(self.buffer, np.float64)
        total = float(values.sum())
        # A finite sum means finite samples (unless it overflowed): the full check only then.
        if not math.isfinite(total) and not np.isfinite(values).all():
            del values
            raise ValueError("samples must be finite numbers")  # refused before the file holds it
        low, high = float(values.min()), float(values.max())
        del values  # release the export so the array can be resized
        # os-level open/write/close: a Python file object costs more than the write itself here.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the first spill of a group: its directory is made only now
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = memoryview(self.buffer).cast("B")
            while data:
                data = data[os.write(fd, data) :]
            del data
        finally:
            os.close(fd)
        self.spilled += len(self.buffer)
        self._total += total
        self._min = min(self._min, low)
        self._max = max(self._max, high)
        del self.buffer[:]

    def snapshot(self) -> ColumnSnapshot:
        """The column as it is now, frozen: readable in another thread while this one goes on.

        The file is append-only, so its first ``spilled`` samples never change; the buffer is copied.
        """
        tail = np.array(self.buffer, np.float64)
        if not tail.size:
            return ColumnSnapshot(self.path, self.spilled, tail, self._total, self._min, self._max)
        return ColumnSnapshot(
            self.path,
            self.spilled,
            tail,
            self._total + float(tail.sum()),
            min(self._min, float(tail.min())),
            max(self._max, float(tail.max())),
        )


@dataclass(frozen=True)
class ColumnSnapshot:
    """A column frozen at one moment: its file's first ``spilled`` samples, then ``tail``.

    ``total`` is the running (float) sum, ``min``/``max`` exact; ``inf``/``-inf`` if empty.
    """

    path: Path
    spilled: int
    tail: Floats
    total: float
    min: float
    max: float

    def __len__(self) -> int:
        return self.spilled + int(self.tail.size)

    def chunks(self, chunk_values: int = CHUNK_VALUES) -> Iterator[Floats]:
        """Every sample in order of arrival, a fresh array per chunk: the file's, then the tail's."""
        if self.spilled:
            with open(self.path, "rb") as f:
                left = self.spilled
                while left:
                    chunk = np.fromfile(f, np.float64, count=min(chunk_values, left))
                    if not chunk.size:
                        raise OSError(f"{self.path} is shorter than the {self.spilled} samples written to it")
                    left -= chunk.size
                    yield chunk
        if self.tail.size:
            yield self.tail


def figures_of(
    columns: Sequence[SpillColumn | ColumnSnapshot],
    qs: Sequence[float] = PERCENTILES,
    *,
    in_memory_limit: int = IN_MEMORY_LIMIT,
    collect_limit: int = COLLECT_LIMIT,
) -> Figures:
    """The exact figures of every sample of ``columns`` together (limits: see :mod:`harness.core.exact`).

    With no ``qs`` (no percentiles) no file is read: count, min and max are exact and the
    mean is the running one (float sums, within a few ulps of the exact mean).
    """
    return figures_of_pools([columns], qs, in_memory_limit=in_memory_limit, collect_limit=collect_limit)[0]


def figures_of_pools(
    pools: Sequence[Sequence[SpillColumn | ColumnSnapshot]],
    qs: Sequence[float] = PERCENTILES,
    *,
    in_memory_limit: int = IN_MEMORY_LIMIT,
    collect_limit: int = COLLECT_LIMIT,
    pools_per_pass: int = POOLS_PER_PASS,
) -> list[Figures]:
    """:func:`figures_of` of each pool; pools that share columns (scenarios and overall) share the reading."""
    frozen: dict[int, ColumnSnapshot] = {}  # by the identity of what was passed
    for pool in pools:
        for c in pool:
            if id(c) not in frozen:
                frozen[id(c)] = c.snapshot() if isinstance(c, SpillColumn) else c
    order = list(frozen)
    index = {key: i for i, key in enumerate(order)}
    sources = [frozen[key].chunks for key in order]
    results: list[Figures | None] = []
    wanted: list[tuple[int, tuple[list[int], int, set[int]]]] = []
    for pool in pools:
        members = [frozen[id(c)] for c in pool]
        count = sum(len(c) for c in members)
        if not count:
            results.append(Figures(0))
            continue
        low, high = min(c.min for c in members), max(c.max for c in members)
        if not qs:
            results.append(Figures(count, mean=sum(c.total for c in members) / count, min=low, max=high))
            continue
        wanted.append((len(results), ([index[id(c)] for c in pool], count, percentile_ranks(count, qs))))
        results.append(Figures(count, min=low, max=high))
    reduced = reduce_pools(
        sources,
        [spec for _, spec in wanted],
        in_memory_limit=in_memory_limit,
        collect_limit=collect_limit,
        pools_per_pass=pools_per_pass,
    )
    for (at, (_, count, _)), found in zip(wanted, reduced, strict=True):
        partial = results[at]
        assert partial is not None
        results[at] = with_percentiles(partial, exact_sum(found.scaled_sum) / count, found.values, qs)
    return [r for r in results if r is not None]


class SpillGroup:
    """Columns keyed by (scope, metric), one file each under one directory."""

    def __init__(
        self, directory: Path | None = None, *, keep: bool = False, buffer_values: int = BUFFER_VALUES
    ) -> None:
        self.keep = keep
        self.buffer_values = buffer_values
        self._columns: dict[tuple[str, str], SpillColumn] = {}
        self._made_dir = directory is None or not directory.exists()
        if directory is None:
            # Named now, made at the first spill: a run too short to spill leaves no directory
            # behind, even when its process is killed or ends without exit hooks (a fork's).
            directory = Path(tempfile.gettempdir()) / f"harness-samples-{secrets.token_hex(8)}"
        self.directory = directory
        # A group dropped without close() still removes its files (not on SIGKILL: nothing can).
        self._paths: list[Path] = []
        self._finalizer = None if keep else weakref.finalize(self, _cleanup, directory, self._paths, self._made_dir)
        if self._finalizer is not None:
            # Not at weakref's own exit hook, which runs before hooks registered earlier, such as
            # a run's last summary written at exit from these very files: see _remove_at_exit.
            self._finalizer.atexit = False
            _OPEN_GROUPS.add(self)

    def column(self, scope: str, metric: str, buffer_values: int | None = None) -> SpillColumn:
        """The column of ``metric`` in ``scope``, created on first use (with its own buffer size if given)."""
        key = (scope, metric)
        column = self._columns.get(key)
        if column is None:
            path = self.directory / f"{len(self._columns):04d}.{_safe(metric)}.f64"
            path.unlink(missing_ok=True)  # a stale file of an earlier run in the same directory
            column = self._columns[key] = SpillColumn(path, buffer_values or self.buffer_values)
            self._paths.append(path)
        return column

    def columns(self, metric: str, scopes: Iterable[str] | None = None) -> list[SpillColumn]:
        wanted = None if scopes is None else set(scopes)
        return [c for (s, m), c in self._columns.items() if m == metric and (wanted is None or s in wanted)]

    def figures(self, metric: str, scopes: Iterable[str] | None = None) -> Figures:
        """Exact figures of ``metric`` over ``scopes`` together (every scope if None)."""
        return figures_of(self.columns(metric, scopes))

    def flush(self) -> None:
        """Spill every buffer and write ``columns.json`` (what each file holds), e.g. to reduce elsewhere."""
        manifest = []
        self.directory.mkdir(parents=True, exist_ok=True)
        for (scope, metric), column in self._columns.items():
            column.spill()
            manifest.append({"file": column.path.name, "scope": scope, "metric": metric, "count": column.spilled})
        (self.directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

    def close(self) -> None:
        """Keep the files (flushed, with their manifest) if ``keep``, else remove them."""
        if self.keep:
            self.flush()
        elif self._finalizer is not None:
            self._finalizer()
        self._columns.clear()

    def __enter__(self) -> SpillGroup:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


_OPEN_GROUPS: weakref.WeakSet[SpillGroup] = weakref.WeakSet()


def _remove_at_exit() -> None:
    for group in list(_OPEN_GROUPS):
        # detach(), not a call: once weakref's own exit hook has run, calling a finalizer is a no-op.
        detached = group._finalizer.detach() if group._finalizer is not None else None
        if detached is not None:
            _, func, args, kwargs = detached
            func(*args, **kwargs)


# Registered when this module is imported, before the harness registers its own exit hooks
# (which may still read the files to write a summary): atexit runs hooks last-in, first-out.
atexit.register(_remove_at_exit)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:40]


def _cleanup(directory: Path, paths: list[Path], made_dir: bool) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    if made_dir:
        with contextlib.suppress(OSError):  # not empty: someone else's files are there too
            directory.rmdir()
