"""The validation gate: clean batches pass (twice), each kind of bad batch is caught and quarantined.

Every bad batch differs from a clean one in one way and must be caught by the expectation one would expect;
its quarantine entry must hold the batch, the unexpected rows, the result JSON and the Data Docs pages,
while ``data/`` and the landing folder stay byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import RecopsError
from pipelines.params import ValidateParams
from pipelines.validate import ValidationFailed, ValidationReport, ensure_valid, validate_batch
from pipelines.validation import guards
from pipelines.validation.suites import EXPECTATIONS_DIR, SuiteError, load_suite
from tests.factories import make_catalog, make_events, write_batch

DAY = date(2026, 1, 1)
NOW = datetime(2026, 1, 2, 1, 0, tzinfo=UTC)  # the morning after the batch's day
HISTORY_DAYS = [date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31)]


@dataclass
class Dirs:
    landing: Path
    data: Path
    quarantine: Path


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    """A data folder with three published days of 500 events (volume median 500) and empty landing."""
    data = tmp_path / "data"
    for i, day in enumerate(HISTORY_DAYS):
        write_batch(data, day, events=make_events(day, seed=i + 1))
    return Dirs(landing=tmp_path / "landing", data=data, quarantine=tmp_path / "quarantine")


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_gate(batch: Path, dirs: Dirs, now: datetime = NOW, **kwargs: object) -> ValidationReport:
    report = validate_batch(
        batch, data_dir=dirs.data, quarantine_dir=dirs.quarantine, params=ValidateParams(), now=now, **kwargs
    )  # type: ignore[arg-type]
    return report


def write_csv_batch(root: Path, events: pd.DataFrame, catalog: pd.DataFrame | None = None) -> Path:
    batch = root / DAY.isoformat()
    batch.mkdir(parents=True, exist_ok=True)
    events.to_csv(batch / "events.csv", index=False)
    (catalog if catalog is not None else make_catalog()).to_csv(batch / "catalog.csv", index=False)
    return batch


# --------------------------------------------------------------------------------------------- clean batches


def test_clean_batch_passes_twice(dirs: Dirs) -> None:
    batch = write_batch(dirs.landing, DAY)
    before = tree_digest(dirs.data)
    first = run_gate(batch, dirs)
    second = run_gate(batch, dirs)
    for report in (first, second):
        assert report.success, report.failure_lines()
        assert report.failures == ()
        assert report.quarantine_path is None and report.result_path is None
        assert report.statistics["evaluated_expectations"] >= 40
        assert report.statistics["gx_expectations"] > 0 and report.statistics["recops_checks"] > 0
        assert report.statistics["unsuccessful_expectations"] == 0
        assert report.statistics["events_rows"] == 500 and report.statistics["catalog_rows"] == 50
        assert report.skipped == ()  # volume history and the day window both apply
    assert first.statistics["evaluated_expectations"] == second.statistics["evaluated_expectations"]
    assert not dirs.quarantine.exists()
    assert tree_digest(dirs.data) == before
    ensure_valid(first)  # does not raise


def test_clean_csv_batch_passes(dirs: Dirs) -> None:
    report = run_gate(write_csv_batch(dirs.landing, make_events(DAY)), dirs)
    assert report.success, report.failure_lines()


def test_without_history_the_volume_check_is_skipped_not_failed(tmp_path: Path) -> None:
    dirs = Dirs(tmp_path / "landing", tmp_path / "no-data", tmp_path / "q")
    report = run_gate(write_batch(dirs.landing, DAY, events=make_events(DAY, n=5000)), dirs)
    assert report.success, report.failure_lines()
    assert any(s.startswith("events.volume") for s in report.skipped)


def test_batch_without_optional_columns_passes(dirs: Dirs) -> None:
    events = make_events(DAY).drop(columns=["price", "quantity"])
    catalog = make_catalog()
    catalog["price"] = np.nan  # unknown prices are allowed in the catalogue
    report = run_gate(write_batch(dirs.landing, DAY, events=events, catalog=catalog), dirs)
    assert report.success, report.failure_lines()


def test_manifest_window_replaces_the_day(dirs: Dirs) -> None:
    batch = write_batch(dirs.landing, DAY)
    (batch / "manifest.json").write_text(
        json.dumps({"window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-01T12:00:00Z"})
    )
    report = run_gate(batch, dirs)
    late = int((make_events(DAY)["ts"] >= pd.Timestamp("2026-01-01T12:00:00Z")).sum())
    window = [f for f in report.failures if f.check_id == "window.ts"]
    assert len(window) == 1 and window[0].unexpected_count == late > 0
    assert "manifest" in window[0].detail


def test_volume_is_judged_only_above_the_floor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i, day in enumerate(HISTORY_DAYS):  # a sparse shop: 6 events a day
        write_batch(data, day, events=make_events(day, n=6, seed=i + 1))
    dirs = Dirs(tmp_path / "landing", data, tmp_path / "q")
    quiet = write_batch(dirs.landing, DAY, events=make_events(DAY, n=1))  # 1 row against a median of 6
    report = run_gate(quiet, dirs)
    assert report.success, report.failure_lines()
    assert any("trailing median of 6 rows is below volume_floor_rows=50" in s for s in report.skipped)
    strict = validate_batch(
        quiet,
        data_dir=dirs.data,
        quarantine_dir=dirs.quarantine,
        params=ValidateParams(volume_floor_rows=0),
        now=NOW,
    )
    assert [f.check_id for f in strict.failures] == ["volume"]


def test_null_tokens_in_ids_fail_and_plain_numbers_pass(dirs: Dirs) -> None:
    events = make_events(DAY)
    events.loc[[3, 4], "user_id"] = ["NA", "null"]
    events.loc[5, "session_id"] = "N/A"
    report = run_gate(write_batch(dirs.landing, DAY, events=events), dirs)
    tokens = {f.check_id: f.unexpected_count for f in report.failures if f.check_id.startswith("null_token")}
    assert tokens == {"null_token.user_id": 2, "null_token.session_id": 1}

    numbers = make_events(DAY)
    catalog = make_catalog()
    catalog.loc[0, "item_id"] = "-1"  # a plain negative number is an id, not a formula
    numbers.loc[numbers["item_id"] == "i00000", "item_id"] = "-1"
    numbers.loc[0, "session_id"] = "+42"
    passed = run_gate(write_batch(tmp_dirs(dirs, "numbers"), DAY, events=numbers, catalog=catalog), dirs)
    assert passed.success, passed.failure_lines()


def test_dates_without_times_parse(dirs: Dirs) -> None:
    events = make_events(DAY).astype({"ts": object})
    events["ts"] = DAY.isoformat()  # a source that only knows the day
    events["event_id"] = [f"d{i}" for i in range(len(events))]
    events = events.drop_duplicates(["user_id", "item_id", "event_type"])
    report = run_gate(write_csv_batch(dirs.landing, events), dirs)
    assert not [f for f in report.failures if f.expectation == "expect_column_values_to_be_parseable"]


def tmp_dirs(dirs: Dirs, name: str) -> Path:
    """A second landing folder beside ``dirs.landing``."""
    return dirs.landing.parent / f"landing-{name}"


# ----------------------------------------------------------------------------------------------- bad batches


def _events(**kw: object) -> pd.DataFrame:
    return make_events(DAY, **kw)  # type: ignore[arg-type]


def null_user_id(root: Path) -> Path:
    ev = _events()
    ev.loc[ev.index[::20], "user_id"] = None  # 5%
    return write_batch(root, DAY, events=ev)


def duplicate_event_ids(root: Path) -> Path:
    ev = _events()
    ev.loc[1:4, "event_id"] = ev.loc[0, "event_id"]
    return write_batch(root, DAY, events=ev)


def unknown_event_type(root: Path) -> Path:
    ev = _events()
    ev.loc[[3, 7], "event_type"] = "wishlist"
    return write_batch(root, DAY, events=ev)


def ts_outside_window(root: Path) -> Path:
    ev = _events()
    ev.loc[:9, "ts"] = pd.Timestamp("2025-12-31T12:00:00Z")
    return write_batch(root, DAY, events=ev)


def ts_in_future(root: Path) -> Path:
    ev = _events()
    ev.loc[:2, "ts"] = pd.Timestamp("2026-01-02T12:00:00Z")  # after NOW, inside the manifest's window
    batch = write_batch(root, DAY, events=ev)
    (batch / "manifest.json").write_text('{"window_start": "2026-01-01", "window_end": "2026-01-03"}')
    return batch


def negative_price(root: Path) -> Path:
    ev = _events()
    ev.loc[[5, 6], "price"] = -3.5
    return write_batch(root, DAY, events=ev)


def _with_price(root: Path, value: float) -> Path:
    batch = write_batch(root, DAY)
    table = pq.read_table(batch / "events.parquet")
    prices = table.column("price").to_pylist()
    prices[10] = value
    index = table.column_names.index("price")
    table = table.set_column(index, "price", pa.array(prices, type=pa.float64(), from_pandas=False))
    pq.write_table(table, batch / "events.parquet")
    return batch


def nan_price(root: Path) -> Path:
    return _with_price(root, float("nan"))


def inf_price(root: Path) -> Path:
    return _with_price(root, float("inf"))


def nan_price_csv(root: Path) -> Path:
    ev = _events().astype({"price": object})
    ev.loc[4, "price"] = "NaN"
    return write_csv_batch(root, ev)


def quantity_zero(root: Path) -> Path:
    ev = _events()
    purchases = ev.index[ev["event_type"] == "purchase"][:2]
    ev.loc[purchases, "quantity"] = 0
    return write_batch(root, DAY, events=ev)


def item_not_in_catalogue(root: Path) -> Path:
    ev = _events()
    ev.loc[[0, 1, 2], "item_id"] = "i99999"
    return write_batch(root, DAY, events=ev)


def missing_required_column(root: Path) -> Path:
    return write_batch(root, DAY, events=_events().drop(columns=["session_id"]))


def unexpected_extra_column(root: Path) -> Path:
    ev = _events()
    ev["email"] = "someone@example.com"
    return write_batch(root, DAY, events=ev)


def mixed_timestamp_formats(root: Path) -> Path:
    ev = _events().astype({"ts": object})
    ev["ts"] = [t.isoformat() for t in _events()["ts"]]
    ev.loc[[1, 2], "ts"] = ["01/01/2026 10:00", "1767261600"]
    return write_csv_batch(root, ev)


def huge_string_id(root: Path) -> Path:
    ev = _events()
    ev.loc[8, "user_id"] = "u" * 100_000
    return write_batch(root, DAY, events=ev)


def formula_text(root: Path) -> Path:
    ev = _events()
    ev.loc[9, "session_id"] = '=HYPERLINK("http://evil.example","click")'
    return write_batch(root, DAY, events=ev)


def blank_item_id(root: Path) -> Path:
    ev = _events()
    ev.loc[11, "item_id"] = "   "  # not null, yet no id
    return write_batch(root, DAY, events=ev)


def volume_spike(root: Path) -> Path:
    return write_batch(root, DAY, events=make_events(DAY, n=3000))


def duplicate_rate_too_high(root: Path) -> Path:
    ev = _events(n=400)
    copies = ev.iloc[:20].copy()  # 20 of 420 rows (4.8%) repeat (user, item, type, ts) under new event ids
    copies["event_id"] = [f"dup-{i}" for i in range(20)]
    ev = pd.concat([ev, copies], ignore_index=True).sort_values("ts", kind="stable").reset_index(drop=True)
    return write_batch(root, DAY, events=ev)


def empty_events(root: Path) -> Path:
    return write_batch(root, DAY, events=_events().iloc[0:0])


def catalogue_duplicate_items(root: Path) -> Path:
    cat = make_catalog()
    cat.loc[1, "item_id"] = cat.loc[0, "item_id"]
    return write_batch(root, DAY, catalog=cat)


def catalogue_bad_in_stock(root: Path) -> Path:
    cat = make_catalog().astype({"in_stock": object})
    cat.loc[[2, 3], "in_stock"] = "maybe"
    return write_csv_batch(root, _events(), cat)


def id_stored_as_integer(root: Path) -> Path:
    ev = _events()
    ev["user_id"] = np.arange(len(ev), dtype=np.int64)
    return write_batch(root, DAY, events=ev)


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], Path]
    table: str
    expectation: str
    column: str | None
    rows: int | None = None  # expected unexpected_count, if exact
    check_id: str | None = None
    now: datetime = NOW


def created_at_out_of_range(root: Path) -> Path:
    """A catalogue timestamp far outside Python's datetime range (seen from a buggy producer)."""
    batch = write_batch(root, DAY)
    table = pq.read_table(batch / "catalog.parquet")
    index = table.column_names.index("created_at")
    values = table.column("created_at").cast(pa.int64()).to_pylist()
    values[0] = values[1] = -(2**62)  # about year -146,000 in microseconds: pandas holds it, str() cannot
    table = table.set_column(
        index, "created_at", pa.array(values, pa.int64()).cast(pa.timestamp("us", "UTC"))
    )
    pq.write_table(table, batch / "catalog.parquet")
    return batch


