"""Time-decayed popularity: the half-life, relative to the newest training event."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import RecopsError
from models import create_model
from models.popularity import PopularityRecommender
from models.recent_popularity import RecentPopularityConfig, RecentPopularityRecommender
from tests.models.conftest import DAY, T0, make_interactions, old_hit_and_new_hit, random_interactions

EMPTY = np.array([], dtype=np.int64)


def decayed(half_life_days: float) -> RecentPopularityRecommender:
    return RecentPopularityRecommender(RecentPopularityConfig(half_life_days=half_life_days))


def test_one_half_life_halves_the_weight() -> None:
    rows = [(0, 0, 1.0, T0, 0), (1, 1, 1.0, T0 + 7 * DAY, 1), (2, 2, 2.0, T0 + 14 * DAY, 2)]
    model = decayed(7.0).fit(make_interactions(rows))
    np.testing.assert_allclose(model.recent_popularity, [0.25, 0.5, 2.0], rtol=1e-6)


def test_prefers_the_recently_popular_item() -> None:
    data = make_interactions(old_hit_and_new_hit())
    assert PopularityRecommender().fit(data).recommend([EMPTY], k=1)[0][0, 0] == 0
    recent = decayed(7.0).fit(data)
    ids, _ = recent.recommend([np.array([0]), EMPTY], k=2)
    assert ids.tolist() == [[1, 0], [1, 0]], "warm and cold users both get the recent hit first"


def test_long_half_life_approaches_all_time_popularity() -> None:
    data = make_interactions(old_hit_and_new_hit())
    model = decayed(1e6).fit(data)
    assert model.recommend([EMPTY], k=2)[0].tolist() == [[0, 1]]
    np.testing.assert_allclose(model.recent_popularity, model.item_popularity, rtol=1e-4)


def test_decay_is_relative_to_the_newest_training_event() -> None:
    data = random_interactions(1000, n_users=30, n_items=20, seed=1)
    shifted = make_interactions(
        [
            (int(u), int(i), float(w), int(t) + 365 * DAY, int(s))
            for u, i, w, t, s in zip(
                data.user_idx, data.item_idx, data.weight, data.ts, data.session_idx, strict=True
            )
        ],
        n_users=30,
        n_items=20,
    )
    a = decayed(3.0).fit(data).recent_popularity
    b = decayed(3.0).fit(shifted).recent_popularity
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("half_life", [0.0, -1.0])
def test_refuses_non_positive_half_life(half_life: float) -> None:
    with pytest.raises(RecopsError, match="half_life_days"):
        create_model("recent_popularity", {"half_life_days": half_life})
