"""Bootstrap distributions of percentiles, vectorised with numpy: resampling calls or blocks.

* **Calls**: each sample's values resampled with replacement. A percentile interpolates
  between two order statistics, and for sorted values their resampled positions have
  known distributions: the k-th smallest of n uniform draws is Beta(k, n - k + 1), and the
  next one lies a Beta(1, n - k - 1) fraction of the way from it to 1. Drawing those is
  exactly the bootstrap that resamples every value, in O(resamples) instead of
  O(resamples x values).
* **Blocks**: whole blocks resampled, so drift between blocks counts as noise. An id
  shared by several samples (a schedule's round number) is drawn for all of them at once:
  a resample takes every sample's values of the drawn rounds, so drift that hits a round
  hits both arms' resamples alike, as the interleaved schedule intends.

Both take the percentile with linear interpolation between closest ranks, the definition
of :func:`harness.summary.percentile` and numpy's default.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["block_percentiles", "call_percentiles"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def call_percentiles(values: Floats, qs: Sequence[float], resamples: int, rng: np.random.Generator) -> Floats:
    """(len(qs), resamples): each percentile q (0-100) of each resample of ``values`` over calls."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return np.stack([_call_percentile(ordered, q, resamples, rng) for q in qs])


def block_percentiles(
    samples: Sequence[tuple[Floats, Sequence[Hashable]]],
    qs: Sequence[float],
    resamples: int,
    rng: np.random.Generator,
) -> tuple[list[Floats], int]:
    """Each sample's (len(qs), resamples) percentiles over block resamples, and how many ids were drawn from.

    ``samples`` are (values, one block id per value). Ids are drawn with replacement from
    the union of all samples' ids; a resample in which a sample has no value gives NaN.
    """
    labels: dict[Hashable, int] = {}
    codes = []
    for values, ids in samples:
        if len(ids) != len(values):
            raise ValueError(f"{len(ids)} block ids for {len(values)} values: give one id per value")
        codes.append(np.fromiter((labels.setdefault(k, len(labels)) for k in ids), np.int64, len(values)))
    m = len(labels)
    # (resamples, ids): how often each resample drew each id; m draws with replacement per row.
    draws = rng.integers(0, m, size=(resamples, m)) + np.arange(resamples)[:, None] * m
    counts = np.bincount(draws.ravel(), minlength=resamples * m).reshape(resamples, m)
    out = [
        _weighted_percentiles(np.asarray(v, dtype=np.float64), c, counts, qs)
        for (v, _), c in zip(samples, codes, strict=True)
    ]
    return out, m


def _call_percentile(ordered: Floats, q: float, resamples: int, rng: np.random.Generator) -> Floats:
    """The q-th percentile of each of ``resamples`` resamples of ``ordered`` (sorted), exactly.

    A resample's k-th smallest value is ordered[floor(n * U)] where U is the k-th smallest
    of n uniforms; so draw U ~ Beta(k, n - k + 1), and the next order statistic above it.
    """
    n = len(ordered)
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    frac = pos - lo
    u = rng.beta(lo + 1, n - lo, size=resamples)
    low = ordered[np.minimum((u * n).astype(np.int64), n - 1)]
    if frac == 0 or lo + 1 >= n:
        return low
    # The (lo+2)-th smallest: the least of the n - lo - 1 uniforms above u.
    u_next = u + (1.0 - u) * rng.beta(1, n - lo - 1, size=resamples)
    high = ordered[np.minimum((u_next * n).astype(np.int64), n - 1)]
    return low + (high - low) * frac


def _weighted_percentiles(values: Floats, codes: Ints, counts: Ints, qs: Sequence[float]) -> Floats:
    """Percentiles of each resample, where each value appears counts[r, its block] times; NaN if none.

    A resample's rank of each sorted value is a cumulative sum of weights, resamples x calls
    numbers. Only two ranks per percentile are wanted, so the sums are taken on a coarse
    grid of every g-th sorted position (one matrix product over the blocks), which finds
    the grid cell holding each wanted rank, and then within that cell only: O(resamples x
    (blocks + g) x n / g) instead of O(resamples x n).
    """
    order = np.argsort(values, kind="stable")
    ordered, codes = values[order], codes[order]
    n, m, resamples = len(values), counts.shape[1], len(counts)
    g = max(1, math.isqrt(n))
    cells = -(-n // g)
    # before[l, k]: how many of block l's calls sit before sorted position k * g.
    per_cell = np.bincount(codes * cells + np.arange(n) // g, minlength=m * cells).reshape(m, cells)
    before = np.zeros((m, cells + 1))
    np.cumsum(per_cell, axis=1, out=before[:, 1:])
    at_grid = np.rint(counts.astype(np.float64) @ before).astype(np.int64)  # (resamples, cells + 1)
    total = at_grid[:, -1]
    # The block of each sorted position, cell by cell; positions past n get block m, which weighs nothing.
    padded = np.full(cells * g, m, dtype=np.int64)
    padded[:n] = codes
    cell_codes = padded.reshape(cells, g)
    weights = np.concatenate([counts, np.zeros((resamples, 1), dtype=counts.dtype)], axis=1)
    rows = np.arange(resamples)

    def value_at(rank: Ints) -> Floats:
        cell = (at_grid[:, :-1] <= rank[:, None]).sum(axis=1) - 1
        window = weights[rows[:, None], cell_codes[cell]]  # (resamples, g): the weights inside each row's cell
        inside = at_grid[rows, cell][:, None] + np.cumsum(window, axis=1)
        position = cell * g + (inside <= rank[:, None]).sum(axis=1)
        return ordered[np.minimum(position, n - 1)]

    out = np.full((len(qs), resamples), np.nan)
    filled = total > 0
    for i, q in enumerate(qs):
        pos = np.maximum(total - 1, 0) * q / 100.0
        lo = np.floor(pos).astype(np.int64)
        low, high = value_at(lo), value_at(np.minimum(lo + 1, np.maximum(total - 1, 0)))
        out[i] = np.where(filled, low + (high - low) * (pos - lo), np.nan)
    return out
