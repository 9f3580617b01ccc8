"""Item-kNN: the similarity formula, the neighbour cap, recency weighting, the repeat term and memory on large
catalogues."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

import models.itemknn as itemknn
from models import load_model
from models.base import CONFIG_FILE, Interactions
from models.itemknn import ItemKNNConfig, ItemKNNRecommender
from tests.models.conftest import (
    DAY,
    GROUP_A,
    GROUP_B,
    T0,
    block_rows,
    make_interactions,
    random_interactions,
)


def knn(**overrides: Any) -> ItemKNNRecommender:
    """An item-kNN with ``overrides``; without them, the plain item-kNN (no repeat term)."""
    return ItemKNNRecommender(ItemKNNConfig(**{"repeat_weight": 0.0, "repeat_decay": 1.0, **overrides}))


def dense_similarity(
    data: Interactions, session_weight: float, user_weight: float, shrinkage: float
) -> np.ndarray:
    """Brute-force reference: dense co-occurrence and shrunk cosine, zero diagonal."""
    sessions = np.zeros((int(data.session_idx.max()) + 1, data.n_items))
    sessions[data.session_idx, data.item_idx] = 1.0
    users = np.zeros((data.n_users, data.n_items))
    users[data.user_idx, data.item_idx] = 1.0
    co = session_weight * sessions.T @ sessions + user_weight * users.T @ users
    norms = np.diag(co).copy()
    sim = co / (np.sqrt(np.outer(norms, norms)) + shrinkage)
    np.fill_diagonal(sim, 0.0)
    return sim


def test_similarity_matches_the_dense_formula() -> None:
    data = random_interactions(3000, n_users=60, n_items=30, seed=5)
    model = knn(neighbours=30, shrinkage=2.5, session_weight=1.0, user_weight=0.3).fit(data)
    expected = dense_similarity(data, 1.0, 0.3, 2.5)
    np.testing.assert_allclose(model.similarity.toarray(), expected, rtol=1e-5, atol=1e-7)


def test_neighbour_cap_keeps_the_most_similar_items() -> None:
    data = random_interactions(3000, n_users=60, n_items=30, seed=6)
    model = knn(neighbours=4, shrinkage=1.0).fit(data)
    full = dense_similarity(data, 1.0, 0.2, 1.0)
    counts = np.diff(model.similarity.indptr)
    assert counts.max() == 4
    for item in range(30):
        kept = np.sort(model.similarity[item].data)[::-1]
        best = np.sort(full[item][full[item] > 0])[::-1][:4]
        np.testing.assert_allclose(kept, best, rtol=1e-5)


def test_blockwise_fit_equals_single_block(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random_interactions(4000, n_users=80, n_items=60, seed=7)
    whole = knn(neighbours=10).fit(data).similarity
    monkeypatch.setattr(itemknn, "BLOCK_PAIRS", 200)
    assert len(itemknn._blocks(np.full(60, 50.0), 200)) > 10
    blocked = knn(neighbours=10).fit(data).similarity
    assert (whole != blocked).nnz == 0


def test_session_and_user_co_occurrence_are_weighted_separately() -> None:
    # Items 0 and 1 share sessions; items 0 and 2 only share a user (different sessions).
    rows = []
    for user in range(6):
        rows += [(user, 0, 1.0, T0 + user * DAY, 2 * user), (user, 1, 1.0, T0 + user * DAY + 60, 2 * user)]
        rows += [(user, 2, 1.0, T0 + user * DAY + 7200, 2 * user + 1)]
    data = make_interactions(rows)
    sessions_only = knn(shrinkage=0.0, session_weight=1.0, user_weight=0.0).fit(data)
    assert sessions_only.similarity[0, 1] == pytest.approx(1.0)
    assert sessions_only.similarity[0, 2] == 0.0
    users_only = knn(shrinkage=0.0, session_weight=0.0, user_weight=1.0).fit(data)
    assert users_only.similarity[0, 2] == pytest.approx(1.0)


def two_pairs() -> Interactions:
    """Items (0, 2) and (1, 3) always co-occur, equally often; nothing else does."""
    rows = []
    for s in range(8):
        a, x = (0, 2) if s % 2 == 0 else (1, 3)
        rows += [(s, a, 1.0, T0 + s * DAY, s), (s, x, 1.0, T0 + s * DAY + 60, s)]
    return make_interactions(rows)


def test_later_history_items_weigh_more() -> None:
    model = knn(shrinkage=0.0).fit(two_pairs())
    ids, _ = model.recommend([np.array([0, 1]), np.array([1, 0])], k=2, exclude=[np.array([0, 1])] * 2)
    assert ids.tolist() == [[3, 2], [2, 3]]
    scores = model.score([np.array([0, 1])])[0]
    assert scores[2] == pytest.approx(0.8 * scores[3])


def test_only_the_last_history_items_count() -> None:
    model = knn(shrinkage=0.0, history_length=1).fit(two_pairs())
    scores = model.score([np.array([0, 1])])[0]
    assert scores[3] > 0
    assert scores[2] == 0.0


def test_repeat_term_by_hand() -> None:
    # sim(0, 2) = sim(1, 3) = 1 (shrinkage 0), every other pair 0. History [0, 2, 0], d = 2, 1, 0:
    #   w(0) = 0.8**0 + 0.8**2 = 1.64, w(2) = 0.8          -> kNN: score(2) = 1.64, score(0) = 0.8
    #   r(0) = 0.5**0 + 0.5**2 = 1.25, r(2) = 0.5          -> + 0.4 * r: score(0) = 1.3, score(2) = 1.84
    history = np.array([0, 2, 0])
    plain = knn(shrinkage=0.0).fit(two_pairs())
    np.testing.assert_allclose(plain.score([history])[0], [0.8, 0.0, 1.64, 0.0], rtol=1e-6)
    model = knn(shrinkage=0.0, repeat_weight=0.4, repeat_decay=0.5).fit(two_pairs())
    np.testing.assert_allclose(model.score([history])[0], [1.3, 0.0, 1.84, 0.0], rtol=1e-6)
    # The repeat term counts the whole history; kNN only the last history_length entries:
    #   w(0) = 1 -> kNN: score(2) = 1;  + 0.4 * r: score(0) = 0.5, score(2) = 1.2
    short = knn(shrinkage=0.0, history_length=1, repeat_weight=0.4, repeat_decay=0.5)
    np.testing.assert_allclose(short.fit(two_pairs()).score([history])[0], [0.5, 0.0, 1.2, 0.0], rtol=1e-6)
    # Plain counts (repeat_decay 1): an item with no neighbour in the history still comes back.
    counts = knn(shrinkage=0.0, repeat_weight=2.0).fit(two_pairs())
    np.testing.assert_allclose(counts.score([np.array([1, 0, 1])])[0], [2.0, 4.0, 0.8, 1.64], rtol=1e-6)
    ids, _ = counts.recommend([np.array([1, 0, 1])], k=4)
    assert ids.tolist() == [[1, 0, 3, 2]]


def test_repeat_term_keeps_the_known_answers_and_exclusions() -> None:
    """With the params.yaml repeat settings a group's history still ranks its group; seen items can go."""
    repeat = ItemKNNConfig().model_dump(include={"repeat_weight", "repeat_decay"})
    assert repeat["repeat_weight"] > 0
    model = knn(shrinkage=1.0, **repeat).fit(make_interactions(block_rows(), n_items=12))
    ids, _ = model.recommend([np.array([0, 1]), np.array([5, 6])], k=5)
    assert set(ids[0]) == set(GROUP_A)
    assert set(ids[1]) == set(GROUP_B)
    ids, _ = model.recommend([np.array([0, 1])], k=3, exclude=[np.array([0, 1])])
    assert set(ids[0]) == {2, 3, 4}


