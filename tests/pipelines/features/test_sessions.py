"""Sessionisation and per-user positions."""

from __future__ import annotations

import numpy as np

from pipelines.features.sessions import position_from_end, sessionize


def test_new_session_only_after_more_than_the_gap() -> None:
    user = np.array([0, 0, 0, 0, 1, 1])
    minute = 60_000_000
    ts = np.array([0, 30 * minute, 60 * minute + 1, 61 * minute, 61 * minute, 62 * minute])
    # 0 -> 30 min: exactly the gap, same session; 30 -> 60 min + 1 us: longer, new session;
    # user 1 always starts a new session even at the same instant.
    assert sessionize(user, ts, gap_seconds=30 * 60).tolist() == [0, 0, 1, 1, 2, 2]


def test_sessionize_empty() -> None:
    assert sessionize(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 60).tolist() == []


def test_position_from_end_counts_back_within_each_user() -> None:
    assert position_from_end(np.array([0, 0, 0, 3, 5, 5])).tolist() == [2, 1, 0, 0, 1, 0]
