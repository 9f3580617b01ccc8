"""Turn one shopper's state into a ranked, diversified list: score, filter, pick candidates, MMR, explain.

Pure numpy over a :class:`service.serving.Serving`; nothing here does I/O. Steps for one request:

1. scores of every item from the model family's ``score`` (cold shoppers: the precomputed trending list);
2. restricted to the requested category, if any;
3. bought, seen (optional), excluded and out-of-stock items set to ``-inf``;
4. the best ``max(4k, 50)`` candidates by score (ties: item index ascending), then
5. MMR re-ranking by category: each next item maximises ``lambda * relevance - (1 - lambda) * share of
   already chosen items in its category`` (relevance min-max scaled over the candidates);
6. a short explanation per item: "because you viewed X" (the latest history item of the same category, else
   the latest one) or "popular in <category>".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models.arrays import top_k_finite
from service.serving import FloatArray, IntArray, Serving

MIN_CANDIDATES = 50


@dataclass(frozen=True)
class RankRequest:
    """What one ranking needs, already in item indices of the serving version."""

    history: IntArray  # chronological, oldest first (stored history + this session's items)
    exclude: IntArray  # never recommend (bought, seen, asked to exclude)
    k: int
    category: str | None = None
    stock_overrides: Mapping[str, bool] | None = None  # item id -> in stock, from events


class Ranked(NamedTuple):
    """One recommended item: its index, score and explanation (a tuple: ten are built per request)."""

    item: int  # the item index in the serving version
    score: float
    reason: str


@dataclass(frozen=True)
class Ranking:
    """The ranked list and whether the cold-start (trending) list was used."""

    items: tuple[Ranked, ...]
    cold: bool


def _candidate_pool(
    serving: Serving, req: RankRequest, scores: FloatArray
) -> tuple[IntArray | None, FloatArray]:
    """Item indices (None: every item, in order) and their scores, blocked items set to ``-inf``,
    restricted to the requested category if any. ``scores`` is modified in place."""
    pool: IntArray | None = None
    values = scores
    if req.category is not None:
        pool = serving.category_items.get(req.category)
        if pool is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        values = scores[pool]
    for blocked in _blocked(serving, req):
        if not len(blocked):
            continue
        if pool is None:
            values[blocked] = -np.inf
        else:
            values[np.isin(pool, blocked)] = -np.inf
    return pool, values


def _blocked(serving: Serving, req: RankRequest) -> tuple[IntArray, IntArray]:
    """Indices that must not be recommended: out of stock (with the overrides events carried), excluded."""
    overrides = req.stock_overrides or {}
    if not overrides:
        return serving.out_of_stock, req.exclude
    in_stock = serving.in_stock.copy()
    for item, available in overrides.items():
        index = serving.item_index.get(item)
        if index is not None:
            in_stock[index] = available
    return np.flatnonzero(~in_stock), req.exclude


def _top_candidates(indices: IntArray | None, values: FloatArray, n: int) -> tuple[IntArray, FloatArray]:
    """The ``n`` best finite entries, best first (ties: lower position first, i.e. lower item index:
    category pools are ascending), by :func:`models.arrays.top_k_finite` (block-maxima pre-filter on long
    rows, far cheaper than a full ``argpartition`` over 100k scores)."""
    ids, top = top_k_finite(values, n)
    return (ids if indices is None else indices[ids]), top


def mmr(categories: Sequence[Hashable], relevance: FloatArray, k: int, lam: float) -> list[int]:
    """Positions (into the candidate lists) of the ``k`` items chosen by maximal marginal relevance.

    Each step picks the candidate with the highest ``lam * relevance - (1 - lam) * share of the chosen items
    in its category`` (relevance min-max scaled; ties: the lower position). The penalty is the same for all
    of a category, so only each category's best remaining candidate can win, and among categories with
    nothing chosen yet (no penalty) only the one whose best candidate is best: a step compares at most
    one candidate per category already chosen from, plus one, instead of every candidate.
    """
    n = len(relevance)
    if n == 0:
        return []
    if lam >= 1.0 or n <= 1:
        return list(range(min(k, n)))
    spread = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / spread if spread > 0 else np.ones(n, dtype=np.float32)
    lam_rel = lam * rel  # float32, as a vectorised gain computes it
    weighted: list[float] = lam_rel.tolist()
    order: list[int] = np.lexsort((np.arange(n), -lam_rel)).tolist()  # best first, ties: lower position
    by_category: dict[Hashable, list[int]] = {}
    for pos in order:
        by_category.setdefault(categories[pos], []).append(pos)
    # per category its positions, best first; categories in order of their best (dicts keep insertion order)
    queues = list(by_category.values())
    heads = [0] * len(queues)
    next_fresh = 0  # queues[next_fresh:] have nothing chosen yet (queues are taken in their own order)
    touched: list[int] = []  # queues with something chosen and candidates left
    penalty = 1.0 - lam
    picked: list[int] = []
    for step in range(min(k, n)):
        best_gain, best_pos, best_queue = -math.inf, n, -1
        if next_fresh < len(queues):
            best_queue = next_fresh
            best_pos = queues[next_fresh][0]
            best_gain = weighted[best_pos]
        for q in touched:
            pos = queues[q][heads[q]]
            gain = weighted[pos] - penalty * (heads[q] / step)
            if gain > best_gain or (gain == best_gain and pos < best_pos):
                best_gain, best_pos, best_queue = gain, pos, q
        picked.append(best_pos)
        if best_queue == next_fresh:
            next_fresh += 1
            touched.append(best_queue)
        heads[best_queue] += 1
        if heads[best_queue] == len(queues[best_queue]):
            touched.remove(best_queue)
    return picked


def _explainer(serving: Serving, history: IntArray) -> Callable[[int, bool], str]:
    """``explain(index, cold)``: "because you viewed X" (X: the latest of the last 50 history items in the
    item's category, else the latest history item) or "popular in <category>". One pass over the history
    per request, not one per recommended item."""
    latest: dict[str, int] = {}
    for past in history[::-1][:50].tolist():
        latest.setdefault(serving.categories[past], past)
    last = int(history[-1]) if len(history) else -1
    categories, item_ids = serving.categories, serving.item_ids

    def explain(index: int, cold: bool) -> str:
        category = categories[index]
        if cold or last < 0:
            return f"popular in {category}" if category else "popular right now"
        return f"because you viewed {item_ids[latest.get(category, last)]}"

    return explain


def rank(serving: Serving, req: RankRequest, mmr_lambda: float, scores: FloatArray | None = None) -> Ranking:
    """Rank for one shopper (see the module docstring). Shoppers whose personal list comes out short (all
    candidates excluded) are topped up from the trending list. ``scores``: the shopper's scores if already
    computed (``Serving.score`` of the history; this writes to them), else they are computed here."""
    cold = len(req.history) == 0
    if scores is None or cold:
        scores = serving.score(req.history)
    chosen = _choose(serving, req, scores, mmr_lambda)
    explain = _explainer(serving, req.history)
    items = [Ranked(i, s, explain(i, cold)) for i, s in chosen]
    if len(items) < req.k and not cold:
        taken = np.asarray([r.item for r in items], dtype=np.int64)
        more = RankRequest(
            history=req.history,
            exclude=np.union1d(req.exclude, taken).astype(np.int64),
            k=req.k - len(items),
            category=req.category,
            stock_overrides=req.stock_overrides,
        )
        for i, s in _choose(serving, more, serving.cold_scores.copy(), mmr_lambda):
            items.append(Ranked(i, s, explain(i, True)))
    return Ranking(items=tuple(items), cold=cold)


def _choose(serving: Serving, req: RankRequest, scores: FloatArray, lam: float) -> list[tuple[int, float]]:
    indices, values = _candidate_pool(serving, req, scores)
    cand_idx, cand_val = _top_candidates(indices, values, max(4 * req.k, MIN_CANDIDATES))
    picks = mmr(serving.category_codes[cand_idx].tolist(), cand_val, req.k, lam)
    return [(int(cand_idx[p]), float(cand_val[p])) for p in picks]
