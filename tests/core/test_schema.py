"""Schema coercion: exact columns and dtypes, errors that name the offending columns, timestamps in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.schema import (
    CATALOG_COLUMN_NAMES,
    CATALOG_COLUMNS,
    EVENT_COLUMN_NAMES,
    EVENT_COLUMNS,
    REQUIRED_EVENT_COLUMNS,
    SchemaError,
    batch_file,
    coerce_catalog,
    coerce_events,
    to_utc,
)


def raw_events() -> pd.DataFrame:
    """Events the way a CSV export delivers them: int ids, text timestamps, shuffled and extra columns."""
    return pd.DataFrame(
        {
            "extra": ["x", "y", "z"],
            "ts": ["2026-01-01 10:00:00", "2026-01-01T11:30:00Z", "2026-01-01T12:00:00+02:00"],
            "user_id": [1, 2, 2],
            "item_id": [10, 11, 10],
            "event_type": ["view", "click", "purchase"],
            "event_id": ["e1", "e2", "e3"],
            "session_id": ["s1", "s2", "s2"],
            "price": ["9.5", "3", None],
            "quantity": [None, None, 2],
        },
        index=[7, 8, 9],
    )


def raw_catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [10, 11],
            "category": ["shoes", "hats"],
            "brand": ["acme", "bolt"],
            "price": [19.99, 5.0],
            "in_stock": ["yes", "0"],
            "created_at": ["2025-12-01", "2025-12-02T08:00:00"],
        }
    )


def test_coerce_events_gives_exact_columns_and_dtypes() -> None:
    out = coerce_events(raw_events())
    assert tuple(out.columns) == EVENT_COLUMN_NAMES
    assert {c.name: str(out[c.name].dtype) for c in EVENT_COLUMNS} == {c.name: c.dtype for c in EVENT_COLUMNS}
    assert list(out.index) == [0, 1, 2]
    assert out["user_id"].tolist() == ["1", "2", "2"]
    assert out["item_id"].tolist() == ["10", "11", "10"]
    assert out["price"].iloc[0] == 9.5
    assert pd.isna(out["price"].iloc[2])
    assert out["quantity"].tolist()[2] == 2
    assert pd.isna(out["quantity"].iloc[0])


def test_coerce_events_fills_absent_optional_columns_with_nulls() -> None:
    raw = raw_events().drop(columns=["price", "quantity"])
    out = coerce_events(raw)
    assert tuple(out.columns) == EVENT_COLUMN_NAMES
    assert out["price"].dtype == "float64"
    assert out["quantity"].dtype == "Int64"
    assert out["price"].isna().all()
    assert out["quantity"].isna().all()


def test_coerce_catalog_happy_path() -> None:
    out = coerce_catalog(raw_catalog())
    assert tuple(out.columns) == CATALOG_COLUMN_NAMES
    assert {c.name: str(out[c.name].dtype) for c in CATALOG_COLUMNS} == {
        c.name: c.dtype for c in CATALOG_COLUMNS
    }
    assert out["in_stock"].tolist() == [True, False]
    assert out["item_id"].tolist() == ["10", "11"]
    assert out["created_at"].tolist() == [
        pd.Timestamp("2025-12-01", tz="UTC"),
        pd.Timestamp("2025-12-02 08:00", tz="UTC"),
    ]


def test_coerce_catalog_accepts_unknown_prices() -> None:
    out = coerce_catalog(raw_catalog().drop(columns=["price"]))
    assert out["price"].dtype == "float64"
    assert out["price"].isna().all()


def test_coerce_is_idempotent() -> None:
    once = coerce_events(raw_events())
    pd.testing.assert_frame_equal(coerce_events(once), once)


def test_missing_required_columns_are_all_named() -> None:
    with pytest.raises(SchemaError) as info:
        coerce_events(raw_events().drop(columns=["user_id", "ts"]))
    message = str(info.value)
    assert "events" in message
    assert "user_id" in message
    assert "ts" in message
    for present in set(REQUIRED_EVENT_COLUMNS) - {"user_id", "ts"}:
        assert present not in message.split(":", 1)[1]


def test_missing_catalog_column_is_named() -> None:
    with pytest.raises(SchemaError, match=r"catalog: missing required column\(s\): brand"):
        coerce_catalog(raw_catalog().drop(columns=["brand"]))


def test_unparseable_columns_are_named() -> None:
    raw = raw_events()
    raw["ts"] = ["yesterday", "2026-01-01", "2026-01-02"]
    raw["price"] = ["cheap", "1", "2"]
    with pytest.raises(SchemaError) as info:
        coerce_events(raw)
    message = str(info.value)
    assert "cannot be parsed" in message
    assert "ts (datetime64[us, UTC])" in message
    assert "price (float64)" in message
    assert "user_id" not in message
    assert isinstance(info.value, RecopsError)


@pytest.mark.parametrize("values", [["yes", "maybe"], [True, None]])
def test_bad_boolean_column_is_named(values: list[object]) -> None:
    raw = raw_catalog()
    raw["in_stock"] = values
    with pytest.raises(SchemaError, match="in_stock"):
        coerce_catalog(raw)


def test_fractional_quantity_is_refused() -> None:
    raw = raw_events()
    raw["quantity"] = [1.5, None, 1]
    with pytest.raises(SchemaError, match="quantity"):
        coerce_events(raw)


def test_naive_timestamps_are_taken_as_utc() -> None:
    naive = pd.Series([datetime(2026, 3, 1, 9, 30), datetime(2026, 3, 1, 23, 59, 59)])
    out = to_utc(naive)
    assert str(out.dtype) == "datetime64[us, UTC]"
    assert out.tolist() == [
        pd.Timestamp("2026-03-01 09:30", tz="UTC"),
        pd.Timestamp("2026-03-01 23:59:59", tz="UTC"),
    ]
    text = to_utc(pd.Series(["2026-03-01 09:30:00"]))
    assert text.iloc[0] == pd.Timestamp("2026-03-01 09:30", tz="UTC")


def test_aware_timestamps_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    out = to_utc(
        pd.Series([datetime(2026, 3, 1, 12, 0, tzinfo=plus_two), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)])
    )
    assert out.tolist() == [
        pd.Timestamp("2026-03-01 10:00", tz="UTC"),
        pd.Timestamp("2026-03-01 12:00", tz="UTC"),
    ]
    berlin = pd.Series(pd.to_datetime(["2026-07-01 12:00"])).dt.tz_localize("Europe/Berlin")
    assert to_utc(berlin).iloc[0] == pd.Timestamp("2026-07-01 10:00", tz="UTC")


def test_numeric_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="numeric"):
        to_utc(pd.Series([1_767_225_600, 1_767_225_601]))


def test_events_timestamps_end_up_in_utc() -> None:
    out = coerce_events(raw_events())
    assert out["ts"].tolist() == [
        pd.Timestamp("2026-01-01 10:00", tz="UTC"),
        pd.Timestamp("2026-01-01 11:30", tz="UTC"),
        pd.Timestamp("2026-01-01 10:00", tz="UTC"),
    ]


def test_batch_file_prefers_parquet_then_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"events\.parquet or events\.csv"):
        batch_file(tmp_path, "events")
    (tmp_path / "events.csv").write_text("event_id\n")
    assert batch_file(tmp_path, "events") == tmp_path / "events.csv"
    (tmp_path / "events.parquet").write_bytes(b"")
    assert batch_file(tmp_path, "events") == tmp_path / "events.parquet"


# --------------------------------------------------------------------------------------------- column rules


def test_text_columns_come_from_the_schema() -> None:
    from core.schema import text_columns

    assert text_columns("events") == ("event_id", "user_id", "item_id", "session_id")
    assert text_columns("catalog") == ("item_id", "category", "brand")
    assert text_columns("catalog", ("id",)) == ("item_id",)


@pytest.mark.parametrize(
    "value", ["", "  ", "NA", "na", "N/A", " n/a ", "null", "NULL", "None", "nan", "NaN"]
)
def test_null_tokens_are_missing_ids(value: str) -> None:
    from core.schema import null_id_mask

    assert null_id_mask(pd.Series([value, "u1"], dtype="string")).tolist() == [True, False]


@pytest.mark.parametrize("value", ["NAB", "nano", "Nina", "0", "-", "none1"])
def test_ids_that_only_look_like_null_tokens_are_ids(value: str) -> None:
    from core.schema import null_id_mask

    assert not null_id_mask(pd.Series([value], dtype="string")).iloc[0]


@pytest.mark.parametrize(
    ("value", "unsafe"),
    [
        ("-1", False),
        ("+3.5", False),
        ("-2e5", False),
        (".5", False),
        ("1-2", False),
        ("a=b", False),
        ("=1+1", True),
        ("-2+3", True),
        ("+cmd", True),
        ("@SUM(A1)", True),
        ("\t=1", True),
        ("\rx", True),
        ("-", True),
        ("-1\n", True),  # a trailing newline does not make a number
        ("   ", True),
    ],
)
def test_unsafe_text_rule(value: str, unsafe: bool) -> None:
    from core.schema import unsafe_text_mask

    assert unsafe_text_mask(pd.Series([value, None], dtype="string")).tolist() == [unsafe, False]


def test_length_rule_and_problem_report() -> None:
    from core.schema import MAX_TEXT_LENGTH, text_rule_problems, too_long_mask

    values = pd.Series(["x" * MAX_TEXT_LENGTH, "x" * (MAX_TEXT_LENGTH + 1), None], dtype="string")
    assert too_long_mask(values).tolist() == [False, True, False]
    events = coerce_events(raw_events())
    assert text_rule_problems("events", events) == []
    events.loc[0, "user_id"] = "NA"
    events.loc[1, "session_id"] = "=cmd()"
    problems = text_rule_problems("events", events)
    assert len(problems) == 2
    assert problems[0].startswith("events.user_id: 1 value(s) missing") and "'NA'" in problems[0]
    assert problems[1].startswith("events.session_id: 1 value(s) spreadsheet-formula")
    catalog = coerce_catalog(raw_catalog())
    catalog.loc[0, "category"] = "NA"  # a label, not an id: "NA" may be a real category name
    assert text_rule_problems("catalog", catalog) == []


def test_timestamp_text_rule() -> None:
    from core.schema import parse_timestamp_text

    text = pd.Series(
        [
            "2026-01-01",
            " 2026-01-01T10:00Z",
            "2026-01-01 10:00:00.5+02:00",
            "2026-01-01T10",
            "01/02/2026",
            None,
        ]
    )
    parsed = parse_timestamp_text(text)
    assert parsed.tolist()[:3] == [
        pd.Timestamp("2026-01-01", tz="UTC"),
        pd.Timestamp("2026-01-01 10:00", tz="UTC"),
        pd.Timestamp("2026-01-01 08:00:00.5", tz="UTC"),
    ]
    assert parsed.iloc[3:].isna().all()  # an hour without minutes, a US date and a null
    with pytest.raises(ValueError, match="not ISO-8601"):
        to_utc(pd.Series(["2026-01-01", "01/02/2026"]))


def test_bool_text_rule() -> None:
    raw = raw_catalog()
    raw["in_stock"] = ["T", "n"]
    assert coerce_catalog(raw)["in_stock"].tolist() == [True, False]
