"""Amazon Beauty (BERT4Rec file): counts of SOURCE.md and file order kept by the synthetic clock."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.datasets.loaders.amazon_beauty import ANCHOR, load_amazon_beauty
from tests.pipelines.datasets.loaders.helpers import assert_schema


@pytest.fixture(scope="module")
def path(raw_dir: Path) -> Path:
    return raw_dir / "amazon-beauty-bert4rec" / "beauty.txt"


@pytest.fixture(scope="module")
def loaded(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_amazon_beauty(path, key=None)


def test_counts_match_source_md(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert len(events) == 353_962
    assert events["user_id"].nunique() == 40_226
    assert events["item_id"].nunique() == 54_542
    assert len(catalog) == 54_542


def test_schema_and_event_type(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert_schema(events, catalog)
    assert (events["event_type"] == "purchase").all()


def test_file_order_is_time_order_per_user(loaded: tuple[pd.DataFrame, pd.DataFrame], path: Path) -> None:
    events, _ = loaded
    raw = pd.read_csv(path, sep=" ", header=None, names=["user", "item"], dtype=str)
    by_time = events.sort_values(["user_id", "ts"], kind="stable")
    # ts strictly increasing per user
    assert (by_time.groupby("user_id")["ts"].diff().dropna() > pd.Timedelta(0)).all()
    # the per-user sequences in ts order equal the per-user sequences in file order
    file_seq = raw.groupby("user", sort=True)["item"].agg(list)
    time_seq = by_time.groupby("user_id", sort=True)["item_id"].agg(list)
    assert file_seq.to_dict() == time_seq.to_dict()
    # and leave-last-out by ts equals leave-last-out by file order
    assert (raw.groupby("user")["item"].last() == by_time.groupby("user_id")["item_id"].last()).all()


def test_clock_is_one_day_per_position(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, _ = loaded
    position = events.sort_values(["user_id", "ts"]).groupby("user_id").cumcount()
    expected = ANCHOR + pd.to_timedelta(position, unit="D")
    assert (events.sort_values(["user_id", "ts"])["ts"] == expected).all()
    assert events["ts"].min() == ANCHOR
