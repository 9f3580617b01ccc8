"""All-time popularity: weighted counts, the same list for everybody."""

from __future__ import annotations

import numpy as np

from models.popularity import PopularityRecommender
from tests.models.conftest import T0, make_interactions, random_interactions


def test_scores_are_weighted_counts_for_every_user() -> None:
    data = random_interactions(2000, n_users=50, n_items=40, seed=3)
    model = PopularityRecommender().fit(data)
    expected = np.bincount(data.item_idx, weights=data.weight, minlength=40)
    scores = model.score([np.array([1, 2]), np.array([], dtype=np.int64), np.array([39])])
    for row in scores:
        np.testing.assert_allclose(row, expected, rtol=1e-6)


def test_event_weights_beat_raw_counts() -> None:
    # Item 0: five views (weight 1 each); item 1: one purchase (weight 8).
    rows = [(u, 0, 1.0, T0 + u, u) for u in range(5)] + [(5, 1, 8.0, T0 + 5, 5)]
    model = PopularityRecommender().fit(make_interactions(rows))
    ids, scores = model.recommend([np.array([], dtype=np.int64), np.array([0])], k=2)
    assert ids.tolist() == [[1, 0], [1, 0]]
    assert scores[1, 0] > scores[1, 1]