CASES = [
    Case(null_user_id, "events", "expect_column_values_to_not_be_null", "user_id", rows=25),
    Case(duplicate_event_ids, "events", "expect_column_values_to_be_unique", "event_id", rows=5),
    Case(unknown_event_type, "events", "expect_column_values_to_be_in_set", "event_type", rows=2),
    Case(
        ts_outside_window, "events", "expect_column_values_to_be_between", "ts", rows=10, check_id="window.ts"
    ),
    Case(
        ts_in_future,
        "events",
        "expect_column_values_to_be_between",
        "ts",
        rows=3,
        check_id="not_future.ts",
    ),
    Case(
        negative_price,
        "events",
        "expect_column_values_to_be_between",
        "price",
        rows=2,
        check_id="positive.price",
    ),
    Case(nan_price, "events", "expect_column_values_to_be_finite", "price", rows=1),
    Case(inf_price, "events", "expect_column_values_to_be_finite", "price", rows=1),
    Case(nan_price_csv, "events", "expect_column_values_to_be_finite", "price", rows=1),
    Case(quantity_zero, "events", "expect_column_values_to_be_between", "quantity", rows=2),
    Case(item_not_in_catalogue, "events", "expect_column_values_to_be_in_other_table", "item_id", rows=3),
    Case(missing_required_column, "events", "expect_table_columns_to_match_set", None),
    Case(unexpected_extra_column, "events", "expect_table_columns_to_match_set", None),
    Case(mixed_timestamp_formats, "events", "expect_column_values_to_be_parseable", "ts", rows=2),
    Case(huge_string_id, "events", "expect_column_value_lengths_to_be_between", "user_id", rows=1),
    Case(formula_text, "events", "expect_column_values_to_not_match_regex", "session_id", rows=1),
    Case(blank_item_id, "events", "expect_column_values_to_not_match_regex", "item_id", rows=1),
    Case(volume_spike, "events", "expect_table_row_count_to_be_between", None, check_id="volume"),
    Case(
        duplicate_rate_too_high,
        "events",
        "expect_duplicate_rate_to_be_at_most",
        "user_id,item_id,event_type,ts",
    ),
    Case(empty_events, "events", "expect_table_row_count_to_be_between", None, check_id="not_empty"),
    Case(catalogue_duplicate_items, "catalog", "expect_column_values_to_be_unique", "item_id", rows=2),
    Case(catalogue_bad_in_stock, "catalog", "expect_column_values_to_be_parseable", "in_stock", rows=2),
    Case(id_stored_as_integer, "events", "expect_column_values_to_be_of_schema_type", "user_id", rows=500),
    Case(created_at_out_of_range, "catalog", "expect_column_values_to_be_parseable", "created_at", rows=2),
]


