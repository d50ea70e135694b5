"""Exact sums and exact order statistics of float64 samples read in chunks, in bounded memory.

The spilled sample columns (:mod:`harness.core.spill`) can hold more samples than fit in
memory (a day of 50-token calls is ~500 million inter-token gaps, 4 GB), so they are never
sorted whole. Instead:

* the **sum** is kept exactly as an integer multiple of 2**-1074 (the smallest float64
  step): each float is an integer mantissa times a power of two, so the mantissas are
  summed per exponent with ``np.bincount`` (exact: 26-bit halves summed in float64 stay
  below 2**53) and shifted into one Python int. Dividing that int by 2**1074 rounds once,
  correctly, so it equals ``math.fsum`` of the same values to the last bit;
* **order statistics** (the k-th smallest value) come from a radix selection on the
  float's sortable bit pattern: one pass counts the top 16 bits of every value, which
  names the bucket holding rank k; each further pass counts the next 16 bits inside that
  bucket only, until the bucket is small enough to collect and sort
  (``collect_limit`` values) or is one single value. At most four passes over the data,
  typically two or three; memory is a few histograms of 65,536 counts and the chunk.

Values must be finite (a latency always is); a NaN or infinity raises ``ValueError``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["COLLECT_LIMIT", "IN_MEMORY_LIMIT", "Reduced", "exact_sum", "reduce_chunks", "reduce_pools", "scaled_sum"]

Floats = npt.NDArray[np.float64]
Chunks = Callable[[], Iterator[Floats]]
"""A factory of the data's chunks: called once per pass, each call reads the data anew."""

SCALE_BITS = 1074
"""A sum is kept as an int ``s`` meaning ``s * 2**-1074``: every float64 is a whole multiple of that."""

IN_MEMORY_LIMIT = 1 << 19
"""Up to this many values (4 MB) are simply loaded and sorted."""

COLLECT_LIMIT = 1 << 16
"""A radix bucket of at most this many values (512 KB) is collected and sorted, not refined."""

POOLS_PER_PASS = 8
"""Pools reduced in one set of passes (each holds up to ~4 MB of histograms while it runs)."""

_DIGIT = 16
_BINS = 1 << _DIGIT
_SIGN = np.uint64(1 << 63)
_MANTISSA = np.uint64((1 << 52) - 1)
_IMPLICIT = np.uint64(1 << 52)
_LOW = np.uint64((1 << 26) - 1)
_MAX_SUM_CHUNK = 1 << 26  # 27-bit halves summed this many times stay exact in float64


def scaled_sum(values: Floats) -> int:
    """The exact sum of ``values`` as an int, in units of 2**-1074."""
    if values.size == 0:
        return 0
    if not np.isfinite(values).all():
        raise ValueError("samples must be finite numbers")
    total = 0
    for start in range(0, values.size, _MAX_SUM_CHUNK):
        total += _scaled_sum(values[start : start + _MAX_SUM_CHUNK])
    return total


def _scaled_sum(values: Floats) -> int:
    bits = np.ascontiguousarray(values).view(np.uint64)
    exponent = (bits >> np.uint64(52)) & np.uint64(0x7FF)
    normal = exponent != 0
    mantissa = (bits & _MANTISSA) | np.where(normal, _IMPLICIT, np.uint64(0))
    # A subnormal's exponent field is 0 but it scales like field 1 (value = mantissa * 2**-1074).
    slot = np.maximum(exponent, np.uint64(1)).astype(np.intp)
    sign = np.where(bits >> np.uint64(63) != 0, -1.0, 1.0)
    high = np.bincount(slot, weights=(mantissa >> np.uint64(26)).astype(np.float64) * sign, minlength=2048)
    low = np.bincount(slot, weights=(mantissa & _LOW).astype(np.float64) * sign, minlength=2048)
    total = 0
    for e in np.flatnonzero((high != 0) | (low != 0)).tolist():
        total += ((int(high[e]) << 26) + int(low[e])) << (e - 1)
    return total