def test_models_saved_without_the_repeat_term_load_as_plain_knn(tmp_path: Path) -> None:
    data = random_interactions(2000, n_users=40, n_items=25, seed=8)
    plain = knn(neighbours=10).fit(data)
    plain.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    for key in ("repeat_weight", "repeat_decay"):
        del config["hyperparameters"][key]  # as written before the repeat term existed
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    loaded = load_model(tmp_path)
    assert isinstance(loaded, ItemKNNRecommender)
    assert (loaded.config.repeat_weight, loaded.config.repeat_decay) == (0.0, 1.0)
    histories = data.histories()
    np.testing.assert_array_equal(loaded.score(histories), plain.score(histories))


def test_heavy_users_are_capped_to_their_recent_items() -> None:
    rows = [(0, item, 1.0, T0 + item, item) for item in range(10)] + [(1, 3, 1.0, T0 + 50, 99)]
    data = make_interactions(rows)
    matrix = itemknn.user_item_matrix(data, max_user_items=4)
    assert sorted(matrix[0].indices.tolist()) == [6, 7, 8, 9]
    assert matrix[1].indices.tolist() == [3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"neighbours": 0},
        {"shrinkage": -1.0},
        {"session_weight": 0.0, "user_weight": 0.0},
        {"recency_decay": 0.0},
        {"recency_decay": 1.5},
        {"history_length": 0},
        {"max_user_items": 0},
        {"repeat_weight": -0.1},
        {"repeat_decay": 0.0},
        {"repeat_decay": 1.5},
    ],
)
def test_refuses_invalid_hyperparameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ItemKNNConfig(**kwargs)  # type: ignore[arg-type]


def test_memory_sane_on_twenty_thousand_items() -> None:
    """20k items: a dense item x item matrix would take 1.6 GB (float32); the fit must stay far below."""
    n_items = 20_000
    data = random_interactions(150_000, n_users=5_000, n_items=n_items, seed=11, skew=0.8)
    tracemalloc.start()
    try:
        model = knn(neighbours=50).fit(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 400 * 2**20, f"fit peaked at {peak / 2**20:.0f} MiB"
    assert np.diff(model.similarity.indptr).max() <= 50
    assert model.similarity.nnz <= 50 * n_items
    scores = model.score(data.histories()[:200])
    assert scores.shape == (200, n_items)


def test_ties_at_the_cut_keep_the_lower_item_index() -> None:
    # Item 0 shares exactly one session with each of items 1-5, which are otherwise alike.
    rows = [(0, 0, 1.0, T0, 0)]
    for s, item in enumerate(range(1, 6), start=1):
        rows += [(s, 0, 1.0, T0 + s, s), (s, item, 1.0, T0 + s + 1, s)]
    model = knn(neighbours=2, shrinkage=0.0, user_weight=0.0).fit(make_interactions(rows))
    assert model.similarity[0].indices.tolist() == [1, 2]
