"""Ranking metrics for full-catalogue top-K lists, list-level catalogue metrics and bootstrap intervals.

Pure numpy. A ranking is an ``(n, K)`` integer matrix of item indices, best first, padded with -1 when a
list is shorter than K. Relevance is binary: each row has a set of relevant items (:class:`Relevance`).

Per-user metrics at cut-off ``k`` (``rel`` = relevant items of the user, ``hit_j`` = 1 when the item at
rank ``j`` (1-based) is relevant; positions past the end of the list or padded count as misses):

* ``ndcg``: ``sum_j hit_j / log2(j + 1)`` divided by the ideal DCG of ``min(|rel|, k)`` hits at the top.
* ``recall``: hits in the top ``k`` divided by ``|rel|`` (the standard definition: the share of the user's
  relevant items that made the top ``k``; below 1 for any list when a user has more than ``k`` relevant
  items).
* ``recall_trunc``: hits in the top ``k`` divided by ``min(|rel|, k)`` (the truncated normalisation of
  Liang et al., WWW'18, so a perfect list scores 1 even when a user has more than ``k`` relevant items).
  With one relevant item, as in leave-last-out, ``recall``, ``recall_trunc`` and ``hr`` are equal.
* ``hr`` (hit rate): 1 when at least one relevant item is in the top ``k``.
* ``mrr``: ``1 / rank`` of the first relevant item in the top ``k``, 0 if none.
* ``map``: average precision, ``sum_j precision@j * hit_j / min(|rel|, k)``.

Users without relevant items are excluded (their metrics are undefined). Names are ``<metric>_at_<k>``.

List-level metrics over all lists' top ``k`` (padding ignored):

* ``coverage``: distinct recommended items / catalogue size.
* ``diversity``: intra-list diversity by category, the share of item pairs in a list whose categories
  differ (items of unknown category differ from every other item), averaged over lists with >= 2 items.
* ``novelty``: mean self-information ``-log2 p_i`` of recommended items, ``p_i = (pop_i + 1) /
  (sum(pop) + n_items)`` (popularity share with add-one smoothing), averaged per list then over lists.
* ``popularity_bias``: mean popularity percentile of recommended items, 0 = least and 1 = most popular
  item (ties share their average rank), averaged per list then over lists. ``arp`` is the plain average
  popularity (average recommendation popularity, Abdollahpouri et al.).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

#: Per-user ranking metrics, in the order they are reported.
RANKING_METRICS: tuple[str, ...] = ("ndcg", "recall", "recall_trunc", "hr", "mrr", "map")
#: List-level metrics, in the order they are reported.
LIST_METRICS: tuple[str, ...] = ("coverage", "diversity", "novelty", "popularity_bias")

_BOOTSTRAP_CHUNK = 2_000_000  # resampled values held in memory at once


def metric_name(metric: str, k: int) -> str:
    """The stable name of a metric at a cut-off, e.g. ``ndcg_at_10``."""
    return f"{metric}_at_{k}"


def parse_metric_name(name: str) -> tuple[str, int]:
    """``"ndcg_at_10"`` -> ``("ndcg", 10)``; raises ValueError for names without ``_at_<k>``."""
    metric, sep, k = name.rpartition("_at_")
    if not sep or not k.isdigit() or not metric:
        raise ValueError(f"not a metric name of the form <metric>_at_<k>: {name!r}")
    return metric, int(k)


# ---------------------------------------------------------------------------------------------- relevance


@dataclass(frozen=True)
class Relevance:
    """Relevant items per row in CSR form: row ``r``'s items are ``items[offsets[r]:offsets[r+1]]``.

    Items within a row are sorted and unique (use the constructors, which ensure it).
    """

    offsets: IntArray
    items: IntArray

    @classmethod
    def from_pairs(cls, rows: ArrayLike, items: ArrayLike, n_rows: int) -> Relevance:
        """Build from parallel ``(row, item)`` arrays (duplicates are merged, order does not matter)."""
        r = np.asarray(rows, dtype=np.int64).reshape(-1)
        i = np.asarray(items, dtype=np.int64).reshape(-1)
        if len(r) != len(i):
            raise ValueError("rows and items must have the same length")
        if len(r) and (r.min() < 0 or r.max() >= n_rows or i.min() < 0):
            raise ValueError("relevance rows must be in [0, n_rows) and items >= 0")
        order = np.lexsort((i, r))
        r, i = r[order], i[order]
        keep = np.ones(len(r), dtype=bool)
        keep[1:] = (r[1:] != r[:-1]) | (i[1:] != i[:-1])
        r, i = r[keep], i[keep]
        offsets = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n_rows), out=offsets[1:])
        return cls(offsets=offsets, items=i)

    @classmethod
    def from_lists(cls, lists: Sequence[ArrayLike] | Iterable[ArrayLike]) -> Relevance:
        """Build from one collection of item indices per row (e.g. ``[[3, 1], [], [7]]``)."""
        arrays = [np.asarray(x, dtype=np.int64).reshape(-1) for x in lists]
        sizes = np.array([len(a) for a in arrays], dtype=np.int64)
        rows = np.repeat(np.arange(len(arrays), dtype=np.int64), sizes)
        items = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)
        return cls.from_pairs(rows, items, len(arrays))

    @property
    def n_rows(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> IntArray:
        """Number of relevant items of each row."""
        return np.diff(self.offsets)

    def row(self, r: int) -> IntArray:
        return self.items[self.offsets[r] : self.offsets[r + 1]]

    def take(self, rows: IntArray) -> Relevance:
        """The relevance of the selected rows, in the given order."""
        sizes = self.sizes[rows]
        starts = np.repeat(self.offsets[rows], sizes)
        within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return Relevance(offsets=offsets, items=self.items[starts + within])


# ---------------------------------------------------------------------------------------------- hits


def check_rankings(top_k: NDArray[np.integer[Any]]) -> IntArray:
    """``top_k`` as an int64 ``(n, K)`` matrix; ValueError on values < -1 or an item repeated in a row."""
    ranks = np.asarray(top_k, dtype=np.int64)
    if ranks.ndim != 2:
        raise ValueError(f"rankings must be a 2-d (users, K) matrix, got shape {ranks.shape}")
    if ranks.size and ranks.min() < -1:
        raise ValueError("rankings hold item indices >= 0 or -1 for padding")
    if ranks.shape[1] > 1:
        srt = np.sort(ranks, axis=1)
        if np.any((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)):
            raise ValueError("a ranking lists the same item twice")
    return ranks


def hit_matrix(top_k: NDArray[np.integer[Any]], relevance: Relevance) -> BoolArray:
    """``(n, K)`` booleans: whether each ranked item is relevant for its row (padding is never a hit)."""
    ranks = check_rankings(top_k)
    n, width = ranks.shape
    if relevance.n_rows != n:
        raise ValueError(f"rankings have {n} rows but relevance has {relevance.n_rows}")
    if not len(relevance.items) or not ranks.size:
        return np.zeros((n, width), dtype=bool)
    span = int(max(ranks.max(), relevance.items.max())) + 2
    rel_rows = np.repeat(np.arange(n, dtype=np.int64), relevance.sizes)
    rel_keys = rel_rows * span + relevance.items  # sorted: rows ascending, items sorted within rows
    keys = np.arange(n, dtype=np.int64)[:, None] * span + ranks
    pos = np.minimum(np.searchsorted(rel_keys, keys), len(rel_keys) - 1)
    hits: BoolArray = (rel_keys[pos] == keys) & (ranks >= 0)
    return hits


def _prefix(hits: BoolArray, k: int) -> NDArray[np.float64]:
    """The first ``k`` columns of ``hits`` as floats, padded with misses when the lists are shorter."""
    if k < 1:
        raise ValueError("k must be >= 1")
    top = hits[:, :k].astype(np.float64)
    if top.shape[1] < k:
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])))
    return top


def _ideal(n_relevant: IntArray, k: int) -> IntArray:
    n = np.minimum(np.asarray(n_relevant, dtype=np.int64), k)
    if np.any(n < 1):
        raise ValueError("every row needs at least one relevant item (exclude the others first)")
    return n


def ndcg(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """NDCG@k per row (binary relevance; ideal DCG over ``min(|rel|, k)`` hits)."""
    top = _prefix(hits, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[_ideal(n_relevant, k) - 1]
    return np.asarray((top @ discounts) / ideal, dtype=np.float64)


def recall(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Recall@k per row (standard): hits in the top ``k`` / ``|rel|``."""
    n = np.asarray(n_relevant, dtype=np.int64)
    _ideal(n, k)  # same check: every row needs a relevant item
    return np.asarray(_prefix(hits, k).sum(axis=1) / n, dtype=np.float64)