@pytest.mark.parametrize("case", CASES, ids=[c.build.__name__ for c in CASES])
def test_bad_batch_is_caught_and_quarantined(dirs: Dirs, case: Case) -> None:
    batch = case.build(dirs.landing)
    data_before, landing_before = tree_digest(dirs.data), tree_digest(batch)

    report = run_gate(batch, dirs, now=case.now)

    assert not report.success
    matches = [
        f
        for f in report.failures
        if (f.table, f.expectation, f.column) == (case.table, case.expectation, case.column)
        and (case.check_id is None or f.check_id == case.check_id)
    ]
    assert matches, f"expected {case.expectation} on {case.table}.{case.column}; got {report.failure_lines()}"
    if case.rows is not None:
        assert matches[0].unexpected_count == case.rows
    assert report.statistics["evaluated_expectations"] > 0

    entry = dirs.quarantine / DAY.isoformat()
    assert report.quarantine_path == entry and report.result_path == entry / "validation_result.json"
    for name in ("events", "catalog"):
        landed = next(batch.glob(f"{name}.*"))
        assert (entry / "batch" / landed.name).read_bytes() == landed.read_bytes()
    result = json.loads(report.result_path.read_text())
    assert result["report"]["success"] is False
    assert {f["expectation"] for f in result["report"]["failures"]} >= {case.expectation}
    assert result["gx_results"], "the GX suite results are kept"
    assert (entry / "data_docs" / "index.html").is_file()
    assert any(p.name != "index.html" for p in (entry / "data_docs").glob("*.html")), "GX Data Docs page"
    if case.rows:
        rows = pd.read_parquet(entry / f"unexpected_{case.table}.parquet")
        flagged = rows[rows["_failed_checks"].str.contains(matches[0].check_id, regex=False)]
        assert len(flagged) == case.rows  # every unexpected row, not a sample
    assert not any(p.name.startswith(".") for p in dirs.quarantine.iterdir()), "no temp folders left"
    assert tree_digest(dirs.data) == data_before
    assert tree_digest(batch) == landing_before
    with pytest.raises(ValidationFailed):
        ensure_valid(report)


