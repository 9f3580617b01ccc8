"""Train / validation / test splits: a global temporal split (gated on) and leave-last-out (for papers).

* Temporal: the test period is the last ``test_days`` whole UTC days up to the day of the newest event, the
  validation period the ``valid_days`` before it, training everything earlier. Every user is cut at the same
  instant, so nothing from the future leaks into training.
* Leave-last-out (LOO): each user's chronological events are grouped into *interactions*, maximal runs of
  consecutive events on the same item (a view -> click -> add-to-cart -> purchase funnel on one item, with
  no other item in between, is one interaction). For each user with at least three interactions, every
  event of the last interaction is test and every event of the one before it validation, so each target is
  one item, never the same item four times; users with fewer interactions are training only (as in
  SASRec's data partition). It leaks the future across users and is meant to compare with published numbers
  (``features.protocol: loo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.errors import RecopsError
from pipelines.features.sessions import position_from_end, user_starts

TRAIN, VALID, TEST = 0, 1, 2
#: Label of every event in the split column of a protocol the feature set was not built for.
NOT_COMPUTED = -1
SPLIT_NAMES = ("train", "valid", "test")
US_PER_DAY = 86_400 * 1_000_000
LOO_MIN_INTERACTIONS = 3


def iso(seconds: int) -> str:
    """Unix seconds as an ISO-8601 UTC string."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SplitInfo:
    """Where the split of ``protocol`` cuts (unix seconds, UTC), and events and users on each side.

    ``valid_start`` and ``test_start`` are the training cut-offs (the first instant not in the data of the
    selection fit on train, and of the refit on train + valid). Under ``temporal`` they are the period
    boundaries: ``valid_start <= ts < test_start`` is validation, ``test_start <= ts < end`` is test. Under
    ``loo`` the held-out events are picked per user, not by time, so both are ``end`` (the midnight after the
    newest event): a cut-off instant cannot tell whether a model saw a user's last interaction.
    ``counts`` holds, per computed protocol (``loo`` always, ``temporal`` when it is the protocol): events per
    split, users per split and ``cold_test_users`` (test users without a train or validation event).
    """

    min_ts: int
    max_ts: int
    valid_start: int
    test_start: int
    end: int
    valid_days: int
    test_days: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    protocol: str = "temporal"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form with ISO timestamps next to the seconds."""
        out: dict[str, Any] = {
            name: getattr(self, name) for name in ("min_ts", "max_ts", "valid_start", "test_start", "end")
        }
        out.update({f"{name}_iso": iso(value) for name, value in list(out.items())})
        out.update(
            valid_days=self.valid_days, test_days=self.test_days, counts=self.counts, protocol=self.protocol
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitInfo:
        """Inverse of :meth:`to_dict` (the ISO strings are ignored)."""
        return cls(
            **{k: int(data[k]) for k in ("min_ts", "max_ts", "valid_start", "test_start", "end")},
            valid_days=int(data["valid_days"]),
            test_days=int(data["test_days"]),
            counts={p: {k: int(v) for k, v in c.items()} for p, c in data["counts"].items()},
            protocol=str(data.get("protocol", "temporal")),  # feature sets written before it: temporal
        )


def temporal_boundaries(ts_us: NDArray[np.int64], test_days: int, valid_days: int) -> tuple[int, int, int]:
    """``(valid_start, test_start, end)`` in microseconds, aligned to UTC midnight.

    ``end`` is the midnight after the newest event; the test period is the ``test_days`` days before ``end``.

    Raises:
        RecopsError: when no event would be left for training.
    """
    min_us, max_us = int(ts_us.min()), int(ts_us.max())
    end = (max_us // US_PER_DAY + 1) * US_PER_DAY
    test_start = end - test_days * US_PER_DAY
    valid_start = test_start - valid_days * US_PER_DAY
    if min_us >= valid_start:
        span_days = (end - (min_us // US_PER_DAY) * US_PER_DAY) // US_PER_DAY
        raise RecopsError(
            f"the events cover {span_days} day(s) but features.test_days + features.valid_days = "
            f"{test_days + valid_days}: no event is left for training; lower them or add older data"
        )
    return valid_start, test_start, end


def temporal_labels(ts_us: NDArray[np.int64], valid_start: int, test_start: int) -> NDArray[np.int8]:
    """TRAIN / VALID / TEST label of each event under the global temporal split."""
    labels = np.full(len(ts_us), TRAIN, dtype=np.int8)
    labels[ts_us >= valid_start] = VALID
    labels[ts_us >= test_start] = TEST
    return labels


def interaction_runs(user: NDArray[np.int64], item: NDArray[np.int64]) -> NDArray[np.int64]:
    """Dense interaction index of each event, for events sorted by ``(user, time)``.

    An interaction is a maximal run of consecutive events of one user on one item; a new one starts where
    the user or the item changes. Runs are numbered ``0..n-1`` in (user, time) order.
    """
    if not len(user):
        return np.zeros(0, dtype=np.int64)
    new = user_starts(user)
    new[1:] |= item[1:] != item[:-1]
    return np.cumsum(new, dtype=np.int64) - 1


def leave_last_out_labels(user: NDArray[np.int64], item: NDArray[np.int64]) -> NDArray[np.int8]:
    """TRAIN / VALID / TEST label of each event under leave-last-out, for events sorted by (user, time).

    The last interaction (:func:`interaction_runs`) of each user with at least
    :data:`LOO_MIN_INTERACTIONS` interactions is test, the one before it validation, all its events alike.
    """
    if len(user) != len(item):
        raise RecopsError(f"leave_last_out_labels: {len(user)} users but {len(item)} items")
    labels = np.full(len(user), TRAIN, dtype=np.int8)
    if not len(user):
        return labels
    run = interaction_runs(user, item)
    first_event = np.flatnonzero(np.diff(run, prepend=-1) != 0)  # first event of each run
    run_user = user[first_event]
    back = position_from_end(run_user)  # 0: the user's last interaction, 1: the one before
    runs_per_user = np.bincount(run_user, minlength=int(run_user.max()) + 1)
    eligible = runs_per_user[run_user] >= LOO_MIN_INTERACTIONS
    run_label = np.full(len(run_user), TRAIN, dtype=np.int8)
    run_label[eligible & (back == 1)] = VALID
    run_label[eligible & (back == 0)] = TEST
    return run_label[run]


def split_counts(user: NDArray[np.int64], labels: NDArray[np.int8]) -> dict[str, int]:
    """Events and distinct users per split, plus test users that have no earlier (train/valid) event."""
    out: dict[str, int] = {}
    n_users = int(user.max()) + 1 if len(user) else 0
    has: dict[int, NDArray[np.bool_]] = {}
    for code, name in enumerate(SPLIT_NAMES):
        mask = labels == code
        out[name] = int(mask.sum())
        has[code] = np.bincount(user[mask], minlength=n_users) > 0
        out[f"{name}_users"] = int(has[code].sum())
    out["cold_test_users"] = int((has[TEST] & ~has[TRAIN] & ~has[VALID]).sum())
    return out