def exact_sum(scaled: int) -> float:
    """The float nearest a :func:`scaled_sum` (what ``math.fsum`` returns for the same values)."""
    return scaled / (1 << SCALE_BITS)


def _keys(values: Floats) -> npt.NDArray[np.uint64]:
    """Unsigned keys that sort like the floats: flip every bit of a negative, the sign bit of the rest."""
    bits = np.ascontiguousarray(values).view(np.uint64)
    return np.where(bits & _SIGN != 0, ~bits, bits | _SIGN)


def _value(key: int) -> float:
    bits = key ^ (1 << 63) if key >> 63 else ~key & ((1 << 64) - 1)
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


@dataclass(frozen=True)
class _Target:
    """Where a wanted rank is known to lie: in the values whose key's top ``bits`` equal ``prefix``."""

    bits: int
    prefix: int
    rank: int  # its rank among those values
    count: int  # how many values that is

    def narrowed(self, histogram: npt.NDArray[np.int64]) -> _Target:
        """The next 16 bits, from the histogram of those bits over this target's values."""
        cumulative = np.cumsum(histogram)
        digit = int(np.searchsorted(cumulative, self.rank, side="right"))
        below = int(cumulative[digit - 1]) if digit else 0
        return _Target(self.bits + _DIGIT, (self.prefix << _DIGIT) | digit, self.rank - below, int(histogram[digit]))


@dataclass(frozen=True)
class Reduced:
    """What one reduction of the data found."""

    scaled_sum: int  # the exact sum, in units of 2**-1074 (see exact_sum)
    values: dict[int, float]  # the value at each wanted rank


def reduce_chunks(
    chunks: Chunks,
    count: int,
    ranks: Iterable[int],
    *,
    in_memory_limit: int = IN_MEMORY_LIMIT,
    collect_limit: int = COLLECT_LIMIT,
) -> Reduced:
    """The exact sum of ``count`` values read from ``chunks()``, and the values at ``ranks`` (0-based, ascending)."""
    wanted = _checked(ranks, count)
    if count > in_memory_limit:
        return reduce_pools(
            [chunks], [([0], count, wanted)], in_memory_limit=in_memory_limit, collect_limit=collect_limit
        )[0]
    everything = np.concatenate([*chunks(), np.empty(0)])
    everything.sort()
    return Reduced(scaled_sum(everything), {r: float(everything[r]) for r in wanted})


def reduce_pools(
    sources: Sequence[Chunks],
    pools: Sequence[tuple[Sequence[int], int, Iterable[int]]],
    *,
    in_memory_limit: int = IN_MEMORY_LIMIT,
    collect_limit: int = COLLECT_LIMIT,
    pools_per_pass: int = POOLS_PER_PASS,
) -> list[Reduced]:
    """:func:`reduce_chunks` of several pools of ``sources`` at once; a pool is (source indices, count, ranks).

    Pools that share sources (each scenario's column, and the overall pool of all of them)
    share the reading: each chunk is read and keyed once per pass for every pool it is in.
    """
    results: dict[int, Reduced] = {}
    large = []
    for i, (members, count, ranks) in enumerate(pools):
        if count <= in_memory_limit:
            results[i] = reduce_chunks(_chained(sources, members), count, ranks, in_memory_limit=in_memory_limit)
        else:
            large.append(i)
    # Each pool in a pass holds a few 512 KB histograms: passes of a few pools bound the memory.
    for first in range(0, len(large), pools_per_pass):
        batch = {
            i: _Pool(pools[i][1], _checked(pools[i][2], pools[i][1])) for i in large[first : first + pools_per_pass]
        }
        readers: dict[int, list[_Pool]] = {}
        for i, pool in batch.items():
            for j in pools[i][0]:
                readers.setdefault(j, []).append(pool)
        for j, reading in readers.items():  # pass 0: sums and the top digit's histogram
            for chunk in sources[j]():
                chunk_sum = scaled_sum(chunk)
                top = np.bincount((_keys(chunk) >> np.uint64(64 - _DIGIT)).astype(np.intp), minlength=_BINS)
                for pool in reading:
                    pool.total += chunk_sum
                    pool.histogram += top
        for pool in batch.values():
            pool.start()
        while True:
            active = {id(pool) for pool in batch.values() if pool.plan(collect_limit)}
            if not active:
                break
            for j, reading in readers.items():
                feeding = [pool for pool in reading if id(pool) in active]
                if feeding:
                    for chunk in sources[j]():
                        keys = _keys(chunk)
                        for pool in feeding:
                            pool.feed(keys)
            for pool in batch.values():
                if id(pool) in active:
                    pool.settle()
        results.update({i: Reduced(pool.total, pool.found) for i, pool in batch.items()})
    return [results[i] for i in range(len(pools))]


