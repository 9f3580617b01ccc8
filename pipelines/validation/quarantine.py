"""Write a rejected batch into ``quarantine_dir/<batch_id>/`` atomically.

Layout of one entry::

    <batch_id>/
      batch/                        copies of the landed files (the landing folder is left as it was)
      unexpected_events.parquet     every failing row as sent (text), with _row and _failed_checks columns
      unexpected_catalog.parquet
      validation_result.json        the recops report plus each GX suite result
      data_docs/index.html          summary page; data_docs/<table>-<view>.html are GX's Data Docs pages

The entry is built in a hidden temporary folder next to it and renamed into place, so readers see either
the previous entry or the complete new one. Re-validating a quarantined batch replaces its entry; the
old one is removed only after the new one is in place. Unexpected rows are written as Parquet, never CSV:
a quarantined value such as ``=HYPERLINK(...)`` must not be opened by a spreadsheet as a formula.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

RESULT_FILE = "validation_result.json"
BATCH_FOLDER = "batch"
DOCS_FOLDER = "data_docs"
ROW_COLUMN = "_row"
FAILED_COLUMN = "_failed_checks"


def unexpected_rows(text: pd.DataFrame, failed: Mapping[int, Iterable[str]]) -> pd.DataFrame:
    """The failing rows of a table's text view, with their position and the ids of the checks they failed."""
    positions = sorted(failed)
    rows = text.iloc[positions].copy()
    rows.insert(0, ROW_COLUMN, np.asarray(positions, dtype=np.int64))
    rows.insert(1, FAILED_COLUMN, [";".join(sorted(set(failed[p]))) for p in positions])
    return rows.reset_index(drop=True)


def write_entry(
    quarantine_dir: Path,
    batch_id: str,
    *,
    files: Iterable[Path],
    unexpected: Mapping[str, pd.DataFrame],
    result: Mapping[str, Any],
    pages: Mapping[str, str],
) -> Path:
    """Create or replace ``quarantine_dir/<batch_id>`` with the given content; return its path."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / batch_id
    tmp = quarantine_dir / f".{batch_id}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / BATCH_FOLDER).mkdir(parents=True)
        for path in files:
            shutil.copy2(path, tmp / BATCH_FOLDER / path.name)
        for table, rows in unexpected.items():
            rows.to_parquet(tmp / f"unexpected_{table}.parquet", index=False)
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        (tmp / DOCS_FOLDER).mkdir()
        for name, page in pages.items():
            (tmp / DOCS_FOLDER / name).write_text(page, encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    try:
        tmp.rename(target)
    except BaseException:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
