"""Time-decayed popularity: recent interactions count more (the strong production baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    ModelConfig,
    ModelLoadError,
    Recommender,
    decayed_popularity,
    flatten_histories,
)


class RecentPopularityConfig(ModelConfig):
    """Hyper-parameters of :class:`RecentPopularityRecommender` (params.yaml ``train.recent_popularity``).

    Attributes:
        half_life_days: an event this many days older than the newest training event counts half.
    """

    half_life_days: float = Field(7.0, gt=0)


class RecentPopularityRecommender(Recommender):
    """Scores each item by exponentially time-decayed weighted interaction count."""

    family = "recent_popularity"
    config_class = RecentPopularityConfig
    config: RecentPopularityConfig

    def __init__(self, config: RecentPopularityConfig | None = None) -> None:
        super().__init__(config)
        self.recent_popularity: FloatArray = np.zeros(0, dtype=np.float32)

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        self.recent_popularity = decayed_popularity(train, self.config.half_life_days)

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """``recent_popularity`` repeated for each history."""
        self._check_fitted()
        flatten_histories(histories, self.n_items)
        return np.broadcast_to(self.recent_popularity, (len(histories), self.n_items)).copy()

    def cold_scores(self) -> FloatArray:
        """Cold users get the recent (not all-time) popularity list, like everyone else."""
        return self.recent_popularity

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {"recent_popularity": self.recent_popularity}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        values = weights.get("recent_popularity")
        if values is None or values.shape != (self.n_items,):
            raise ModelLoadError("recent_popularity weights are missing or do not match n_items")
        self.recent_popularity = values.astype(np.float32)