def _checked(ranks: Iterable[int], count: int) -> list[int]:
    wanted = sorted(set(ranks))
    if wanted and (wanted[0] < 0 or wanted[-1] >= count):
        raise ValueError(f"ranks {wanted[0]}..{wanted[-1]} outside 0..{count - 1}")
    return wanted


def _chained(sources: Sequence[Chunks], members: Sequence[int]) -> Chunks:
    def chunks() -> Iterator[Floats]:
        for j in members:
            yield from sources[j]()

    return chunks


class _Pool:
    """The radix selection of one pool's ranks, fed chunk by chunk, one pass at a time."""

    def __init__(self, count: int, wanted: list[int]) -> None:
        self.count = count
        self.wanted = wanted
        self.total = 0
        self.histogram = np.zeros(_BINS, np.int64)
        self.targets: dict[int, _Target] = {}
        self.found: dict[int, float] = {}
        self.collect: dict[tuple[int, int], list[npt.NDArray[np.uint64]]] = {}
        self.refine: dict[tuple[int, int], npt.NDArray[np.int64]] = {}

    def start(self) -> None:
        self.targets = {r: _Target(0, 0, r, self.count).narrowed(self.histogram) for r in self.wanted}
        del self.histogram

    def plan(self, collect_limit: int) -> bool:
        """Decide this pass: collect the small buckets, count the next digit of the large; False if done."""
        for r, t in list(self.targets.items()):
            if t.bits == 64:  # one key, so one value (repeated t.count times)
                self.found[r] = _value(t.prefix)
                del self.targets[r]
        for t in self.targets.values():
            if t.count <= collect_limit:
                self.collect.setdefault((t.bits, t.prefix), [])
            else:
                self.refine.setdefault((t.bits, t.prefix), np.zeros(_BINS, np.int64))
        return bool(self.targets)

    def feed(self, keys: npt.NDArray[np.uint64]) -> None:
        for (bits, prefix), parts in self.collect.items():
            inside = keys[(keys >> np.uint64(64 - bits)) == np.uint64(prefix)]
            if inside.size:
                parts.append(inside)
        for (bits, prefix), histogram in self.refine.items():
            inside = keys[(keys >> np.uint64(64 - bits)) == np.uint64(prefix)]
            if inside.size:
                digits = (inside >> np.uint64(64 - bits - _DIGIT)) & np.uint64(_BINS - 1)
                histogram += np.bincount(digits.astype(np.intp), minlength=_BINS)

    def settle(self) -> None:
        ordered = {w: np.sort(np.concatenate([*parts, np.empty(0, np.uint64)])) for w, parts in self.collect.items()}
        narrowed: dict[int, _Target] = {}
        for r, t in self.targets.items():
            where = (t.bits, t.prefix)
            if where in ordered:
                self.found[r] = _value(int(ordered[where][t.rank]))
            else:
                narrowed[r] = t.narrowed(self.refine[where])
        self.targets = narrowed
        self.collect.clear()
        self.refine.clear()
