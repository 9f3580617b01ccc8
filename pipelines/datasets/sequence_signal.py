"""Is there an order-aware signal in a dataset? Two history-only next-item baselines on leave-one-out targets.

* ``markov``: first-order Markov chain. Transition counts ``a -> b`` between consecutive interactions (runs
  of events on one item, :func:`pipelines.features.split.interaction_runs`) of every user's train + valid
  history; a user's list is the most frequent successors of their last history item, then the most popular
  items.
* ``window_markov``: the same with transitions ``a -> b`` between interactions up to :data:`WINDOW` apart,
  a user's list summing the successor counts of their last :data:`WINDOW` items (the ``j``-th latest
  weighted ``1/j``). It sees past the last item, e.g. which camera a shopper's bag and charger go with.
* ``category_popular``: the most popular items of the last history item's category, then the most popular
  items overall. It knows what the user looks at now but not the order of things.
* ``popular``: the most popular items (context).

Each ranks ``k`` items for every leave-one-out test user (history = train + valid under ``loo``); the target
is the item of the user's last interaction. ``markov`` beating ``category_popular`` says the next item
depends on the previous one beyond its category: what a sequence model can learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipelines.features import FeatureSet
from pipelines.features.split import interaction_runs

IntArray = NDArray[np.int64]
BASELINES = ("window_markov", "markov", "category_popular", "popular")
WINDOW = 5


@dataclass(frozen=True)
class BaselineScore:
    """Hit rate and NDCG at ``k`` of one baseline over ``n_users`` leave-one-out test users."""

    name: str
    k: int
    n_users: int
    hr: float
    ndcg: float

    def line(self) -> str:
        at = f"@{self.k}"
        return f"{self.name:>16}: HR{at}={self.hr:.4f} NDCG{at}={self.ndcg:.4f} ({self.n_users:,} users)"


def _interaction_sequences(fs: FeatureSet) -> tuple[IntArray, IntArray, IntArray]:
    """Each user's train + valid interactions (runs collapsed) under ``loo``: ``(user, item, offsets)``."""
    ev = fs.events[fs.split_mask("train_valid", "loo")]
    user = ev["user_idx"].to_numpy(dtype=np.int64)
    order = np.argsort(user, kind="stable")  # events are in time order: stays chronological per user
    user, item = user[order], ev["item_idx"].to_numpy(dtype=np.int64)[order]
    run = interaction_runs(user, item)
    first = np.flatnonzero(np.diff(run, prepend=-1) != 0)
    user, item = user[first], item[first]
    offsets = np.zeros(fs.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(user, minlength=fs.n_users), out=offsets[1:])
    return user, item, offsets


def _top(candidates: IntArray, fill: IntArray, k: int) -> IntArray:
    """``candidates`` (best first) then ``fill`` items not already listed, cut at ``k``."""
    head = candidates[:k]
    if len(head) >= k:
        return head
    pool = fill[: k + len(head)]
    rest = pool[~np.isin(pool, head)]
    return np.concatenate((head, rest))[:k]


def next_item_baselines(fs: FeatureSet, k: int = 10) -> dict[str, BaselineScore]:
    """HR@k and NDCG@k of :data:`BASELINES` on the leave-one-out test targets of ``fs``."""
    user, item, offsets = _interaction_sequences(fs)
    n_items = fs.n_items
    popularity = np.bincount(item, minlength=n_items)
    by_popularity = np.lexsort((np.arange(n_items), -popularity)).astype(np.int64)

    # transitions a -> b between consecutive interactions of one user, most frequent first per a
    same_user = user[1:] == user[:-1]
    pairs = item[:-1][same_user] * n_items + item[1:][same_user]
    pair, count = np.unique(pairs, return_counts=True)
    src, dst = pair // n_items, pair % n_items
    order = np.lexsort((dst, -popularity[dst], -count, src))
    src, dst = src[order], dst[order]
    row = np.searchsorted(src, np.arange(n_items + 1))

    # transitions up to WINDOW interactions apart
    far_src, far_dst = [], []
    for gap in range(1, WINDOW + 1):
        same = user[gap:] == user[:-gap]
        far_src.append(item[:-gap][same])
        far_dst.append(item[gap:][same])
    far_pair, far_count = np.unique(
        np.concatenate(far_src) * n_items + np.concatenate(far_dst), return_counts=True
    )
    far_row = np.searchsorted(far_pair // n_items, np.arange(n_items + 1))
    far_dst_sorted = far_pair % n_items
    tie = popularity * 1e-9  # ties: the more popular item first

    category = fs.item_categories.astype(np.int64)
    cat_order = by_popularity[np.argsort(category[by_popularity], kind="stable")]
    cat_row = np.searchsorted(category[cat_order], np.arange(int(category.max(initial=-1)) + 2))

    test = fs.events[fs.split_mask("test", "loo")]
    target = test.groupby("user_idx", sort=True)["item_idx"].first()
    hits = {name: np.zeros(len(target)) for name in BASELINES}
    gains = {name: np.zeros(len(target)) for name in BASELINES}
    for i, (u, want) in enumerate(zip(target.index.to_numpy(), target.to_numpy(), strict=True)):
        if offsets[u + 1] == offsets[u]:
            continue  # no history (cannot happen under loo: 3+ interactions)
        last = int(item[offsets[u + 1] - 1])
        cat = int(category[last])
        in_category = cat_order[cat_row[cat] : cat_row[cat + 1]] if cat >= 0 else by_popularity[:0]
        recent = item[max(offsets[u], offsets[u + 1] - WINDOW) : offsets[u + 1]][::-1]
        parts = [(far_row[a], far_row[a + 1], 1.0 / (j + 1)) for j, a in enumerate(recent.tolist())]
        dst_all = np.concatenate([far_dst_sorted[lo:hi] for lo, hi, _ in parts])
        weights = np.concatenate([far_count[lo:hi] * w for lo, hi, w in parts])
        scores = np.bincount(dst_all, weights=weights, minlength=n_items)
        scored = np.flatnonzero(scores > 0)
        window_list = scored[np.lexsort((scored, -(scores[scored] + tie[scored])))]
        lists = {
            "window_markov": _top(window_list, by_popularity, k),
            "markov": _top(dst[row[last] : row[last + 1]], by_popularity, k),
            "category_popular": _top(in_category, by_popularity, k),
            "popular": by_popularity[:k],
        }
        for name, ranked in lists.items():
            at = np.flatnonzero(ranked == want)
            if len(at):
                hits[name][i] = 1.0
                gains[name][i] = 1.0 / math.log2(int(at[0]) + 2)
    return {
        name: BaselineScore(name, k, len(target), math.fsum(hits[name]) / max(len(target), 1),
                            math.fsum(gains[name]) / max(len(target), 1))
        for name in BASELINES
    }  # fmt: skip
