"""write_batches / limit_days: daily cuts, catalogue per batch, refusal to overwrite, deterministic bytes."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.schema import coerce_catalog, coerce_events
from pipelines.datasets.loaders.common import MANIFEST_FILE, limit_days, write_batches
from pipelines.datastore import read_published
from tests.factories import make_catalog, make_events

DAYS = (date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 4))


@pytest.fixture
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    events = pd.concat([make_events(day, n=60, seed=i) for i, day in enumerate(DAYS)], ignore_index=True)
    catalog = make_catalog(n_items=60)
    # item i00055 is created on the second day, i00059 after the last day
    catalog.loc[catalog["item_id"] == "i00055", "created_at"] = pd.Timestamp("2026-01-02T08:00Z")
    catalog.loc[catalog["item_id"] == "i00059", "created_at"] = pd.Timestamp("2026-02-01T00:00Z")
    events = events.sample(frac=1.0, random_state=0)  # order of the input does not matter
    return coerce_events(events), coerce_catalog(catalog)


def test_daily_batches(tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = tables
    paths = write_batches(events, catalog, tmp_path, daily=True, source="test")
    assert [p.name for p in paths] == ["2026-01-01", "2026-01-02", "2026-01-04"]
    for path, day in zip(paths, DAYS, strict=True):
        ev = pd.read_parquet(path / "events.parquet")
        assert len(ev) == 60 and (ev["ts"].dt.date == day).all()
        assert ev["ts"].is_monotonic_increasing
        cat = pd.read_parquet(path / "catalog.parquet")
        assert set(ev["item_id"]) <= set(cat["item_id"])
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        assert manifest["window_start"] == f"{day.isoformat()}T00:00:00+00:00"
        assert manifest["rows"] == 60 and manifest["source"] == "test"
    first_cat = set(pd.read_parquet(paths[0] / "catalog.parquet")["item_id"])
    second_cat = set(pd.read_parquet(paths[1] / "catalog.parquet")["item_id"])
    last_cat = set(pd.read_parquet(paths[2] / "catalog.parquet")["item_id"])
    assert "i00055" in second_cat and "i00059" in last_cat
    assert len(first_cat) > len(
        set(pd.read_parquet(paths[0] / "events.parquet")["item_id"])
    )  # created earlier
    all_events, all_items = read_published(tmp_path)
    assert len(all_events) == len(events)
    assert set(all_items["item_id"]) == set(catalog["item_id"])  # the union is the whole catalogue


def test_single_batch_names(tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = tables
    (path,) = write_batches(events, catalog, tmp_path / "a", daily=False)
    assert path.name == "2026-01-04"
    pd.testing.assert_frame_equal(
        pd.read_parquet(path / "catalog.parquet"), catalog.sort_values("item_id").reset_index(drop=True)
    )
    assert len(pd.read_parquet(path / "events.parquet")) == len(events)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    assert (manifest["window_start"], manifest["window_end"]) == (
        "2026-01-01T00:00:00+00:00",
        "2026-01-05T00:00:00+00:00",
    )
    (named,) = write_batches(events, catalog, tmp_path / "b", daily=False, batch_id="full-load")
    assert named.name == "full-load"
    with pytest.raises(RecopsError, match="invalid batch id"):
        write_batches(events, catalog, tmp_path / "c", daily=False, batch_id="../escape")
    with pytest.raises(RecopsError, match="--single-batch"):
        write_batches(events, catalog, tmp_path / "d", daily=True, batch_id="x")


def test_deterministic_and_idempotent(tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = tables
    first = write_batches(events, catalog, tmp_path / "one", daily=True)
    second = write_batches(events.iloc[::-1], catalog.iloc[::-1], tmp_path / "two", daily=True)
    for a, b in zip(first, second, strict=True):
        for name in ("events.parquet", "catalog.parquet", MANIFEST_FILE):
            assert (a / name).read_bytes() == (b / name).read_bytes()
    again = write_batches(events, catalog, tmp_path / "one", daily=True)  # same content: accepted, untouched
    assert again == first


def test_refuses_to_overwrite_a_different_batch(
    tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    events, catalog = tables
    write_batches(events, catalog, tmp_path, daily=True)
    before = (tmp_path / "2026-01-02" / "events.parquet").read_bytes()
    changed = events.copy()
    changed.loc[changed["ts"].dt.date == date(2026, 1, 2), "price"] = 1.0
    extra = make_events(date(2026, 1, 9), n=5)
    with pytest.raises(RecopsError, match=r"2026-01-02 already exists with different content"):
        write_batches(pd.concat([changed, extra]), catalog, tmp_path, daily=True)
    assert (tmp_path / "2026-01-02" / "events.parquet").read_bytes() == before
    assert not (tmp_path / "2026-01-09").exists()  # nothing written when one batch conflicts
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_empty_events_are_refused(tmp_path: Path, tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = tables
    with pytest.raises(RecopsError, match="no events"):
        write_batches(events.iloc[:0], catalog, tmp_path, daily=True)


def test_limit_days(tables: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    events, catalog = tables
    kept, cat = limit_days(events, catalog, 2)
    assert set(kept["ts"].dt.date) == {date(2026, 1, 1), date(2026, 1, 2)}
    assert "i00055" in set(cat["item_id"]) and "i00059" not in set(cat["item_id"])
    one, _ = limit_days(events, catalog, 1)
    assert set(one["ts"].dt.date) == {date(2026, 1, 1)}
    with pytest.raises(RecopsError, match="--limit-days"):
        limit_days(events, catalog, 0)
