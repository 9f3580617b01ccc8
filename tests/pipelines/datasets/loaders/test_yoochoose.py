"""YOOCHOOSE clicks loader: counts of SOURCE.md per split, sessions as users."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.privacy import is_pseudonymized
from pipelines.datasets.loaders.common import DataFileError
from pipelines.datasets.loaders.yoochoose import load_yoochoose
from tests.pipelines.datasets.loaders.helpers import TEST_KEY, assert_schema


@pytest.fixture(scope="module")
def folder(raw_dir: Path) -> Path:
    return raw_dir / "yoochoose-clicks-100k"


@pytest.mark.parametrize(
    ("split", "rows", "sessions", "items"),
    [("train_full", 70_278, 17_794, 2_933), ("test", 13_568, 3_416, None), ("both", 83_846, 21_210, 2_933)],
)
def test_counts_match_source_md(
    folder: Path, split: str, rows: int, sessions: int, items: int | None
) -> None:
    events, catalog = load_yoochoose(folder, key=TEST_KEY, split=split)
    assert_schema(events, catalog)
    assert len(events) == rows
    assert events["session_id"].nunique() == sessions
    assert events["user_id"].nunique() == sessions
    if items is not None:
        assert events["item_id"].nunique() == items
    assert len(catalog) == events["item_id"].nunique()
    assert (events["event_type"] == "click").all()
    assert is_pseudonymized(events["user_id"])


def test_one_user_per_session_and_ms_timestamps(folder: Path) -> None:
    events, _ = load_yoochoose(folder, key=None, split="train_full")
    assert (events["user_id"] == events["session_id"]).all()
    raw = pd.read_csv(folder / "yoochoose-clicks-100k_train_full.txt", sep="\t")
    session, item, time = (
        str(raw["SessionId"].iloc[0]),
        str(raw["ItemId"].iloc[0]),
        float(raw["Time"].iloc[0]),
    )
    ev = events[(events["session_id"] == session) & (events["item_id"] == item)]
    expected = pd.Timestamp(round(time * 1000), unit="ms", tz="UTC")
    assert expected in set(ev["ts"])
    assert events["ts"].min() >= pd.Timestamp("2014-04-01", tz="UTC")
    assert events["ts"].max() < pd.Timestamp("2014-04-08", tz="UTC")


def test_unknown_split_is_refused(folder: Path) -> None:
    with pytest.raises(DataFileError, match="train_tr"):
        load_yoochoose(folder, split="train_tr")