def test_missing_column_detail_names_it(dirs: Dirs) -> None:
    report = run_gate(missing_required_column(dirs.landing), dirs)
    columns = next(f for f in report.failures if f.expectation == "expect_table_columns_to_match_set")
    assert "missing session_id" in columns.detail
    assert any("session_id absent" in s for s in report.skipped)


def test_extra_column_detail_names_it(dirs: Dirs) -> None:
    report = run_gate(unexpected_extra_column(dirs.landing), dirs)
    columns = next(f for f in report.failures if f.expectation == "expect_table_columns_to_match_set")
    assert "unexpected email" in columns.detail


def test_all_unexpected_rows_are_quarantined_beyond_200(dirs: Dirs) -> None:
    ev = make_events(DAY, n=1000)
    ev.loc[ev.index[:300], "user_id"] = None
    report = run_gate(write_batch(dirs.landing, DAY, events=ev), dirs)
    rows = pd.read_parquet(report.quarantine_path / "unexpected_events.parquet")  # type: ignore[operator]
    assert len(rows) == 300
    assert rows["_row"].tolist() == list(range(300))
    assert rows["user_id"].isna().all()


def test_huge_value_is_shortened_in_the_report(dirs: Dirs) -> None:
    report = run_gate(huge_string_id(dirs.landing), dirs)
    assert all(len(line) < 600 for line in report.failure_lines())
    assert report.result_path is not None and report.result_path.stat().st_size < 2_000_000


