"""MovieLens 100K and latest-small: counts of SOURCE.md, rating mapping, genres as category."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.datasets.loaders.movielens import (
    load_movielens_100k,
    load_movielens_small,
    rating_to_event_type,
)
from tests.pipelines.datasets.loaders.helpers import TEST_KEY, assert_schema


@pytest.fixture(scope="module")
def ml100k(raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_movielens_100k(raw_dir / "movielens-100k", key=TEST_KEY)


@pytest.fixture(scope="module")
def small(raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_movielens_small(raw_dir / "movielens-latest-small", key=TEST_KEY)


def test_rating_mapping() -> None:
    ratings = pd.Series([0.5, 1, 2, 2.5, 2.99, 3, 3.5, 3.99, 4, 4.5, 5])
    assert rating_to_event_type(ratings).tolist() == [
        "view", "view", "view", "view", "view", "click", "click", "click", "purchase", "purchase", "purchase",
    ]  # fmt: skip


def test_ml100k_counts_and_schema(ml100k: tuple[pd.DataFrame, pd.DataFrame], raw_dir: Path) -> None:
    events, catalog = ml100k
    assert_schema(events, catalog)
    assert len(events) == 100_000
    assert events["user_id"].nunique() == 943
    assert events["item_id"].nunique() == 1_682
    assert len(catalog) == 1_682
    assert events["ts"].min().date().isoformat() == "1997-09-20"
    assert events["ts"].max().date().isoformat() == "1998-04-22"
    raw = pd.read_csv(raw_dir / "movielens-100k" / "ml-100k.inter", sep="\t")
    counts = events["event_type"].value_counts()
    rating = raw["rating:float"]
    assert counts["purchase"] == int((rating >= 4).sum())
    assert counts["click"] == int((rating == 3).sum())
    assert counts["view"] == int((rating < 3).sum())


def test_ml100k_genres_as_category(ml100k: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, catalog = ml100k
    cat = catalog.set_index("item_id")["category"]
    assert cat["1"] == "Animation|Children's|Comedy"  # Toy Story
    assert cat["2"] == "Action|Adventure|Thriller"  # GoldenEye
    assert (catalog["brand"] == "unknown").all() and catalog["price"].isna().all()


def test_small_counts_and_schema(small: tuple[pd.DataFrame, pd.DataFrame], raw_dir: Path) -> None:
    events, catalog = small
    assert_schema(events, catalog)
    assert len(events) == 100_004
    assert events["user_id"].nunique() == 671
    assert events["item_id"].nunique() == 9_066
    assert len(catalog) == 9_066
    assert events["ts"].min().date().isoformat() == "1995-01-09"
    assert events["ts"].max().date().isoformat() == "2016-10-16"
    raw = pd.read_csv(raw_dir / "movielens-latest-small" / "ratings.csv")
    assert (events["event_type"] == "click").sum() == int(raw["rating"].between(3, 3.5).sum())
    cat = catalog.set_index("item_id")["category"]
    assert cat["1"] == "Adventure|Animation|Children|Comedy|Fantasy"
    assert not cat.str.contains("no genres listed").any()


def test_same_user_same_pseudonym_in_both_calls(
    raw_dir: Path, ml100k: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    again, _ = load_movielens_100k(raw_dir / "movielens-100k", key=TEST_KEY)
    pd.testing.assert_frame_equal(again, ml100k[0])  # deterministic, ids included
    other_key, _ = load_movielens_100k(raw_dir / "movielens-100k", key="another-key")
    assert not set(other_key["user_id"]) & set(ml100k[0]["user_id"])
