"""Loaders and the validation gate apply the same column rules: what a loader writes, the gate passes.

Two directions: every tricky value a loader accepts passes the gate in a written batch, and every value a
loader refuses is one the gate refuses too. Then a sparse real-world shape (purchases on dates without
times, a few a day at first, shoppers marked ``NA``) loaded with defaults passes the gate day after day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.schema import MAX_TEXT_LENGTH
from pipelines.datasets.loaders.common import DataFileError, LoadNotes, parse_ids, parse_text, write_batches
from pipelines.datasets.loaders.generic import load_generic
from pipelines.params import ValidateParams
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.datasets.loaders.gate import failures, gate_in_order
from tests.pipelines.datasets.loaders.helpers import TEST_KEY

TRICKY_IDS = [
    "-1",  # a plain negative number: safe in a spreadsheet (the gate used to refuse what loaders accepted)
    "+7",
    "-3.5e2",
    ".5",
    "-0",
    "0042",
    "Zoë",
    "名前",
    "a b",
    "x=y",
    'a"b',
    "semi;colon",
    "NAB",  # looks like a null token, is an id
    "x" * MAX_TEXT_LENGTH,
    "x" * (MAX_TEXT_LENGTH + 1),  # the gate used to refuse 257..1024 characters the loaders accepted
    "=1+1",
    "-x",
    "-2+3",
    "@SUM(A1)",
    "-",
    "NA",
    "null",
    "None",
    "N/A",
]


def _accepted(value: str) -> bool:
    try:
        parse_ids(pd.Series([value], dtype=object), "item", "test")
    except DataFileError:
        return False
    return True


def test_loader_and_gate_agree_on_every_tricky_id(tmp_path: Path) -> None:
    accepted = [v for v in TRICKY_IDS if _accepted(v)]
    refused = [v for v in TRICKY_IDS if not _accepted(v)]
    assert "-1" in accepted and "x" * MAX_TEXT_LENGTH in accepted and "NAB" in accepted
    assert {"=1+1", "NA", "x" * (MAX_TEXT_LENGTH + 1)} <= set(refused)

    # what the loader accepts, as item ids, session ids and categories, passes the gate once written
    start = pd.Timestamp("2024-05-01T08:00Z")
    events = pd.DataFrame(
        {
            "who": [f"u{k}" for k in range(len(accepted))],
            "sku": accepted,
            "basket": accepted,
            "when": [start + pd.Timedelta(minutes=k) for k in range(len(accepted))],
        }
    )
    products = pd.DataFrame({"sku": accepted, "family": accepted})
    events.to_parquet(tmp_path / "events.parquet")  # Parquet keeps every value byte for byte
    products.to_parquet(tmp_path / "products.parquet")
    loaded, catalog = load_generic(
        tmp_path / "events.parquet",
        mapping={"user_id": "who", "item_id": "sku", "ts": "when", "session_id": "basket"},
        key=TEST_KEY,
        catalog_path=tmp_path / "products.parquet",
        catalog_mapping={"item_id": "sku", "category": "family"},
    )
    assert set(loaded["item_id"]) == set(accepted) and set(catalog["category"]) == set(accepted)
    batches = write_batches(loaded, catalog, tmp_path / "landing", daily=True)
    reports = gate_in_order(batches, tmp_path / "gate")
    assert failures(reports) == []

    # what the loader refuses, the gate refuses too: every such row is flagged on item_id
    day = date(2024, 5, 2)
    bad = make_events(day, n=len(refused))
    bad["item_id"] = pd.array(refused, dtype="string")
    cat = make_catalog(n_items=len(refused))
    cat["item_id"] = pd.array(refused, dtype="string")
    batch = write_batch(tmp_path / "raw", day, events=bad, catalog=cat)
    (report,) = gate_in_order([batch], tmp_path / "gate-raw")
    assert not report.success
    assert report.quarantine_path is not None
    rows = pd.read_parquet(report.quarantine_path / "unexpected_events.parquet")
    flagged = rows[rows["_failed_checks"].str.contains("item_id")]
    assert sorted(flagged["_row"]) == list(range(len(refused)))


@pytest.mark.parametrize("label", ["=cmd()", "x" * (MAX_TEXT_LENGTH + 1)])
def test_labels_follow_the_same_rules(label: str) -> None:
    with pytest.raises(DataFileError):
        parse_text(pd.Series([label]), "family", "test")
    assert parse_text(pd.Series(["NA", " "]), "family", "test").tolist() == ["unknown", "unknown"]


# --------------------------------------------------------------------------------------------- sparse log

FIRST_DAY = date(2024, 1, 1)
#: Rows per day: a few a day for a week (trailing median about 4), then a busier shop.
DAILY_ROWS = [1, 3, 6, 2, 6, 8, 1, 90, 110, 95, 120, 100]
FIRST_BUSY = 7


def sparse_log(path: Path, seed: int = 7) -> Path:
    """A ``;``-separated purchase log with dates but no times, shoppers 1..25 and ``NA`` for anonymous ones,
    orders as baskets, and many same-day repeats of (shopper, item)."""
    rng = np.random.default_rng(seed)
    lines = ["customer;product;date;order;units"]
    order = 0
    for offset, rows in enumerate(DAILY_ROWS):
        day = (FIRST_DAY + timedelta(days=offset)).isoformat()
        for _ in range(rows):
            if rng.random() < 0.3:
                order += 1
            customer = "NA" if rng.random() < 0.1 else str(int(rng.integers(1, 26)))
            lines.append(f"{customer};{int(rng.integers(1, 31))};{day};o{order};{int(rng.integers(1, 3))}")
    path.write_text("\n".join(lines) + "\n")
    return path


SPARSE_MAP = {"user_id": "customer", "item_id": "product", "ts": "date", "session_id": "order"}


def test_sparse_dates_only_log_passes_the_gate_with_defaults(tmp_path: Path) -> None:
    notes = LoadNotes()
    events, catalog = load_generic(
        sparse_log(tmp_path / "log.csv"),
        mapping={**SPARSE_MAP, "quantity": "units"},
        key=TEST_KEY,
        notes=notes,
    )
    assert notes.resolution == "day" and notes.repeats_merged > 0 and notes.anonymous_as_session > 0
    assert int(events["quantity"].sum()) > len(events)  # the merged repeats live on as quantity
    batches = write_batches(events, catalog, tmp_path / "landing", daily=True)
    assert len(batches) == len(DAILY_ROWS)
    reports = gate_in_order(batches, tmp_path / "gate")
    assert failures(reports) == []
    assert all(r.success for r in reports)
    quiet = reports[1]  # 3 rows against a median of 1: too few rows to judge
    assert any("below volume_floor_rows" in s for s in quiet.skipped)
    assert not any(s.startswith("events.volume") for s in reports[-1].skipped)  # judged once the shop is busy


def test_without_the_floor_or_the_merge_the_same_log_is_refused(tmp_path: Path) -> None:
    events, catalog = load_generic(sparse_log(tmp_path / "log.csv"), mapping=SPARSE_MAP, key=TEST_KEY)
    batches = write_batches(events, catalog, tmp_path / "landing", daily=True)
    early = batches[: FIRST_BUSY + 1]
    no_floor = gate_in_order(early, tmp_path / "no-floor", ValidateParams(volume_floor_rows=0))
    assert any("expect_table_row_count_to_be_between" in line for line in failures(no_floor))

    kept, cat = load_generic(
        sparse_log(tmp_path / "log.csv"), mapping=SPARSE_MAP, key=TEST_KEY, repeats="keep"
    )
    kept_batches = write_batches(kept, cat, tmp_path / "landing-kept", daily=True)
    refused = gate_in_order(kept_batches[FIRST_BUSY : FIRST_BUSY + 1], tmp_path / "kept")
    assert any("expect_duplicate_rate_to_be_at_most" in line for line in failures(refused))
