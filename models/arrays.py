"""Array helpers shared by the model families: histories as matrices, decayed popularity, ranked top-k.

Every function here is deterministic: the same input gives the same output bytes, whatever the machine's
thread count (no BLAS call whose summation order depends on threads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from models.base import Interactions

SECONDS_PER_DAY = 86_400.0

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]


def decayed_popularity(data: Interactions, half_life_days: float) -> FloatArray:
    """Summed event weights per item, each halved for every ``half_life_days`` before the newest event."""
    if len(data) == 0:
        return np.zeros(data.n_items, dtype=np.float32)
    age_days = (int(data.ts.max()) - data.ts).astype(np.float64) / SECONDS_PER_DAY
    decay = np.exp(-math.log(2.0) * age_days / half_life_days)
    return np.bincount(data.item_idx, weights=data.weight * decay, minlength=data.n_items).astype(np.float32)


def flatten_histories(histories: Sequence[IntArray], n_items: int) -> tuple[IntArray, IntArray]:
    """``(row, item)`` pairs of every entry of ``histories`` (in order), checked against ``[0, n_items)``."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    if not len(rows):
        return rows, np.empty(0, dtype=np.int64)
    items = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in histories])
    if int(items.min()) < 0 or int(items.max()) >= n_items:
        raise ValueError(f"item index out of range [0, {n_items}) in histories")
    return rows, items


def history_matrix(
    histories: Sequence[IntArray], n_items: int, decay: float = 1.0, max_length: int | None = None
) -> Any:
    """Histories as a ``(len(histories), n_items)`` scipy CSR matrix of summed recency weights.

    The last item of a history weighs 1, the one before it ``decay``, then ``decay**2`` and so on; only the
    last ``max_length`` entries count (all when None). Repeated items add up. ``decay=1`` gives counts.
    """
    import scipy.sparse as sp

    if max_length is not None:
        histories = [h[-max_length:] if max_length > 0 else h[:0] for h in histories]
    rows, items = flatten_histories(histories, n_items)
    lengths = np.bincount(rows, minlength=len(histories))
    ends = np.cumsum(lengths)
    distance = ends[rows] - 1 - np.arange(len(rows))  # 0 for the latest item of each history
    values = np.power(np.float32(decay), distance.astype(np.float32)) if decay != 1.0 else np.ones(len(rows))
    matrix = sp.csr_matrix(
        (values.astype(np.float32), (rows, items)), shape=(len(histories), n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    return matrix


def top_k(scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Row-wise top-``k`` of a score matrix, best first; ``-inf`` (and NaN) entries become id -1.

    The order is total, so the result never depends on how a selection algorithm visits ties: by score
    descending, then by item index ascending. That holds for *which* items make the cut too: among items
    tied at the ``k``-th score, the lowest indices are kept.
    """
    n_rows, n_items = scores.shape
    kk = min(k, n_items)
    if n_rows == 0 or kk == 0:
        return np.full((n_rows, k), -1, dtype=np.int64), np.full((n_rows, k), -np.inf, dtype=np.float32)
    if np.isnan(scores).any():
        scores = np.where(np.isnan(scores), np.float32(-np.inf), scores)
    if kk < n_items:
        cols = _best_columns(scores, kk)
        threshold = np.take_along_axis(scores, cols, axis=1).min(axis=1)  # the kk-th largest score
        at_least = np.count_nonzero(scores >= threshold[:, None], axis=1)
        crowded = np.flatnonzero(at_least > kk)  # rows with ties at the cut: keep the lowest indices
        if len(crowded):
            cols[crowded] = _lowest_ties(scores[crowded], threshold[crowded], kk)
    else:
        cols = np.broadcast_to(np.arange(n_items, dtype=np.int64), (n_rows, n_items))
    part_scores = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -part_scores), axis=1)
    ids = np.take_along_axis(cols, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    finite = np.isfinite(top)
    ids[~finite] = -1
    top[~finite] = -np.inf
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return ids, top


def top_k_finite(values: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """:func:`top_k` of one row, finite entries only: ``(ids, scores)`` of at most ``k`` items, best first,
    the same order and the same items (ties at the cut: lowest indices).

    One shopper per request: the usual case (finite scores, no tie at the cut) skips the 2-D bookkeeping
    of :func:`top_k` (a third of its cost); anything else goes through :func:`top_k` itself.
    """
    kk = min(k, len(values))
    if kk <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    cols: IntArray | None = None
    if kk < len(values):
        if len(values) // PREFILTER_BLOCK < 4 * kk:  # short row: NaN sorts last, so never above a number
            cols = np.argpartition(np.negative(values), kk - 1)[:kk]
        elif not np.isnan(values).any():  # the block maxima would carry a NaN
            cols = _best_columns(values[None, :], kk)[0]
    if cols is not None:
        part = values[cols]
        cut = part.min()
        if np.isfinite(cut) and np.count_nonzero(values >= cut) == kk:  # no tie at the cut, no NaN in
            order = np.lexsort((cols, -part))
            return cols[order].astype(np.int64, copy=False), part[order].astype(np.float32, copy=False)
    ids, top = top_k(values[None, :], kk)
    finite = ids[0] >= 0  # top_k marks -inf / NaN entries with -1
    return ids[0][finite], top[0][finite]


#: Items per block when :func:`_best_columns` pre-filters a row by block maxima.
PREFILTER_BLOCK = 64


def _best_columns(scores: FloatArray, kk: int) -> IntArray:
    """``(n_rows, kk)`` columns holding each row's ``kk`` largest scores (in no order; ties unresolved).

    Equivalent to ``np.argpartition(-scores, kk - 1, axis=1)[:, :kk]`` but several times faster on long
    rows: the ``kk``-th largest of the rows' block maxima (blocks of :data:`PREFILTER_BLOCK` items) is a
    lower bound of the ``kk``-th largest score, since those ``kk`` maxima are ``kk`` distinct entries at or
    above it; so the exact selection only has to look at the few entries at or above that bound.
    """
    n_rows, n_items = scores.shape
    blocks = n_items // PREFILTER_BLOCK
    if blocks < 4 * kk:  # short rows: the pre-filter would not pay
        return np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    maxima = scores[:, : blocks * PREFILTER_BLOCK].reshape(n_rows, blocks, PREFILTER_BLOCK).max(axis=2)
    bound = np.partition(maxima, blocks - kk, axis=1)[:, blocks - kk]  # (n_rows,) the kk-th largest maximum
    cols = np.empty((n_rows, kk), dtype=np.int64)
    for row in range(n_rows):
        candidates = np.flatnonzero(scores[row] >= bound[row])  # at least kk of them
        if len(candidates) > kk:
            candidates = candidates[np.argpartition(-scores[row, candidates], kk - 1)[:kk]]
        cols[row] = candidates
    return cols


def _lowest_ties(scores: FloatArray, threshold: NDArray[np.float32], kk: int) -> IntArray:
    """Column indices of the ``kk`` best items per row when several items tie at ``threshold``."""
    above = scores > threshold[:, None]
    tied = scores == threshold[:, None]
    room = kk - np.count_nonzero(above, axis=1)
    keep = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room[:, None]))
    return np.nonzero(keep)[1].reshape(len(scores), kk).astype(np.int64)
