"""The features step: published events and catalogue -> encoded interactions, splits and item table.

``build_features`` is pure (DataFrames in, :class:`FeatureSet` out); ``write_features`` / ``read_features``
do the I/O. Steps, each in its own module:

1. :mod:`~pipelines.features.encode` / :mod:`~pipelines.features.clean`: keep events with a user, a known
   event type and an item in the catalogue; drop repeated event ids; merge repeats of the same
   (user, item, type) closer than ``dedup_seconds``.
2. :mod:`~pipelines.features.sessions`: a new session after ``session_gap_minutes`` of silence.
3. Event weights from ``event_weights``; item index over the sorted catalogue, user index over sorted users.
4. :mod:`~pipelines.features.split`: the split of ``features.protocol``: a global temporal split (the
   default, gated on) or leave-one-out over interactions (for papers); the leave-one-out labels are always
   computed, and every view of the :class:`FeatureSet` defaults to the chosen protocol.
5. :mod:`~pipelines.features.stats`: per-item content codes and statistics before the test boundary.
"""

from pipelines.features.build import build_features
from pipelines.features.featureset import EVENT_FRAME_DTYPES, FeatureSet, Protocol, Split
from pipelines.features.io import read_features, write_features
from pipelines.features.split import TEST, TRAIN, VALID, SplitInfo

__all__ = [
    "EVENT_FRAME_DTYPES",
    "TEST",
    "TRAIN",
    "VALID",
    "FeatureSet",
    "Protocol",
    "Split",
    "SplitInfo",
    "build_features",
    "read_features",
    "write_features",
]
