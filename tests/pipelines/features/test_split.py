"""Temporal and leave-last-out splits."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import RecopsError
from pipelines.features import TEST, TRAIN, VALID, build_features
from pipelines.features.split import US_PER_DAY, leave_last_out_labels, temporal_boundaries
from pipelines.params import FeatureParams
from tests.factories import make_catalog, make_events
from tests.pipelines.features.frames import DAY, catalog, events_frame


def test_boundaries_are_whole_utc_days_back_from_the_last_event_day() -> None:
    day0 = 20_454 * US_PER_DAY  # some midnight
    ts = np.array([day0 + 5, day0 + 9 * US_PER_DAY + 123])  # last event on day 9
    valid_start, test_start, end = temporal_boundaries(ts, test_days=2, valid_days=3)
    assert end == day0 + 10 * US_PER_DAY
    assert test_start == day0 + 8 * US_PER_DAY
    assert valid_start == day0 + 5 * US_PER_DAY


def test_split_refuses_when_no_training_data_is_left() -> None:
    ev = events_frame([("u1", "i00001", "view", 0), ("u1", "i00002", "view", 3 * DAY)])
    with pytest.raises(RecopsError, match="no event is left for training"):
        build_features(ev, catalog(), FeatureParams(test_days=2, valid_days=2))


def test_temporal_split_has_no_leakage_on_factory_batches() -> None:
    from datetime import date, timedelta

    import pandas as pd

    ev = pd.concat(
        [make_events(date(2026, 1, 1) + timedelta(days=d), n=200, seed=d) for d in range(20)],
        ignore_index=True,
    )
    fs = build_features(ev, make_catalog(), FeatureParams(test_days=3, valid_days=4))
    ts, split = fs.events["ts"].to_numpy(), fs.events["split"].to_numpy()
    info = fs.split_info
    assert ts[split == TRAIN].max() < info.valid_start <= ts[split == VALID].min()
    assert ts[split == VALID].max() < info.test_start <= ts[split == TEST].min()
    assert info.test_start == info.end - 3 * 86_400 and info.valid_start == info.test_start - 4 * 86_400
    assert fs.split_info.to_dict()["test_start_iso"] == "2026-01-18T00:00:00Z"
    counts = info.counts["temporal"]
    assert counts["train"] + counts["valid"] + counts["test"] == len(fs.events)
    assert counts["test"] == int((split == TEST).sum())


def test_leave_last_out_holds_out_exactly_the_last_event_of_each_user() -> None:
    # sorted by (user, time): user 0 has 4 events, user 1 has 2 (too few), user 2 has 3
    user = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    assert leave_last_out_labels(user).tolist() == [
        TRAIN, TRAIN, VALID, TEST,
        TRAIN, TRAIN,
        TRAIN, VALID, TEST,
    ]  # fmt: skip


def test_leave_last_out_in_a_feature_set_uses_time_order() -> None:
    ev = events_frame(
        [
            ("u1", "i00003", "view", 3 * DAY),  # u1's last event although it comes first in the rows
            ("u1", "i00001", "view", 0),
            ("u1", "i00002", "view", DAY),
            ("u1", "i00004", "view", 2 * DAY),
            ("u2", "i00005", "view", 0),
        ]
    )
    fs = build_features(ev, catalog(), FeatureParams(test_days=1, valid_days=1))
    test = fs.interactions("test", "loo")
    valid = fs.interactions("valid", "loo")
    assert test.item_idx.tolist() == [3] and test.user_idx.tolist() == [0]
    assert valid.item_idx.tolist() == [4]
    assert fs.test_users("loo").tolist() == [0]
    assert fs.histories("train_valid", "loo")[0].tolist() == [1, 2, 4]
