"""Temporal and leave-last-out splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import RecopsError
from pipelines.features import TEST, TRAIN, VALID, build_features
from pipelines.features.split import (
    NOT_COMPUTED,
    US_PER_DAY,
    interaction_runs,
    leave_last_out_labels,
    temporal_boundaries,
)
from pipelines.params import FeatureParams
from tests.factories import make_catalog, make_events
from tests.pipelines.features.frames import DAY, T0, catalog, events_frame


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


def test_leave_last_out_holds_out_exactly_the_last_interaction_of_each_user() -> None:
    # sorted by (user, time): user 0 has 4 interactions, user 1 has 2 (too few), user 2 has 3
    user = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    item = np.array([1, 2, 3, 4, 1, 2, 5, 6, 7])
    assert leave_last_out_labels(user, item).tolist() == [
        TRAIN, TRAIN, VALID, TEST,
        TRAIN, TRAIN,
        TRAIN, VALID, TEST,
    ]  # fmt: skip


def test_leave_last_out_collapses_a_funnel_on_one_item_into_one_target() -> None:
    # user 0: a, b, then a view -> click -> cart -> purchase funnel on c: the funnel is ONE test target
    # and b (not three events of c) is validation. user 1: a, b, b, a -> runs a | b b | a: 3 interactions.
    # user 2: a, a, b, b: only 2 interactions, training only.
    user = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    item = np.array([1, 2, 3, 3, 3, 3, 1, 2, 2, 1, 1, 1, 2, 2])
    assert interaction_runs(user, item).tolist() == [0, 1, 2, 2, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7]
    assert leave_last_out_labels(user, item).tolist() == [
        TRAIN, VALID, TEST, TEST, TEST, TEST,
        TRAIN, VALID, VALID, TEST,
        TRAIN, TRAIN, TRAIN, TRAIN,
    ]  # fmt: skip


def test_leave_last_out_refuses_mismatched_arrays_and_accepts_none() -> None:
    with pytest.raises(RecopsError, match="3 users but 2 items"):
        leave_last_out_labels(np.array([0, 0, 0]), np.array([1, 2]))
    empty = np.zeros(0, dtype=np.int64)
    assert leave_last_out_labels(empty, empty).tolist() == []


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


def _funnel_events() -> pd.DataFrame:
    """u1: views of items 1, 2, 4 on days 0-2, then a full funnel on item 3 on day 3; u2: one view."""
    return events_frame(
        [
            ("u1", "i00001", "view", 0),
            ("u1", "i00002", "view", DAY),
            ("u1", "i00004", "view", 2 * DAY),
            ("u1", "i00003", "view", 3 * DAY),
            ("u1", "i00003", "click", 3 * DAY + 10),
            ("u1", "i00003", "add_to_cart", 3 * DAY + 40),
            ("u1", "i00003", "purchase", 3 * DAY + 90),
            ("u2", "i00005", "view", 0),
        ]
    )


def test_loo_protocol_makes_every_view_follow_the_leave_one_out_split() -> None:
    fs = build_features(_funnel_events(), catalog(), FeatureParams(protocol="loo", test_days=30))
    assert fs.protocol == "loo" and fs.split_info.protocol == "loo"
    # no time cut under loo (test_days=30 would leave no training data under temporal): cut-offs = the end
    info = fs.split_info
    assert info.valid_start == info.test_start == info.end == int(T0.timestamp() + 4 * DAY)
    assert "temporal" not in fs.split_info.counts and (fs.events["split"] == NOT_COMPUTED).all()
    test = fs.interactions("test")  # default protocol: the one the set was built for
    assert test.item_idx.tolist() == [3, 3, 3, 3] and fs.test_users().tolist() == [0]
    assert fs.interactions("valid").item_idx.tolist() == [4]
    assert fs.histories("train_valid")[0].tolist() == [1, 2, 4]
    assert fs.split_info.counts["loo"]["test"] == 4 and fs.summary["protocol"] == "loo"
    assert fs.cold_users().tolist() == []
    # item statistics leave the held-out funnel out
    assert fs.item_table.loc[3, "n_events"] == 0 and fs.item_table.loc[4, "n_events"] == 1
    with pytest.raises(RecopsError, match=r"features\.protocol=loo.*temporal split"):
        fs.interactions("train", "temporal")


def test_temporal_protocol_still_computes_the_loo_labels_for_comparison() -> None:
    fs = build_features(_funnel_events(), catalog(), FeatureParams(test_days=1, valid_days=1))
    assert fs.protocol == "temporal" and set(fs.split_info.counts) == {"temporal", "loo"}
    assert fs.interactions("test", "loo").item_idx.tolist() == [3, 3, 3, 3]
    assert fs.interactions("test").item_idx.tolist() == [3, 3, 3, 3]  # the last day, temporal
    assert fs.interactions("valid").item_idx.tolist() == [4]


def test_unknown_protocol_is_refused_with_the_known_ones() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="temporal"):
        FeatureParams(protocol="random")
    fs = build_features(_funnel_events(), catalog(), FeatureParams(test_days=1, valid_days=1))
    with pytest.raises(RecopsError, match="unknown protocol 'random'"):
        fs.split_mask("test", "random")  # type: ignore[arg-type]
