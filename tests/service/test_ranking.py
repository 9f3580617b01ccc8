"""Ranking: exclusions, stock, category filter, MMR diversity, explanations, cold start."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.package import ModelPackage
from service.ranking import Ranking, RankRequest, mmr, rank
from tests.service.conftest import serving_of


def _req(history: list[int], k: int = 10, exclude: list[int] | None = None, **kw: object) -> RankRequest:
    return RankRequest(
        history=np.asarray(history, dtype=np.int64),
        exclude=np.asarray(sorted(exclude or []), dtype=np.int64),
        k=k,
        **kw,  # type: ignore[arg-type]
    )


def test_personal_ranking_follows_history_and_explains(package: ModelPackage, tmp_path: Path) -> None:
    serving = serving_of(package, 1, tmp_path)
    history = [0, 5, 10]  # category cat0
    ranking = rank(serving, _req(history, k=5, exclude=history), mmr_lambda=1.0)
    assert not ranking.cold and len(ranking.items) == 5
    assert all(serving.categories[r.item] == "cat0" for r in ranking.items)
    assert not {r.item for r in ranking.items} & set(history)
    assert all(r.reason.startswith("because you viewed i000") for r in ranking.items)
    assert [r.score for r in ranking.items] == sorted((r.score for r in ranking.items), reverse=True)


def test_mmr_diversifies_categories(package: ModelPackage, tmp_path: Path) -> None:
    serving = serving_of(package, 1, tmp_path)
    pure = rank(serving, _req([0, 5, 10], k=8, exclude=[0, 5, 10]), mmr_lambda=1.0)
    diverse = rank(serving, _req([0, 5, 10], k=8, exclude=[0, 5, 10]), mmr_lambda=0.3)

    def cats(ranking: Ranking) -> set[str]:
        return {serving.categories[i.item] for i in ranking.items}

    assert len(cats(diverse)) > len(cats(pure))
    assert mmr(["a", "a", "b"], np.array([3.0, 2.0, 1.0], dtype=np.float32), 2, 0.3) == [0, 2]
    assert mmr(["a", "a", "b"], np.array([3.0, 2.0, 1.0], dtype=np.float32), 2, 1.0) == [0, 1]


def test_cold_start_is_trending_in_the_category_and_respects_stock(
    package: ModelPackage, tmp_path: Path
) -> None:
    serving = serving_of(package, 1, tmp_path)
    ranking = rank(serving, _req([], k=4, category="cat2"), mmr_lambda=0.5)
    assert ranking.cold and len(ranking.items) == 4
    assert all(serving.categories[r.item] == "cat2" and r.reason == "popular in cat2" for r in ranking.items)
    top = ranking.items[0]
    gone = rank(
        serving, _req([], k=4, category="cat2", stock_overrides={serving.item_ids[top.item]: False}), 0.5
    )
    assert top.item not in {r.item for r in gone.items}
    assert rank(serving, _req([], k=3, category="no-such-category"), 0.5).items == ()


def test_short_personal_lists_are_topped_up_and_never_repeat(package: ModelPackage, tmp_path: Path) -> None:
    serving = serving_of(package, 1, tmp_path)
    everything_but_three = [i for i in range(serving.n_items) if i not in (1, 2, 3)]
    ranking = rank(serving, _req([0], k=10, exclude=everything_but_three), mmr_lambda=0.8)
    assert sorted(r.item for r in ranking.items) == [1, 2, 3]
    k100 = rank(serving, _req([0, 5], k=100), mmr_lambda=0.8)
    assert len(k100.items) == serving.n_items and len({r.item for r in k100.items}) == serving.n_items


def _mmr_vectorised(categories: list[int], relevance: np.ndarray, k: int, lam: float) -> list[int]:
    """The earlier numpy MMR (every candidate's gain at every step): the reference for :func:`mmr`."""
    n = len(relevance)
    if n == 0:
        return []
    if lam >= 1.0 or n <= 1:
        return list(range(min(k, n)))
    spread = float(relevance.max() - relevance.min())
    rel = (relevance - relevance.min()) / spread if spread > 0 else np.ones(n, dtype=np.float32)
    cat = np.asarray(categories, dtype=np.int64)
    chosen_per_cat = np.zeros(int(cat.max()) + 1, dtype=np.float64)
    available = np.ones(n, dtype=bool)
    picked: list[int] = []
    for step in range(min(k, n)):
        redundancy = chosen_per_cat[cat] / step if step else np.zeros(n)
        gain = lam * rel - (1.0 - lam) * redundancy
        gain[~available] = -np.inf
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        chosen_per_cat[cat[best]] += 1
    return picked


def test_mmr_picks_what_the_vectorised_version_picks() -> None:
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 120))
        values = rng.normal(size=n).astype(np.float32)
        if trial % 3 == 0:  # sorted best first, as ranking passes them, with ties
            values = np.sort(np.round(values, 1))[::-1].copy()
        cats = rng.integers(0, int(rng.integers(1, 12)), size=n).tolist()
        k, lam = int(rng.integers(1, 40)), float(rng.choice([0.0, 0.3, 0.5, 0.8, 0.99]))
        assert mmr(cats, values, k, lam) == _mmr_vectorised(cats, values, k, lam), (trial, n, k, lam)