def test_revalidation_replaces_the_quarantine_entry(dirs: Dirs) -> None:
    batch = null_user_id(dirs.landing)
    first = run_gate(batch, dirs)
    (first.quarantine_path / "stale-marker").write_text("old")  # type: ignore[operator]
    second = run_gate(batch, dirs)
    assert not second.success and second.quarantine_path == first.quarantine_path
    assert not (second.quarantine_path / "stale-marker").exists()  # type: ignore[operator]
    assert [p.name for p in dirs.quarantine.iterdir()] == [DAY.isoformat()]


def test_quarantine_inside_data_is_refused(dirs: Dirs) -> None:
    batch = write_batch(dirs.landing, DAY)
    with pytest.raises(RecopsError, match="inside the data folder"):
        validate_batch(
            batch, data_dir=dirs.data, quarantine_dir=dirs.data / "q", params=ValidateParams(), now=NOW
        )


def test_quarantine_over_the_landed_batch_is_refused(dirs: Dirs) -> None:
    batch = null_user_id(dirs.landing)
    before = tree_digest(batch)
    with pytest.raises(RecopsError, match="inside its own quarantine entry"):
        validate_batch(
            batch, data_dir=dirs.data, quarantine_dir=dirs.landing, params=ValidateParams(), now=NOW
        )
    assert tree_digest(batch) == before