def recall_truncated(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """Truncated recall@k per row: hits in the top ``k`` / ``min(|rel|, k)`` (1 for a perfect list)."""
    return np.asarray(_prefix(hits, k).sum(axis=1) / _ideal(n_relevant, k), dtype=np.float64)


def hit_rate(hits: BoolArray, k: int) -> FloatArray:
    """HR@k per row: 1.0 when any of the top ``k`` is relevant."""
    return np.asarray(_prefix(hits, k).max(axis=1, initial=0.0), dtype=np.float64)


def reciprocal_rank(hits: BoolArray, k: int) -> FloatArray:
    """MRR@k per row: 1 / rank of the first relevant item in the top ``k``, else 0."""
    top = _prefix(hits, k)
    first = np.argmax(top, axis=1)
    return np.where(top.max(axis=1, initial=0.0) > 0, 1.0 / (first + 1), 0.0)


def average_precision(hits: BoolArray, n_relevant: IntArray, k: int) -> FloatArray:
    """AP@k per row: ``sum_j precision@j * hit_j / min(|rel|, k)``."""
    top = _prefix(hits, k)
    precision = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return np.asarray((precision * top).sum(axis=1) / _ideal(n_relevant, k), dtype=np.float64)


def evaluated_rows(relevance: Relevance) -> IntArray:
    """Rows that have at least one relevant item (the only ones per-user metrics are defined for)."""
    return np.flatnonzero(relevance.sizes > 0).astype(np.int64)


def per_user_metrics(
    top_k: NDArray[np.integer[Any]], relevance: Relevance, ks: Sequence[int]
) -> dict[str, FloatArray]:
    """Every metric of :data:`RANKING_METRICS` at every ``k`` for each row with a relevant item.

    Returns:
        ``{"ndcg_at_10": values, ...}``; each array has one value per row of :func:`evaluated_rows`, in
        that order. Rows without relevant items are left out.
    """
    rows = evaluated_rows(relevance)
    ranks = check_rankings(top_k)[rows]
    rel = relevance.take(rows)
    hits = hit_matrix(ranks, rel)
    n_rel = rel.sizes
    out: dict[str, FloatArray] = {}
    for k in ks:
        out[metric_name("ndcg", k)] = ndcg(hits, n_rel, k)
        out[metric_name("recall", k)] = recall(hits, n_rel, k)
        out[metric_name("recall_trunc", k)] = recall_truncated(hits, n_rel, k)
        out[metric_name("hr", k)] = hit_rate(hits, k)
        out[metric_name("mrr", k)] = reciprocal_rank(hits, k)
        out[metric_name("map", k)] = average_precision(hits, n_rel, k)
    return out


def exact_mean(values: ArrayLike) -> float:
    """Mean with a correctly rounded sum (:func:`math.fsum`): the same value for the same numbers in any
    order, so reordering users (or a different summation tree) cannot move a reported metric. NaN if empty."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    return math.fsum(flat.tolist()) / len(flat) if len(flat) else float("nan")


def mean_metrics(per_user: dict[str, FloatArray]) -> dict[str, float]:
    """Mean of each per-user array (:func:`exact_mean`; NaN for an empty one)."""
    return {name: exact_mean(values) for name, values in per_user.items()}


# ---------------------------------------------------------------------------------------------- list level


def _top(top_k: NDArray[np.integer[Any]], k: int) -> tuple[IntArray, BoolArray]:
    ranks = check_rankings(top_k)[:, :k]
    return ranks, ranks >= 0


def catalogue_coverage(top_k: NDArray[np.integer[Any]], k: int, n_items: int) -> float:
    """Share of the catalogue that appears in at least one top-``k`` list."""
    ranks, valid = _top(top_k, k)
    return float(len(np.unique(ranks[valid])) / n_items) if n_items else 0.0


def intra_list_diversity_per_list(
    top_k: NDArray[np.integer[Any]], k: int, item_category: NDArray[np.integer[Any]]
) -> FloatArray:
    """Per list: share of item pairs in the top ``k`` with different categories (NaN for < 2 items).

    ``item_category`` gives each item's category code; -1 (unknown) differs from every other item.
    """
    ranks, valid = _top(top_k, k)
    cats = np.asarray(item_category, dtype=np.int64)[np.maximum(ranks, 0)]
    cats = np.where(cats < 0, -2 - ranks, cats)  # unknown category: unique per item
    out = np.full(len(ranks), np.nan)
    width = ranks.shape[1]
    upper = np.triu(np.ones((width, width), dtype=bool), 1)
    step = max(1, 4_000_000 // max(width * width, 1))
    for lo in range(0, len(ranks), step):
        c, v = cats[lo : lo + step], valid[lo : lo + step]
        pairs = v[:, :, None] & v[:, None, :] & upper
        same = ((c[:, :, None] == c[:, None, :]) & pairs).sum(axis=(1, 2))
        total = pairs.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo : lo + step] = np.where(total > 0, 1.0 - same / total, np.nan)
    return out


def intra_list_diversity(
    top_k: NDArray[np.integer[Any]], k: int, item_category: NDArray[np.integer[Any]]
) -> float:
    """Mean of :func:`intra_list_diversity_per_list` over lists with at least two items (NaN if none)."""
    values = intra_list_diversity_per_list(top_k, k, item_category)
    return exact_mean(values[~np.isnan(values)])


def _list_mean(values: FloatArray, valid: BoolArray) -> float:
    counts = valid.sum(axis=1)
    keep = counts > 0
    if not keep.any():
        return float("nan")
    per_list = np.where(valid, values, 0.0).sum(axis=1)[keep] / counts[keep]  # row sums of <= k terms
    return exact_mean(per_list)


def novelty(top_k: NDArray[np.integer[Any]], k: int, item_popularity: NDArray[np.floating[Any]]) -> float:
    """Mean self-information ``-log2((pop_i + 1) / (sum(pop) + n_items))`` of the top ``k`` (per list)."""
    pop = np.asarray(item_popularity, dtype=np.float64)
    info = -np.log2((pop + 1.0) / (math.fsum(pop.tolist()) + len(pop)))
    ranks, valid = _top(top_k, k)
    return _list_mean(info[np.maximum(ranks, 0)], valid)


def popularity_percentile(item_popularity: NDArray[np.floating[Any]]) -> FloatArray:
    """Each item's popularity percentile in [0, 1]: ``(mean rank - 1) / (n_items - 1)``; 0.5 if one item."""
    pop = np.asarray(item_popularity, dtype=np.float64)
    n = len(pop)
    if n < 2:
        return np.full(n, 0.5)
    _, inverse, counts = np.unique(pop, return_inverse=True, return_counts=True)
    first_rank = np.concatenate(([0], np.cumsum(counts)[:-1]))
    average_rank = first_rank[inverse] + (counts[inverse] - 1) / 2.0  # ties share their mean rank
    return np.asarray(average_rank / (n - 1), dtype=np.float64)


def popularity_bias(
    top_k: NDArray[np.integer[Any]], k: int, item_popularity: NDArray[np.floating[Any]]
) -> float:
    """Mean popularity percentile (:func:`popularity_percentile`) of the top ``k`` (per list, then lists)."""
    ranks, valid = _top(top_k, k)
    return _list_mean(popularity_percentile(item_popularity)[np.maximum(ranks, 0)], valid)


def average_recommendation_popularity(
    top_k: NDArray[np.integer[Any]], k: int, item_popularity: NDArray[np.floating[Any]]
) -> float:
    """ARP: mean raw popularity of the top ``k`` (per list, then over lists)."""
    ranks, valid = _top(top_k, k)
    return _list_mean(np.asarray(item_popularity, dtype=np.float64)[np.maximum(ranks, 0)], valid)


def list_metrics(
    top_k: NDArray[np.integer[Any]],
    ks: Sequence[int],
    n_items: int,
    item_category: NDArray[np.integer[Any]],
    item_popularity: NDArray[np.floating[Any]],
) -> dict[str, float]:
    """Every metric of :data:`LIST_METRICS` at every ``k``, named ``<metric>_at_<k>``."""
    out: dict[str, float] = {}
    for k in ks:
        out[metric_name("coverage", k)] = catalogue_coverage(top_k, k, n_items)
        out[metric_name("diversity", k)] = intra_list_diversity(top_k, k, item_category)
        out[metric_name("novelty", k)] = novelty(top_k, k, item_popularity)
        out[metric_name("popularity_bias", k)] = popularity_bias(top_k, k, item_popularity)
    return out


# ---------------------------------------------------------------------------------------------- bootstrap


def _bootstrap_means(values: FloatArray, samples: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.empty(samples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for lo in range(0, samples, chunk):
        hi = min(samples, lo + chunk)
        means[lo:hi] = values[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    return means


def bootstrap_ci(
    per_user_values: ArrayLike, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``per_user_values`` (users resampled with replacement).

    Returns:
        ``(low, high)``; ``(nan, nan)`` when there are no values or ``samples`` is 0.
    """
    values = np.asarray(per_user_values, dtype=np.float64).reshape(-1)
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if samples < 0:
        raise ValueError("samples must be >= 0")
    if not len(values) or samples == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    low, high = np.quantile(_bootstrap_means(values, samples, seed), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap_diff(
    a: ArrayLike, b: ArrayLike, samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same users and its percentile bootstrap interval.

    ``a[i]`` and ``b[i]`` must be the same user's values under two models; users are resampled in pairs,
    so the interval reflects the per-user difference, not two independent samples.

    Returns:
        ``(mean_diff, low, high)``.
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"paired values need the same users: {len(x)} vs {len(y)} values")
    diff = x - y
    mean = float(diff.mean()) if len(diff) else float("nan")
    low, high = bootstrap_ci(diff, samples, confidence, seed)
    return mean, low, high
