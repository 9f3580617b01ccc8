"""Sessions rebuilt from the events themselves: a new session starts after a long enough silence.

Source session ids are not trusted (they differ between shops and loaders); they are only input data.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def user_starts(user: NDArray[np.int64]) -> NDArray[np.bool_]:
    """True where a new user's block begins in an array sorted by user."""
    start = np.ones(len(user), dtype=bool)
    start[1:] = user[1:] != user[:-1]
    return start


def sessionize(user: NDArray[np.int64], ts_us: NDArray[np.int64], gap_seconds: float) -> NDArray[np.int64]:
    """Dense session index of each event, for events sorted by ``(user, ts)``.

    A session ends when the user changes or more than ``gap_seconds`` pass between two consecutive events of
    the user. Sessions are numbered ``0..n-1`` in (user, time) order.
    """
    if not len(user):
        return np.zeros(0, dtype=np.int64)
    new = user_starts(user)
    new[1:] |= (ts_us[1:] - ts_us[:-1]) > round(gap_seconds * 1_000_000)
    return np.cumsum(new, dtype=np.int64) - 1


def position_from_end(user: NDArray[np.int64]) -> NDArray[np.int64]:
    """For events sorted by ``(user, time)``: 0 for each user's last event, 1 for the one before, etc."""
    n = len(user)
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(user_starts(user))
    ends = np.append(starts[1:], n)
    block_end = np.repeat(ends, ends - starts)
    return block_end - 1 - np.arange(n, dtype=np.int64)
