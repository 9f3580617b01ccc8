"""Bad input files: every case raises a RecopsError whose message names the file (and the column)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import RecopsError
from pipelines.datasets.loaders import load_movielens_100k
from pipelines.datasets.loaders.common import MAX_STRING_LENGTH, DataFileError, read_table
from pipelines.datasets.loaders.generic import load_generic

MAPPING = {"user_id": "user", "item_id": "item", "ts": "time", "price": "price"}
GOOD_ROWS = "user,item,time,price\nu1,i1,2024-01-01T10:00:00Z,1.5\nu2,i2,2024-01-01T11:00:00Z,2\n"


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path, **kwargs: object) -> None:
    load_generic(path, mapping=MAPPING, **kwargs)  # type: ignore[arg-type]


def expect_error(path: Path, *fragments: str, **kwargs: object) -> str:
    with pytest.raises(RecopsError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_good_rows_load(tmp_path: Path) -> None:
    load(write(tmp_path, GOOD_ROWS))  # the baseline the bad cases below break


def test_missing_file_and_folder(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.csv", "not found")
    with pytest.raises(DataFileError, match="is a folder"):
        read_table(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    expect_error(write(tmp_path, ""), "empty (0 bytes)")
    expect_error(write(tmp_path, "", "events.parquet"), "empty (0 bytes)")


def test_blank_file(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "\n\n"), "no header")


def test_header_only(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "user,item,time,price\n"), "header but no data rows")


def test_header_only_parquet(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame({"user": pd.Series([], dtype=str), "item": [], "time": [], "price": []}).to_parquet(path)
    expect_error(path, "no data rows")


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.read_csv(write(tmp_path, GOOD_ROWS)).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(path, "not a readable Parquet file")


def test_corrupt_parquet_with_magic_but_other_suffix(tmp_path: Path) -> None:
    path = tmp_path / "events.bin"
    path.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    expect_error(path, "not a readable Parquet file")


def test_utf16_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(GOOD_ROWS.encode("utf-16"))
    expect_error(path, "UTF-16")


def test_utf16_without_bom(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(GOOD_ROWS.encode("utf-16-le"))
    expect_error(path, "NUL bytes")


def test_latin1_bytes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes((GOOD_ROWS + "Jos\xe9,caf\xe9,2024-01-02T00:00:00Z,1\n").encode("latin-1"))
    expect_error(path, "not valid UTF-8", "--encoding")


def test_unknown_encoding(tmp_path: Path) -> None:
    expect_error(write(tmp_path, GOOD_ROWS), "unknown encoding", encoding="no-such-codec")


def test_ragged_rows(tmp_path: Path) -> None:
    expect_error(
        write(tmp_path, GOOD_ROWS + "u3,i3,2024-01-01T12:00:00Z,1,extra,fields\n"), "not a well-formed"
    )


def test_missing_mapped_column(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ROWS.replace("time", "when"))
    expect_error(path, "'time' (for ts)", "'when'")


@pytest.mark.parametrize("missing", ["", "NA", "null", " n/a "])
def test_missing_item_ids_are_refused(tmp_path: Path, missing: str) -> None:
    path = write(tmp_path, GOOD_ROWS + f"u3,{missing},2024-01-01T12:00:00Z,1\n")
    expect_error(path, "'item'", "missing", "null token", "row(s) 3")


def test_missing_user_ids_are_refused_on_request(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_ROWS + ",i3,2024-01-01T12:00:00Z,1\nNULL,i4,2024-01-01T13:00:00Z,1\n")
    expect_error(path, "2 row(s) have no user id", "row(s) 3, 4", "--anonymous", anonymous="refuse")


def test_mixed_timestamp_formats(tmp_path: Path) -> None:
    message = expect_error(
        write(tmp_path, GOOD_ROWS + "u3,i3,01/02/2024 10:00,1\nu4,i4,1704103200,1\n"),
        "'time'",
        "not ISO-8601",
        "row(s) 3, 4",
    )
    assert "'01/02/2024 10:00'" in message


def test_numbers_where_iso_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,time\nu1,i1,1704103200\n")
    with pytest.raises(RecopsError, match="--ts-unit"):
        load_generic(path, mapping={"user_id": "user", "item_id": "item", "ts": "time"})


def test_wrong_epoch_unit(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,time\nu1,i1,1704103200000\n")
    with pytest.raises(RecopsError, match=r"outside 1970\.\.2100.*--ts-unit s"):
        load_generic(path, mapping={"user_id": "user", "item_id": "item", "ts": "time"}, ts_unit="s")


@pytest.mark.parametrize("bad", ["NaN", "nan", "inf", "-Infinity"])
def test_nan_or_infinite_price_in_csv(tmp_path: Path, bad: str) -> None:
    expect_error(
        write(tmp_path, GOOD_ROWS + f"u3,i3,2024-01-01T12:00:00Z,{bad}\n"), "'price'", "NaN or infinite", "3"
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_price_in_parquet(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "events.parquet"
    frame = pd.read_csv(write(tmp_path, GOOD_ROWS))
    table = pa.Table.from_pandas(frame.drop(columns="price"), preserve_index=False)
    # pyarrow directly: pandas' own writer would store NaN as null (a missing price, which is allowed)
    table = table.append_column("price", pa.array([1.0, bad], type=pa.float64(), from_pandas=False))
    pq.write_table(table, path)
    expect_error(path, "'price'", "NaN or infinite", "row(s) 2")


def test_null_price_in_parquet_is_missing_not_bad(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    frame = pd.read_csv(write(tmp_path, GOOD_ROWS))
    frame["price"] = pd.array([1.0, None], dtype="Float64")
    frame.to_parquet(path)
    events, _ = load_generic(path, mapping=MAPPING)
    assert events["price"].isna().sum() == 1


def test_text_and_negative_price(tmp_path: Path) -> None:
    expect_error(write(tmp_path, GOOD_ROWS + "u3,i3,2024-01-01T12:00:00Z,cheap\n"), "'price'", "not a number")
    expect_error(write(tmp_path, GOOD_ROWS + "u3,i3,2024-01-01T12:00:00Z,-2\n"), "'price'", "negative")


def test_huge_string_in_id(tmp_path: Path) -> None:
    huge = "x" * 20_000
    message = expect_error(
        write(tmp_path, GOOD_ROWS + f"u3,{huge},2024-01-01T12:00:00Z,1\n"), "'item'", "row(s) 3"
    )
    assert f"longer than {MAX_STRING_LENGTH}" in message and "20,000" in message
    assert len(message) < 500  # the value itself is not echoed


@pytest.mark.parametrize(
    "value", ['=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\t=1+1", "=1"]
)
def test_spreadsheet_formula_text_is_refused(tmp_path: Path, value: str) -> None:
    path = tmp_path / "events.parquet"  # Parquet keeps the value byte for byte
    pd.DataFrame(
        {"user": ["u1", value], "item": ["i1", "i2"], "time": ["2024-01-01", "2024-01-02"]}
    ).to_parquet(path)
    with pytest.raises(RecopsError) as info:
        load_generic(path, mapping={"user_id": "user", "item_id": "item", "ts": "time"})
    assert "'user'" in str(info.value) and "formula" in str(info.value) and str(path) in str(info.value)


def test_formula_in_catalog_category(tmp_path: Path) -> None:
    events = write(tmp_path, GOOD_ROWS)
    catalog = write(tmp_path, "sku,cat\ni1,=cmd()\n", "catalog.csv")
    with pytest.raises(RecopsError, match=r"catalog\.csv: column 'cat'.*formula"):
        load(events, catalog_path=catalog, catalog_mapping={"item_id": "sku", "category": "cat"})


def test_duplicate_catalog_ids(tmp_path: Path) -> None:
    events = write(tmp_path, GOOD_ROWS)
    catalog = write(tmp_path, "sku\ni1\ni1\n", "catalog.csv")
    with pytest.raises(RecopsError, match=r"catalog\.csv.*duplicate item id"):
        load(events, catalog_path=catalog, catalog_mapping={"item_id": "sku"})


def test_unknown_event_types(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,time,kind\nu1,i1,2024-01-01,buy\nu1,i2,2024-01-02,view\n")
    with pytest.raises(RecopsError, match=r"column 'kind'.*unknown event type.*'buy'"):
        load_generic(path, mapping={"user_id": "user", "item_id": "item", "ts": "time", "event_type": "kind"})


def test_fractional_quantity(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,time,q\nu1,i1,2024-01-01,1.5\n")
    with pytest.raises(RecopsError, match=r"column 'q'.*whole numbers"):
        load_generic(path, mapping={"user_id": "user", "item_id": "item", "ts": "time", "quantity": "q"})


def test_fixed_loader_names_the_bad_file(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.item").write_text("item_id:token\tclass:token_seq\n2\tDrama\n")
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    with pytest.raises(RecopsError, match=r"ml-100k\.inter: has a header but no data rows"):
        load_movielens_100k(tmp_path)
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t9\t881250949\n"
    )
    with pytest.raises(RecopsError, match=r"ml-100k\.inter: column 'rating'.*out-of-range"):
        load_movielens_100k(tmp_path)
