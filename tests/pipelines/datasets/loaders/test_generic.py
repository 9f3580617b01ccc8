"""Generic loader: happy paths on small CSV and Parquet files written in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.privacy import is_pseudonymized, pseudonymize_id
from pipelines.datasets.loaders.common import DataFileError, LoadNotes, read_table
from pipelines.datasets.loaders.finishing import ANONYMOUS_PREFIX
from pipelines.datasets.loaders.generic import load_generic, parse_event_type_map, parse_mapping
from tests.pipelines.datasets.loaders.helpers import TEST_KEY, assert_schema

MAPPING = {"user_id": "customer", "item_id": "sku", "ts": "time"}


def shop_log() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer": ["c1", "c1", "c1", "c2", "c2", "c1"],
            "sku": ["A", "B", "A", "B", "C", "C"],
            "time": [
                "2024-03-01T10:00:00Z",
                "2024-03-01T10:10:00Z",
                "2024-03-01T11:00:00Z",  # 50 min after the previous c1 event: a new session
                "2024-03-01 12:00:00",  # naive: UTC
                "2024-03-02T00:30:00+02:00",  # = 2024-03-01T22:30Z
                "2024-03-02T09:00:00Z",
            ],
            "action": ["0", "1", "2", "0", "3", "3"],
            "amount": ["9.5", "", "9.5", "20", "3", "3"],
            "qty": ["", "", "1", "", "2", "1"],
        }
    )


def test_csv_with_constant_type_sessions_ids_and_minimal_catalog(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    shop_log().to_csv(path, index=False)
    events, catalog = load_generic(path, mapping=MAPPING, key=None)
    assert_schema(events, catalog)
    assert len(events) == 6
    assert (events["event_type"] == "purchase").all()
    c1 = events[events["user_id"] == "c1"].sort_values("ts")
    assert c1["session_id"].tolist() == ["c1:0", "c1:0", "c1:1", "c1:2"]
    assert events.loc[events["item_id"] == "C", "ts"].min() == pd.Timestamp("2024-03-01T22:30Z")
    assert events["event_id"].str.fullmatch(r"e[0-9a-f]{16}").all()
    assert events["price"].isna().all() and events["quantity"].isna().all()
    assert sorted(catalog["item_id"]) == ["A", "B", "C"]
    assert (catalog["category"] == "unknown").all() and (catalog["brand"] == "unknown").all()
    assert catalog["price"].isna().all() and catalog["in_stock"].all()
    assert catalog.set_index("item_id").loc["A", "created_at"] == pd.Timestamp("2024-03-01T10:00Z")
    again, _ = load_generic(path, mapping=MAPPING, key=None)
    pd.testing.assert_frame_equal(again, events)  # deterministic ids and sessions


def test_parquet_with_every_field_and_event_type_map(tmp_path: Path) -> None:
    log = shop_log()
    log["time"] = pd.to_datetime(log["time"], utc=True, format="ISO8601")
    log["amount"] = pd.to_numeric(log["amount"])  # empty -> null
    log["qty"] = pd.array([None, None, 1, None, 2, 1], dtype="Int64")
    log["order"] = ["o1", "o1", "o2", "o3", "o4", "o5"]
    log["id"] = [f"x{i}" for i in range(6)]
    path = tmp_path / "log.parquet"
    log.to_parquet(path, index=False)
    mapping = {
        **MAPPING,
        "event_type": "action",
        "price": "amount",
        "quantity": "qty",
        "session_id": "order",
        "event_id": "id",
    }
    codes = parse_event_type_map("0=view,1=click,2=add_to_cart,3=purchase")
    events, catalog = load_generic(path, mapping=mapping, key=TEST_KEY, event_type_map=codes)
    assert_schema(events, catalog)
    by_id = events.set_index("event_id")
    assert by_id.loc["x0", "event_type"] == "view" and by_id.loc["x2", "event_type"] == "add_to_cart"
    assert by_id.loc["x0", "price"] == 9.5 and np.isnan(by_id.loc["x1", "price"])
    assert by_id.loc["x4", "quantity"] == 2 and pd.isna(by_id.loc["x0", "quantity"])
    assert by_id.loc["x3", "session_id"] == "o3"
    assert by_id.loc["x0", "user_id"] == pseudonymize_id("c1", TEST_KEY)


def test_catalog_file_with_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    shop_log().to_csv(path, index=False, sep="\t")  # delimiter is sniffed
    products = pd.DataFrame(
        {
            "code": ["A", "B", "Z"],
            "family": ["shoes", "socks", "hats"],
            "maker": ["acme", "", "hatco"],
            "list_price": ["10", "2.5", ""],
            "available": ["yes", "no", "1"],
            "since": ["2024-01-01T00:00:00Z", "", "2023-12-31"],  # empty: first event of the item
        }
    )
    products.to_csv(tmp_path / "products.csv", index=False, sep=";")
    catalog_map = parse_mapping(
        "item_id=code,category=family,brand=maker,price=list_price,in_stock=available,created_at=since",
        allowed=("item_id", "category", "brand", "price", "in_stock", "created_at"),
        required=("item_id",),
    )
    events, catalog = load_generic(
        path, mapping=MAPPING, catalog_path=tmp_path / "products.csv", catalog_mapping=catalog_map
    )
    assert_schema(events, catalog)
    cat = catalog.set_index("item_id")
    assert list(cat.index) == ["A", "B", "C", "Z"]  # Z never seen is kept; C (not in the file) is added
    assert cat.loc["A", "category"] == "shoes" and cat.loc["B", "brand"] == "unknown"
    assert cat.loc["A", "price"] == 10.0 and np.isnan(cat.loc["Z", "price"])
    assert not cat.loc["B", "in_stock"] and cat.loc["C", "in_stock"]
    assert cat.loc["Z", "created_at"] == pd.Timestamp("2023-12-31", tz="UTC")
    assert cat.loc["B", "created_at"] == pd.Timestamp("2024-03-01T10:10Z")
    assert cat.loc["C", "category"] == "unknown"


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 1000)])
def test_epoch_units(tmp_path: Path, unit: str, scale: int) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame(
        {"u": ["a", "b"], "i": ["x", "y"], "t": [1_700_000_000 * scale, 1_700_000_060.5 * scale]}
    ).to_csv(path, index=False)
    events, _ = load_generic(path, mapping={"user_id": "u", "item_id": "i", "ts": "t"}, ts_unit=unit)
    assert events["ts"].tolist() == [
        pd.Timestamp(1_700_000_000, unit="s", tz="UTC"),
        pd.Timestamp(1_700_000_060_500, unit="ms", tz="UTC"),
    ]


def test_plain_negative_numbers_are_not_formulas(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    pd.DataFrame({"u": ["-1", "+2"], "i": ["-3.5", "x"], "t": ["2024-01-01", "2024-01-02"]}).to_csv(
        path, index=False
    )
    events, _ = load_generic(path, mapping={"user_id": "u", "item_id": "i", "ts": "t"})
    assert set(events["user_id"]) == {"-1", "+2"}


def test_latin1_file_loads_with_encoding(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes("u,i,t\nJosé,café,2024-01-01\n".encode("latin-1"))
    events, catalog = load_generic(
        path, mapping={"user_id": "u", "item_id": "i", "ts": "t"}, encoding="latin-1"
    )
    assert events["user_id"].tolist() == ["José"] and catalog["item_id"].tolist() == ["café"]
    assert read_table(path, encoding="latin-1").shape == (1, 3)


def test_mapping_parser() -> None:
    fields = ("user_id", "item_id", "ts", "price")
    assert parse_mapping(" user_id = uid , item_id=sku,ts=when ", allowed=fields, required=fields[:3]) == {
        "user_id": "uid",
        "item_id": "sku",
        "ts": "when",
    }
    with pytest.raises(DataFileError, match="required field"):
        parse_mapping("user_id=uid", allowed=fields, required=fields[:3])
    with pytest.raises(DataFileError, match="unknown field 'colour'"):
        parse_mapping("user_id=uid,item_id=i,ts=t,colour=c", allowed=fields, required=fields[:3])
    with pytest.raises(DataFileError, match="not FIELD=COLUMN"):
        parse_mapping("user_id", allowed=fields, required=())
    with pytest.raises(DataFileError, match="not an event type"):
        parse_event_type_map("0=viewed")


def test_event_type_column_and_constant_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    shop_log().to_csv(path, index=False)
    with pytest.raises(DataFileError, match="either"):
        load_generic(path, mapping={**MAPPING, "event_type": "action"}, event_type="view")
    with pytest.raises(DataFileError, match="--event-type"):
        load_generic(path, mapping=MAPPING, event_type="bought")


# ------------------------------------------------------------------------------ anonymous rows and repeats

ANON_LOG = (
    "shopper;sku;day;basket\n"
    "c1;A;2024-03-01;b1\n"
    "NA;B;2024-03-01;b2\n"
    "null;C;2024-03-01;b2\n"
    ";A;2024-03-02;b3\n"
    " N/A ;B;2024-03-02;\n"
    "c2;B;2024-03-02;b4\n"
)
ANON_MAP = {"user_id": "shopper", "item_id": "sku", "ts": "day", "session_id": "basket"}


def _anon_log(tmp_path: Path) -> Path:
    path = tmp_path / "log.csv"
    path.write_text(ANON_LOG)
    return path


def test_null_tokens_are_anonymous_rows_and_become_one_user_per_session(tmp_path: Path) -> None:
    notes = LoadNotes()
    events, _ = load_generic(_anon_log(tmp_path), mapping=ANON_MAP, key=TEST_KEY, notes=notes)
    assert (notes.anonymous_rows, notes.anonymous_as_session, notes.anonymous_dropped) == (4, 3, 1)
    assert len(events) == 5  # the row without user and session is dropped
    assert "NA" not in set(events["user_id"]) and is_pseudonymized(events["user_id"])
    b2 = events[events["session_id"] == "b2"]["user_id"]
    assert b2.nunique() == 1 and b2.iloc[0] == pseudonymize_id(ANONYMOUS_PREFIX + "b2", TEST_KEY)
    assert "anonymous rows (no user id): 4; 3 given a user per session" in "\n".join(notes.lines())


def test_anonymous_rows_without_a_session_column_are_dropped_or_refused(tmp_path: Path) -> None:
    mapping = {k: v for k, v in ANON_MAP.items() if k != "session_id"}
    notes = LoadNotes()
    events, _ = load_generic(_anon_log(tmp_path), mapping=mapping, notes=notes)
    assert len(events) == 2 and set(events["user_id"]) == {"c1", "c2"}
    assert (notes.anonymous_rows, notes.anonymous_dropped) == (4, 4)
    with pytest.raises(DataFileError, match="needs a session_id column"):
        load_generic(_anon_log(tmp_path), mapping=mapping, anonymous="session")
    with pytest.raises(DataFileError, match=r"4 row\(s\) have no user id"):
        load_generic(_anon_log(tmp_path), mapping=ANON_MAP, anonymous="refuse")
    dropped, _ = load_generic(_anon_log(tmp_path), mapping=ANON_MAP, anonymous="drop")
    assert len(dropped) == 2


def test_missing_session_ids_get_gap_sessions(tmp_path: Path) -> None:
    events, _ = load_generic(_anon_log(tmp_path), mapping=ANON_MAP, anonymous="drop")
    assert events.set_index("user_id").loc["c2", "session_id"] == "b4"
    path = tmp_path / "s.csv"
    path.write_text("u;i;t;s\nc1;A;2024-03-01T10:00Z;NA\nc1;B;2024-03-01T10:05Z;s9\n")
    mixed, _ = load_generic(path, mapping={"user_id": "u", "item_id": "i", "ts": "t", "session_id": "s"})
    assert mixed["session_id"].tolist() == ["c1:0", "s9"]


def _day_log(tmp_path: Path) -> Path:
    path = tmp_path / "days.csv"
    path.write_text(
        "u,i,t,p,q\n"
        "c1,A,2024-03-01,2.0,1\n"
        "c1,A,2024-03-01,4.0,3\n"  # same shopper, item and day: the same event twice at day resolution
        "c1,A,2024-03-01,,\n"
        "c1,A,2024-03-02,2.0,\n"
        "c2,A,2024-03-01,,\n"
    )
    return path


DAY_MAP = {"user_id": "u", "item_id": "i", "ts": "t", "price": "p", "quantity": "q"}


def test_repeats_at_day_resolution_become_quantity(tmp_path: Path) -> None:
    notes = LoadNotes()
    events, _ = load_generic(_day_log(tmp_path), mapping=DAY_MAP, notes=notes)
    assert (notes.resolution, notes.repeats_merged) == ("day", 2)
    merged = events[(events["user_id"] == "c1") & (events["ts"] == pd.Timestamp("2024-03-01", tz="UTC"))]
    assert len(merged) == 1
    assert merged["quantity"].iloc[0] == 5  # 1 + 3 + 1 (unknown quantity counts 1)
    assert merged["price"].iloc[0] == pytest.approx((2.0 * 1 + 4.0 * 3) / 4)  # weighted by known units
    single = events[events["user_id"] == "c2"]
    assert pd.isna(single["quantity"].iloc[0]) and np.isnan(single["price"].iloc[0])  # untouched
    assert "2 row(s) repeating" in "\n".join(notes.lines())
    kept_notes = LoadNotes()
    kept, _ = load_generic(_day_log(tmp_path), mapping=DAY_MAP, repeats="keep", notes=kept_notes)
    assert len(kept) == 5 and kept_notes.repeats_kept == 2 and kept["event_id"].is_unique


def test_repeats_at_second_resolution_are_kept_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "secs.csv"
    path.write_text("u,i,t\nc1,A,2024-03-01T10:00:01Z\nc1,A,2024-03-01T10:00:01Z\n")
    notes = LoadNotes()
    events, _ = load_generic(path, mapping={"user_id": "u", "item_id": "i", "ts": "t"}, notes=notes)
    assert len(events) == 2 and (notes.resolution, notes.repeats_kept) == ("second", 1)
    summed, _ = load_generic(path, mapping={"user_id": "u", "item_id": "i", "ts": "t"}, repeats="sum")
    assert len(summed) == 1 and summed["quantity"].iloc[0] == 2


def test_zero_price_and_quantity_are_unknown_and_repeated_event_ids_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.csv"
    path.write_text("u,i,t,p,q,id\nc1,A,2024-03-01T10:00Z,0,0,e1\nc2,B,2024-03-01T11:00Z,1.5,2,e1\n")
    mapping = {"user_id": "u", "item_id": "i", "ts": "t", "price": "p", "quantity": "q"}
    events, _ = load_generic(path, mapping=mapping)
    first = events.iloc[0]
    assert np.isnan(first["price"]) and pd.isna(first["quantity"])  # the gate wants price > 0, quantity >= 1
    with pytest.raises(DataFileError, match=r"z\.csv: event ids repeat.*'e1'"):
        load_generic(path, mapping={**mapping, "event_id": "id"})