# ------------------------------------------------------------------------------------------ no silent pass


def test_zero_expectation_suite_is_a_failure() -> None:
    import great_expectations as gx

    from pipelines.validation.gx_runner import gx_context, run_suite

    gx_context()
    empty = gx.ExpectationSuite(name="empty")
    result = run_suite("guard_test", pd.DataFrame({"a": [1, 2]}), empty)
    assert result.success  # what GX says on its own: the silent pass
    failures = guards.suite_run_failures("events", "text", 0, result)
    assert len(failures) == 1 and not failures[0].success
    assert "0 expectations" in failures[0].detail
    assert guards.suite_run_failures("events", "text", 3, None)
    assert guards.evaluated_failures([])  # nothing evaluated at all


def test_empty_suite_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.json").write_text(json.dumps({"table": "events", "version": 1, "expectations": []}))
    with pytest.raises(SuiteError, match="no expectations"):
        load_suite("events", tmp_path)


def test_missing_suite_refuses_to_validate(dirs: Dirs, tmp_path: Path) -> None:
    batch = write_batch(dirs.landing, DAY)
    with pytest.raises(SuiteError, match="not found"):
        run_gate(batch, dirs, suites_dir=tmp_path / "nowhere")
    assert not dirs.quarantine.exists()


def test_expectation_that_raises_fails_the_batch(dirs: Dirs, tmp_path: Path) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    for name in ("events", "catalog"):
        (suites / f"{name}.json").write_text((EXPECTATIONS_DIR / f"{name}.json").read_text())
    spec = json.loads((suites / "events.json").read_text())
    spec["expectations"].append(
        {
            "id": "broken",
            "view": "text",
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "user_id", "min_value": 0},
        }
    )
    (suites / "events.json").write_text(json.dumps(spec))
    report = run_gate(write_batch(dirs.landing, DAY), dirs, suites_dir=suites)
    assert not report.success
    broken = [f for f in report.failures if f.check_id == "broken"]
    assert broken and "raised" in broken[0].detail


