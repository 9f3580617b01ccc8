"""build_features end to end on small hand-made and factory data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import RecopsError
from core.schema import EVENT_TYPES
from pipelines.datastore import read_published
from pipelines.features import TEST, TRAIN, VALID, FeatureSet, build_features
from pipelines.params import FeatureParams
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.features.frames import DAY, catalog, events_frame

PARAMS = FeatureParams(
    test_days=1, valid_days=1, dedup_seconds=2, session_gap_minutes=30, recent_windows_days=[1, 2]
)

# Jan 1 = train, Jan 2 = valid, Jan 3 = test (the last event is on Jan 3).
ROWS = [
    ("u1", "i00001", "view", 0),
    ("u1", "i00001", "view", 1),  # repeat of the first view: merged
    ("u1", "i00002", "click", 100),
    ("u2", "i00003", "view", 200),
    ("u1", "i00001", "purchase", DAY + 10),
    ("u1", "i00004", "view", 2 * DAY + 5),
    ("u3", "i00005", "view", 2 * DAY + 50),  # u3 has no history before the test day: cold
    ("u1", "i00019", "add_to_cart", 2 * DAY + 60),
]


@pytest.fixture
def fs() -> FeatureSet:
    return build_features(events_frame(ROWS), catalog(), PARAMS)


def test_summary_counts_every_step(fs: FeatureSet) -> None:
    s = fs.summary
    assert s["events_in"] == 8 and s["dropped_repeat"] == 1 and s["events_out"] == 7
    assert (s["users"], s["items"], s["items_with_events"]) == (3, 20, 6)
    assert s["temporal"]["train"] == 3 and s["temporal"]["valid"] == 1 and s["temporal"]["test"] == 3
    assert s["temporal"]["test_users"] == 2 and s["temporal"]["cold_test_users"] == 1


def test_item_index_is_the_sorted_catalogue(fs: FeatureSet) -> None:
    assert fs.n_items == 20 and fs.item_ids[:3].tolist() == ["i00000", "i00001", "i00002"]
    assert fs.encode_items(["i00019", "i00001", "nope"]).tolist() == [19, 1, -1]
    assert fs.decode_items(np.array([2, -1])).tolist() == ["i00002", ""]
    assert fs.user_ids.tolist() == ["u1", "u2", "u3"]


def test_catalogue_row_order_does_not_change_the_index() -> None:
    cat = catalog()
    shuffled = cat.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = build_features(events_frame(ROWS), cat, PARAMS)
    b = build_features(events_frame(ROWS), shuffled, PARAMS)
    assert a.item_ids.tolist() == b.item_ids.tolist()
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.item_table, b.item_table)


def test_events_are_time_ordered_with_weights_and_splits(fs: FeatureSet) -> None:
    ev = fs.events
    assert np.all(np.diff(ev["ts"].to_numpy()) >= 0)
    weights = dict(zip(EVENT_TYPES, (1.0, 2.0, 4.0, 8.0), strict=True))
    expected = [weights[EVENT_TYPES[c]] for c in ev["event_type"]]
    assert ev["weight"].tolist() == expected
    assert ev["split"].tolist() == [TRAIN, TRAIN, TRAIN, VALID, TEST, TEST, TEST]


def test_sessions_split_on_silence_and_users(fs: FeatureSet) -> None:
    ev = fs.events
    u1 = ev[ev["user_idx"] == 0]
    # u1: Jan 1 (two events 100 s apart) | Jan 2 | Jan 3 (two events 55 s apart) -> 3 sessions
    assert u1["session_idx"].tolist() == [0, 0, 1, 2, 2]
    assert ev["session_idx"].nunique() == 5
    assert fs.summary["sessions"] == 5


def test_interactions_views(fs: FeatureSet) -> None:
    train = fs.interactions("train")
    assert (train.n_users, train.n_items) == (3, 20)
    assert train.item_idx.tolist() == [1, 2, 3]
    tv = fs.interactions("train_valid")
    assert len(tv) == len(train) + len(fs.interactions("valid"))
    assert len(fs.interactions("all")) == len(fs.events)
    assert train.user_idx.dtype == np.int64 and train.weight.dtype == np.float32
    with pytest.raises(RecopsError, match="unknown split"):
        fs.interactions("everything")  # type: ignore[arg-type]


def test_cold_and_warm_users(fs: FeatureSet) -> None:
    assert fs.test_users().tolist() == [0, 2]
    assert fs.cold_users().tolist() == [2]
    assert fs.warm_users().tolist() == [0]
    assert fs.histories()[0].tolist() == [1, 2, 1]  # u1 before the test day, in time order


def test_sequences_are_right_aligned_and_truncated(fs: FeatureSet) -> None:
    seq = fs.sequences("all", max_len=3)
    assert seq.tolist() == [[1, 4, 19], [-1, -1, 3], [-1, -1, 5]]
    offsets, items = fs.sequence_lists("train_valid", max_len=2)
    assert offsets.tolist() == [0, 2, 3, 3] and items.tolist() == [2, 1, 3]


def test_sequences_need_an_explicit_split_and_train_has_no_test_items(fs: FeatureSet) -> None:
    with pytest.raises(TypeError):
        fs.sequences()  # type: ignore[call-arg]  # no default split: "all" would include the test period
    with pytest.raises(TypeError):
        fs.sequence_lists()  # type: ignore[call-arg]
    train = fs.sequences("train", max_len=3)
    assert train.tolist() == [[-1, 1, 2], [-1, -1, 3], [-1, -1, -1]]  # u1's Jan 2 purchase is validation
    test_items = set(fs.events.loc[fs.split_mask("test"), "item_idx"].tolist())
    assert test_items == {4, 5, 19}
    for split in ("train", "train_valid"):
        _, items = fs.sequence_lists(split)
        assert not test_items & set(items.tolist()), split  # items seen only in the test period


def test_item_table_stats_use_only_events_before_the_test_boundary(fs: FeatureSet) -> None:
    t = fs.item_table.set_index("item_id")
    assert t.loc["i00001", "n_view"] == 1 and t.loc["i00001", "n_purchase"] == 1
    assert t.loc["i00001", "popularity"] == 9.0  # view 1 + purchase 8
    assert t.loc["i00001", "popularity_1d"] == 8.0  # only the purchase is in the last day before the test
    assert t.loc["i00001", "n_users"] == 1
    assert t.loc["i00004", "n_events"] == 0  # viewed only in the test period
    assert pd.isna(t.loc["i00004", "first_seen"])
    assert t.loc["i00001", "last_seen"] == pd.Timestamp("2026-01-02T00:00:10Z")
    assert list(t.columns[:9]) == [
        "item_idx", "category", "brand", "price", "in_stock", "created_at", "category_idx", "brand_idx",
        "price_bucket",
    ]  # fmt: skip
    assert t.loc["i00003", "category"] == "cat3" and t.loc["i00003", "category_idx"] == 3
    assert set(t["price_bucket"]) <= set(range(10))


def test_unknown_price_gets_bucket_minus_one() -> None:
    cat = catalog()
    cat.loc[0, "price"] = np.nan
    fs = build_features(events_frame(ROWS), cat, PARAMS)
    buckets = fs.item_table["price_bucket"].to_numpy()
    assert buckets[0] == -1 and (buckets[1:] >= 0).all()
    # deciles: roughly equally many items per bucket
    assert np.bincount(buckets[1:]).max() <= 3


def test_input_row_order_does_not_change_the_result() -> None:
    ev = pd.concat([make_events(date(2026, 1, d), n=300, seed=d) for d in range(1, 11)], ignore_index=True)
    params = FeatureParams(test_days=2, valid_days=2)
    a = build_features(ev, make_catalog(), params)
    b = build_features(ev.sample(frac=1.0, random_state=7), make_catalog(), params)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.item_table, b.item_table)
    assert a.summary == b.summary


def test_reads_published_batches(tmp_path: Path) -> None:
    for d in range(1, 6):
        write_batch(tmp_path, date(2026, 1, d), events=make_events(date(2026, 1, d), n=200, seed=d))
    events, cat = read_published(tmp_path)
    assert "batch_id" in events.columns
    fs = build_features(events, cat, FeatureParams(test_days=1, valid_days=1))
    assert fs.summary["events_in"] == 1000
    assert fs.summary["temporal"]["test"] == int((fs.events["split"] == TEST).sum()) > 0
