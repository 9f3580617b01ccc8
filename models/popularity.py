"""All-time popularity: every user gets the items with the largest weighted interaction count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    ModelConfig,
    Recommender,
    flatten_histories,
)


class PopularityConfig(ModelConfig):
    """No hyper-parameters (params.yaml ``train.popularity: {}``)."""


class PopularityRecommender(Recommender):
    """Scores each item by its summed event weight in the training data (same list for everyone)."""

    family = "popularity"
    config_class = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None) -> None:
        super().__init__(config)

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        """Nothing beyond ``item_popularity``, which the base class computes."""

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """``item_popularity`` repeated for each history."""
        self._check_fitted()
        flatten_histories(histories, self.n_items)  # reject out-of-range input like every family does
        return np.broadcast_to(self.item_popularity, (len(histories), self.n_items)).copy()

    def cold_scores(self) -> FloatArray:
        """All-time popularity for everyone, cold users included (that is this family's definition)."""
        return self.item_popularity

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        """Nothing to restore: ``item_popularity`` is loaded by the base class."""
