"""Time-decayed popularity: recent interactions count more (the strong production baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.base import (
    EpochCallback,
    FloatArray,
    IntArray,
    Interactions,
    ModelLoadError,
    Recommender,
    decayed_popularity,
    flatten_histories,
)


class RecentPopularityRecommender(Recommender):
    """Scores each item by exponentially time-decayed weighted interaction count.

    Args:
        half_life_days: an event this many days older than the newest training event counts half.
    """

    family = "recent_popularity"

    def __init__(self, half_life_days: float = 7.0) -> None:
        super().__init__()
        if not half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
        self.half_life_days = float(half_life_days)
        self.recent_popularity: FloatArray = np.zeros(0, dtype=np.float32)

    def _fit(self, data: Interactions, on_epoch: EpochCallback | None) -> None:
        self.recent_popularity = decayed_popularity(data, self.half_life_days)

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """``recent_popularity`` repeated for each history."""
        self._check_fitted()
        flatten_histories(histories, self.n_items)
        return np.broadcast_to(self.recent_popularity, (len(histories), self.n_items)).copy()

    def cold_scores(self) -> FloatArray:
        """Cold users get the recent (not all-time) popularity list, like everyone else."""
        return self.recent_popularity

    def hyperparameters(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {"recent_popularity": self.recent_popularity}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        values = weights.get("recent_popularity")
        if values is None or values.shape != (self.n_items,):
            raise ModelLoadError("recent_popularity weights are missing or do not match n_items")
        self.recent_popularity = values.astype(np.float32)
