"""The Complete Journey loader against the counts of its SOURCE.md and its price/quantity rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.privacy import is_pseudonymized, pseudonymize_id
from pipelines.datasets.loaders.common import LoadNotes, write_batches
from pipelines.datasets.loaders.completejourney import load_completejourney
from tests.pipelines.datasets.loaders.gate import failures, gate_in_order
from tests.pipelines.datasets.loaders.helpers import TEST_KEY, assert_schema


@pytest.fixture(scope="module")
def folder(raw_dir: Path) -> Path:
    return raw_dir / "completejourney"


@pytest.fixture(scope="module")
def loaded(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return load_completejourney(folder, key=TEST_KEY)


@pytest.fixture(scope="module")
def transactions(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "transactions.parquet")


def test_counts_match_source_md(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert len(events) == 1_469_307
    assert events["user_id"].nunique() == 2_469
    assert events["item_id"].nunique() == 68_509
    assert events["session_id"].nunique() == 155_848
    assert len(catalog) == 68_509
    assert events["ts"].min() == pd.Timestamp("2017-01-01 11:53:26", tz="UTC")
    assert events["ts"].max() == pd.Timestamp("2018-01-01 04:01:20", tz="UTC")


def test_schema_and_event_type(loaded: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = loaded
    assert_schema(events, catalog)
    assert (events["event_type"] == "purchase").all()
    assert is_pseudonymized(events["user_id"])


def test_user_and_session_mapping(
    loaded: tuple[pd.DataFrame, pd.DataFrame], transactions: pd.DataFrame
) -> None:
    events, _ = loaded
    row = transactions.iloc[0]
    ev = events[events["event_id"] == f"cj-{row['basket_id']}-{row['product_id']}"].iloc[0]
    assert ev["user_id"] == pseudonymize_id(str(row["household_id"]), TEST_KEY)
    assert ev["session_id"] == str(row["basket_id"])
    assert ev["item_id"] == str(row["product_id"])
    assert ev["ts"] == pd.Timestamp(row["transaction_timestamp"]).tz_localize("UTC")


def test_price_and_quantity_rules(
    loaded: tuple[pd.DataFrame, pd.DataFrame], transactions: pd.DataFrame
) -> None:
    events, _ = loaded
    ids = "cj-" + transactions["basket_id"].astype(str) + "-" + transactions["product_id"].astype(str)
    merged = transactions.assign(event_id=ids.to_numpy()).merge(events, on="event_id", suffixes=("_raw", ""))
    assert len(merged) == len(transactions)
    valid = (merged["quantity_raw"] > 0) & (merged["sales_value"] > 0)
    np.testing.assert_allclose(
        merged.loc[valid, "price"], merged.loc[valid, "sales_value"] / merged.loc[valid, "quantity_raw"]
    )
    assert merged.loc[~valid, "price"].isna().all()
    assert int((~valid).sum()) > 10_000  # zero-quantity and zero-value lines exist and keep their row
    zero_quantity = merged["quantity_raw"] == 0
    assert merged.loc[zero_quantity, "quantity"].isna().all()
    assert (merged.loc[~zero_quantity, "quantity"] == merged.loc[~zero_quantity, "quantity_raw"]).all()


def test_catalog_attributes(loaded: tuple[pd.DataFrame, pd.DataFrame], folder: Path) -> None:
    events, catalog = loaded
    products = pd.read_parquet(folder / "products.parquet").set_index("product_id")
    cat = catalog.set_index("item_id")
    known = products.index.astype(str).intersection(cat.index)
    sample = products.loc[known.astype(int)[:500]]
    expected = sample["product_category"].fillna(sample["department"]).str.strip()
    assert (cat.loc[sample.index.astype(str), "category"].to_numpy() == expected.to_numpy()).all()
    assert set(cat["brand"].unique()) == {"National", "Private", "unknown"}
    unknown_items = cat.index.difference(products.index.astype(str))
    assert len(unknown_items) > 0 and (cat.loc[unknown_items, "category"] == "unknown").all()
    median = events.groupby("item_id")["price"].median()
    pd.testing.assert_series_equal(
        cat["price"].sort_index(), median.reindex(cat.index).sort_index(), check_names=False
    )
    first = events.groupby("item_id")["ts"].min()
    assert (cat["created_at"] == first.reindex(cat.index)).all()
    assert cat["in_stock"].all()


def test_without_key_keeps_raw_household_ids(folder: Path, tmp_path: Path) -> None:
    # A small copy built from the real files keeps this test fast.
    tx = pd.read_parquet(folder / "transactions.parquet").head(2000)
    tx.to_parquet(tmp_path / "transactions.parquet", index=False)
    pd.read_parquet(folder / "products.parquet").to_parquet(tmp_path / "products.parquet", index=False)
    events, catalog = load_completejourney(tmp_path, key=None)
    assert_schema(events, catalog)
    assert set(events["user_id"]) == set(tx["household_id"].astype(str))


def test_a_real_sample_loaded_with_defaults_passes_the_gate(folder: Path, tmp_path: Path) -> None:
    """The first four days of real transactions, loaded, cut into daily batches and gated in order."""
    tx = pd.read_parquet(folder / "transactions.parquet")
    sample = tx[tx["transaction_timestamp"] < pd.Timestamp("2017-01-05")]
    sample.to_parquet(tmp_path / "transactions.parquet", index=False)
    pd.read_parquet(folder / "products.parquet").to_parquet(tmp_path / "products.parquet", index=False)
    notes = LoadNotes()
    events, catalog = load_completejourney(tmp_path, key=TEST_KEY, notes=notes)
    assert len(events) == len(sample) > 5_000  # second resolution: nothing merged, every line kept
    assert notes.resolution == "second" and notes.repeats_merged == 0
    batches = write_batches(events, catalog, tmp_path / "landing", daily=True)
    assert [b.name for b in batches] == ["2017-01-01", "2017-01-02", "2017-01-03", "2017-01-04"]
    reports = gate_in_order(batches, tmp_path / "gate")
    assert failures(reports) == []
    assert not any(s.startswith("events.volume") for s in reports[-1].skipped)  # the volume was judged