def test_shipped_suites_cover_the_schema() -> None:
    from core.schema import CATALOG_COLUMNS, EVENT_COLUMNS

    for name, schema in (("events", EVENT_COLUMNS), ("catalog", CATALOG_COLUMNS)):
        suite = load_suite(name)
        not_null = {s.kwargs["column"] for s in suite.expectations if s.type.endswith("to_not_be_null")}
        assert not_null == {c.name for c in schema if not c.nullable}
        named = {c for s in suite.expectations + suite.checks for c in s.columns()}
        assert named <= {c.name for c in schema}, "suites only name schema columns"
        assert any(s.type == "expect_table_columns_to_match_set" for s in suite.expectations)


@pytest.fixture(autouse=True)
def _utc_window_sanity() -> None:
    assert NOW - timedelta(days=1) < datetime(2026, 1, 1, 12, tzinfo=UTC) < NOW


# ----------------------------------------------------------------------------------------------------- CLI

RECOPS = Path(sys.executable).parent / "recops"


def recops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``recops`` with data, quarantine and runtime folders under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"),
        RECOPS_DATA_DIR=str(tmp_path / "data"),
        RECOPS_QUARANTINE_DIR=str(tmp_path / "quarantine"),
    )
    return subprocess.run(
        [str(RECOPS), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def test_cli_pass_and_fail(dirs: Dirs, tmp_path: Path) -> None:
    clean = write_batch(tmp_path / "landing-ok", DAY)
    ok = recops(tmp_path, "validate", str(clean), "--now", "2026-01-02T01:00:00Z")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("batch 2026-01-01 passed:") and "expectations evaluated" in ok.stdout
    assert "500 events" in ok.stdout

    bad = null_user_id(tmp_path / "landing-bad")
    failed = recops(tmp_path, "validate", str(bad), "--now", "2026-01-02T01:00:00Z")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL expect_column_values_to_not_be_null events.user_id:" in failed.stdout
    assert "(25 rows)" in failed.stdout
    entry = tmp_path / "quarantine" / DAY.isoformat()
    assert f"quarantined: {entry}" in failed.stdout
    assert (entry / "validation_result.json").is_file()
    assert "Traceback" not in failed.stderr


def _truncate(batch: Path) -> None:
    data = (batch / "events.parquet").read_bytes()
    (batch / "events.parquet").write_bytes(data[:100])


def _to_csv(batch: Path, encoding: str, rows: bool = True) -> None:
    events = make_events(DAY).head(5 if rows else 0)
    events.loc[:, "user_id"] = "Zoë"
    (batch / "events.parquet").unlink()
    (batch / "events.csv").write_bytes(events.to_csv(index=False).encode(encoding))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda b: (b / "events.parquet").write_bytes(b""), "empty (0 bytes)"),
        (_truncate, "not a readable Parquet file"),
        (lambda b: _to_csv(b, "latin-1"), "not valid UTF-8"),
        (lambda b: _to_csv(b, "utf-16"), "UTF-16"),
        (lambda b: _to_csv(b, "utf-8", rows=False), "header but no rows"),
        (lambda b: shutil.rmtree(b), "batch folder not found"),
    ],
    ids=["empty-file", "truncated-parquet", "latin-1-csv", "utf-16-csv", "header-only-csv", "no-folder"],
)
def test_cli_bad_files_are_clear_errors(
    tmp_path: Path, corrupt: Callable[[Path], None], message: str
) -> None:
    batch = write_batch(tmp_path / "landing", DAY)
    corrupt(batch)
    result = recops(tmp_path, "validate", str(batch))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "quarantine").exists()


def test_cli_a_file_is_not_taken_for_a_missing_folder(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "landing", DAY)
    result = recops(tmp_path, "validate", str(batch / "events.parquet"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "events.parquet is a file; a batch folder" in result.stderr
    assert "not found" not in result.stderr and "Traceback" not in result.stderr


def test_cli_bad_now_is_a_clear_error(tmp_path: Path) -> None:
    result = recops(tmp_path, "validate", str(write_batch(tmp_path / "landing", DAY)), "--now", "tomorrow")
    assert result.returncode == 2 and "error: --now 'tomorrow'" in result.stderr
