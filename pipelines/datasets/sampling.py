"""Vectorised weighted sampling of items inside segments (a category, a brand, or the whole catalogue).

One cumulative-weight array over items sorted by segment serves every draw of a day: a draw for segment ``s``
picks a point uniformly in that segment's slice of the cumulative sum and binary-searches it. Items with zero
weight (not yet launched) are never returned.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


class SegmentSampler:
    """Draw item indices in proportion to per-item weights, restricted to a segment per draw.

    Args:
        segment_of_item: ``(n_items,)`` segment index of each item (``0..n_segments-1``).
        n_segments: number of segments.
    """

    def __init__(self, segment_of_item: IntArray, n_segments: int) -> None:
        self._order: IntArray = np.argsort(segment_of_item, kind="stable").astype(np.int64)
        self._bounds: IntArray = np.searchsorted(
            segment_of_item[self._order], np.arange(n_segments + 1)
        ).astype(np.int64)
        self._cum: FloatArray = np.zeros(len(self._order) + 1)

    def set_weights(self, weights: FloatArray) -> None:
        """Use ``weights`` (``(n_items,)``, >= 0) for the following draws."""
        self._cum = np.concatenate(([0.0], np.cumsum(weights[self._order], dtype=np.float64)))

    def segment_totals(self) -> FloatArray:
        """Total weight of each segment under the current weights."""
        return self._cum[self._bounds[1:]] - self._cum[self._bounds[:-1]]

    def sample(self, segments: IntArray, rng: np.random.Generator) -> IntArray:
        """One item per entry of ``segments``; -1 where the segment has no item with positive weight."""
        if len(segments) == 0 or len(self._order) == 0:
            return np.full(len(segments), -1, dtype=np.int64)
        first = self._bounds[segments]
        end = self._bounds[segments + 1]
        lo = self._cum[first]
        hi = self._cum[end]
        target = lo + rng.random(len(segments)) * (hi - lo)
        pos = np.searchsorted(self._cum, target, side="right") - 1
        pos = np.clip(pos, first, np.maximum(end - 1, first))
        pos = np.minimum(pos, len(self._order) - 1)
        # Step back over zero-weight items (float rounding can land on one at a segment's end).
        pos = np.searchsorted(self._cum, self._cum[pos + 1], side="left") - 1
        items = self._order[np.clip(pos, 0, len(self._order) - 1)]
        items[(hi <= lo) | (pos < first)] = -1
        return items
