"""Landing batches: read raw (values kept as sent, unreadable files refused with the file named) and
written whole by the one writer (deterministic, idempotent, refusing what the gate would refuse)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import RecopsError
from core.schema import coerce_events
from pipelines.batch_io import BadBatchFile, BatchRuleError, batch_files, read_batch, write_batch_files
from pipelines.batch_io import write_batch as write_landing_batch
from tests.factories import make_catalog, make_events, write_batch


def test_reads_parquet_batch_with_id_and_files(tmp_path: Path) -> None:
    batch = write_batch(tmp_path)
    raw = read_batch(batch)
    assert raw.batch_id == "2026-01-01"
    assert len(raw.events) == 500 and len(raw.catalog) == 50
    assert [p.name for p in raw.files] == ["events.parquet", "catalog.parquet"]
    assert raw.window_start is None and raw.window_end is None


def test_csv_values_stay_text(tmp_path: Path) -> None:
    batch = tmp_path / "b1"
    batch.mkdir()
    (batch / "events.csv").write_text("event_id,price,user_id\n007,nan,\n8,inf,NULL\n", encoding="utf-8")
    make_catalog().to_csv(batch / "catalog.csv", index=False)
    raw = read_batch(batch)
    assert raw.events["event_id"].tolist() == ["007", "8"]  # ids keep leading zeros
    assert raw.events["price"].tolist() == ["nan", "inf"]  # NaN/inf reach the checks as written
    assert raw.events["user_id"].isna().tolist() == [True, False]  # only an empty cell is null
    assert raw.events["user_id"].iloc[1] == "NULL"


def test_parquet_nan_kept_apart_from_null(tmp_path: Path) -> None:
    batch = write_batch(tmp_path)
    table = pa.table({"price": pa.array([1.0, float("nan"), None], type=pa.float64(), from_pandas=False)})
    pq.write_table(table, batch / "events.parquet")
    values = read_batch(batch).events["price"].tolist()
    assert values[0] == 1.0 and values[2] is None
    assert isinstance(values[1], float) and np.isnan(values[1])


def test_manifest_window(tmp_path: Path) -> None:
    batch = write_batch(tmp_path)
    (batch / "manifest.json").write_text(
        json.dumps({"window_start": "2026-01-01T06:00:00Z", "window_end": "2026-01-01T18:00:00", "rows": 3})
    )
    raw = read_batch(batch)
    assert raw.window_start == datetime(2026, 1, 1, 6, tzinfo=UTC)
    assert raw.window_end == datetime(2026, 1, 1, 18, tzinfo=UTC)
    assert raw.manifest["rows"] == 3
    assert raw.files[-1].name == "manifest.json"


def _bad_parquet_truncated(batch: Path) -> None:
    data = (batch / "events.parquet").read_bytes()
    (batch / "events.parquet").write_bytes(data[: len(data) // 2])


def _bad_empty(batch: Path) -> None:
    (batch / "catalog.parquet").write_bytes(b"")


def _csv(batch: Path, text: str, encoding: str) -> None:
    (batch / "events.parquet").unlink()
    (batch / "events.csv").write_bytes(text.encode(encoding))


HEADER = "event_id,user_id,item_id,event_type,ts,session_id\n"
ROW = "e1,Zoë,i00001,view,2026-01-01T00:00:00Z,s1\n"


@pytest.mark.parametrize(
    ("corrupt", "file", "message"),
    [
        (_bad_parquet_truncated, "events.parquet", "not a readable Parquet file"),
        (_bad_empty, "catalog.parquet", "empty (0 bytes)"),
        (lambda b: _csv(b, HEADER + ROW, "latin-1"), "events.csv", "not valid UTF-8"),
        (lambda b: _csv(b, HEADER + ROW, "utf-16"), "events.csv", "UTF-16"),
        (lambda b: _csv(b, HEADER, "utf-8"), "events.csv", "header but no rows"),
        (lambda b: _csv(b, "\n\n", "utf-8"), "events.csv", "no header"),
        (lambda b: (b / "catalog.parquet").unlink(), "catalog.parquet or catalog.csv", "has no catalog"),
        (lambda b: (b / "manifest.json").write_text("{oops"), "manifest.json", "not a valid UTF-8 JSON"),
        (lambda b: (b / "manifest.json").write_text('{"window_start": "soon"}'), "manifest.json", "ISO-8601"),
    ],
    ids=[
        "truncated-parquet",
        "empty-file",
        "latin-1-csv",
        "utf-16-csv",
        "header-only",
        "blank",
        "missing",
        "json",
        "w",
    ],
)
def test_bad_files_raise_clear_error(tmp_path: Path, corrupt: object, file: str, message: str) -> None:
    batch = write_batch(tmp_path)
    assert callable(corrupt)
    corrupt(batch)
    with pytest.raises(BadBatchFile) as info:
        read_batch(batch)
    assert file in str(info.value)
    assert message in str(info.value)


def test_duplicate_parquet_column_names_are_refused(tmp_path: Path) -> None:
    batch = write_batch(tmp_path)
    pq.write_table(
        pa.table([pa.array(["a"]), pa.array(["b"])], names=["item_id", "item_id"]), batch / "catalog.parquet"
    )
    with pytest.raises(BadBatchFile, match="duplicate column name"):
        read_batch(batch)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(BadBatchFile, match="batch folder not found"):
        read_batch(tmp_path / "2026-01-01")


def test_a_file_is_not_a_batch_folder(tmp_path: Path) -> None:
    batch = write_batch(tmp_path, date(2026, 1, 1))
    with pytest.raises(BadBatchFile, match=r"events\.parquet is a file; a batch folder .* is expected"):
        read_batch(batch / "events.parquet")


def test_written_parquet_has_page_checksums_and_reads_verify_them(tmp_path: Path) -> None:
    files = batch_files(make_events(), make_catalog())
    target = tmp_path / "2026-01-01"
    assert write_batch_files(target, files)
    events = target / "events.parquet"
    column = pq.ParquetFile(events).metadata.row_group(0).column(0)
    offset = (column.dictionary_page_offset or column.data_page_offset) + column.total_compressed_size - 1
    data = bytearray(events.read_bytes())
    data[offset] ^= 0xFF  # one flipped bit pattern inside a data page
    events.write_bytes(bytes(data))
    with pytest.raises(BadBatchFile, match=r"events\.parquet: not a readable Parquet file .*CRC checksum"):
        read_batch(target)


def test_clean_csv_batch_reads_every_row(tmp_path: Path) -> None:
    batch = tmp_path / date(2026, 1, 1).isoformat()
    batch.mkdir()
    make_events().to_csv(batch / "events.csv", index=False)
    make_catalog().to_csv(batch / "catalog.csv", index=False)
    raw = read_batch(batch)
    assert len(raw.events) == 500
    assert set(raw.events.columns) == set(make_events().columns)
    assert all(isinstance(v, str) for v in raw.events["ts"])


# --------------------------------------------------------------------------------------------- the writer


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_events(n=40), make_catalog()


def test_writer_round_trip_and_manifest(tmp_path: Path) -> None:
    events, catalog = _tables()
    target = write_landing_batch(tmp_path / "2026-01-01", events, catalog, {"window_start": "2026-01-01"})
    assert sorted(p.name for p in target.iterdir()) == ["catalog.parquet", "events.parquet", "manifest.json"]
    raw = read_batch(target)  # the writer's output is what the reader reads
    pd.testing.assert_frame_equal(coerce_events(raw.events), coerce_events(events))
    assert raw.window_start == datetime(2026, 1, 1, tzinfo=UTC)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_writer_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    events, catalog = _tables()
    assert batch_files(events, catalog) == batch_files(events.copy(), catalog.copy())
    target = tmp_path / "b"
    assert write_batch_files(target, batch_files(events, catalog)) is True
    stamp = (target / "events.parquet").stat().st_mtime_ns
    assert write_batch_files(target, batch_files(events, catalog)) is False  # same content: untouched
    assert (target / "events.parquet").stat().st_mtime_ns == stamp


def test_writer_refuses_or_replaces_different_content(tmp_path: Path) -> None:
    events, catalog = _tables()
    target = write_landing_batch(tmp_path / "b", events, catalog)
    before = (target / "events.parquet").read_bytes()
    with pytest.raises(RecopsError, match="already exists with different content"):
        write_landing_batch(target, events.head(10), catalog)
    assert (target / "events.parquet").read_bytes() == before
    write_landing_batch(target, events.head(10), catalog, if_exists="replace")
    assert len(pd.read_parquet(target / "events.parquet")) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("user_id", "NA", "events.user_id: 1 value(s) missing"),
        ("item_id", "=HYPERLINK(1)", "events.item_id: 1 value(s) spreadsheet-formula"),
        ("session_id", "s" * 300, "events.session_id: 1 value(s) longer than 256"),
    ],
)
def test_writer_refuses_what_the_gate_would_refuse(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    events, catalog = _tables()
    events.loc[3, column] = value
    with pytest.raises(BatchRuleError, match="would fail the validation gate") as info:
        write_landing_batch(tmp_path / "b", events, catalog)
    assert message in str(info.value)
    assert not tmp_path.joinpath("b").exists()
