"""Write a rejected batch into ``quarantine_dir/<batch_id>/`` atomically.

Layout of one entry::

    <batch_id>/
      batch/                        copies of the landed files (the landing folder is left as it was)
      unexpected_events.parquet     every failing row as sent (text), with _row and _failed_checks columns
      unexpected_catalog.parquet
      validation_result.json        the recops report plus each GX suite result
      data_docs/index.html          summary page; data_docs/<table>-<view>.html are GX's Data Docs pages

The entry is built in a hidden temporary folder next to it and renamed into place
(:func:`core.fsio.staged_dir`), so readers see either the previous entry or the complete new one.
Re-validating a quarantined batch replaces its entry; the old one is removed only after the new one is in
place. Unexpected rows are written as Parquet, never CSV:
a quarantined value such as ``=HYPERLINK(...)`` must not be opened by a spreadsheet as a formula.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.fsio import staged_dir

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
    target = quarantine_dir / batch_id
    with staged_dir(target, if_exists="replace") as tmp:
        (tmp / BATCH_FOLDER).mkdir()
        for path in files:
            shutil.copy2(path, tmp / BATCH_FOLDER / path.name)
        for table, rows in unexpected.items():
            rows.to_parquet(tmp / f"unexpected_{table}.parquet", index=False)
        (tmp / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
        (tmp / DOCS_FOLDER).mkdir()
        for name, page in pages.items():
            (tmp / DOCS_FOLDER / name).write_text(page, encoding="utf-8")
    return target
