"""Write and read a :class:`FeatureSet` folder: parquet tables plus JSON, byte-identical for equal input.

Layout of ``out_dir``:

* ``events.parquet``: :attr:`FeatureSet.events` (time order).
* ``items.parquet``: :attr:`FeatureSet.item_table` (item index order).
* ``users.parquet``: ``user_idx, user_id``.
* ``sequences.parquet``: ``user_idx, items`` (each user's last ``max_sequence_length`` item indices over all
  events, oldest first), e.g. to seed the online store.
* ``feature_set.json``: format version, params, split boundaries and counts.
* ``summary.json``: step counts (a DVC metrics file).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from core.errors import RecopsError
from pipelines.features.featureset import EVENT_FRAME_DTYPES, FeatureSet
from pipelines.features.split import SplitInfo
from pipelines.params import FeatureParams

FORMAT_VERSION = 1
EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"
USERS_FILE = "users.parquet"
SEQUENCES_FILE = "sequences.parquet"
META_FILE = "feature_set.json"
SUMMARY_FILE = "summary.json"
FILES = (EVENTS_FILE, ITEMS_FILE, USERS_FILE, SEQUENCES_FILE, META_FILE, SUMMARY_FILE)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    with warnings.catch_warnings():  # pyarrow 25 reads tz-aware columns through the deprecated Series.values
        warnings.filterwarnings("ignore", message=".*Series.values returning an ndarray.*")
        return pa.Table.from_pandas(frame, preserve_index=False)


def _write_table(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20, store_schema=True)


def _write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_features(fs: FeatureSet, out_dir: Path) -> list[Path]:
    """Write ``fs`` into ``out_dir`` (created if needed; the files listed in :data:`FILES` are replaced).

    Returns:
        The written paths.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in FILES]
    _write_table(_to_arrow(fs.events), paths[0])
    _write_table(_to_arrow(fs.item_table), paths[1])
    users = pa.table(
        {
            "user_idx": pa.array(np.arange(fs.n_users, dtype=np.int32)),
            "user_id": pa.array(fs.user_ids, pa.string()),
        }
    )
    _write_table(users, paths[2])
    offsets, items = fs.sequence_lists("all")
    sequences = pa.table(
        {
            "user_idx": pa.array(np.arange(fs.n_users, dtype=np.int32)),
            "items": pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(items.astype(np.int32))
            ),
        }
    )
    _write_table(sequences, paths[3])
    meta = {
        "format_version": FORMAT_VERSION,
        "n_users": fs.n_users,
        "n_items": fs.n_items,
        "params": fs.params.model_dump(mode="json"),
        "split": fs.split_info.to_dict(),
    }
    _write_json(meta, paths[4])
    _write_json(fs.summary, paths[5])
    return paths


def read_features(out_dir: Path) -> FeatureSet:
    """Read a folder written by :func:`write_features`.

    Raises:
        RecopsError: when a file is missing, unreadable or of another format version.
    """
    missing = [name for name in FILES if not (out_dir / name).is_file()]
    if missing:
        raise RecopsError(
            f"{out_dir} is not a feature set (missing {', '.join(missing)}): run `recops features`"
        )
    try:
        meta = json.loads((out_dir / META_FILE).read_text(encoding="utf-8"))
        summary = json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecopsError(f"{out_dir}: unreadable feature set metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise RecopsError(f"{out_dir / META_FILE}: unsupported format (want format_version {FORMAT_VERSION})")
    try:
        params = FeatureParams.model_validate(meta["params"])
        split_info = SplitInfo.from_dict(meta["split"])
        events = pd.read_parquet(out_dir / EVENTS_FILE).astype(EVENT_FRAME_DTYPES)
        items = pd.read_parquet(out_dir / ITEMS_FILE)
        users = pd.read_parquet(out_dir / USERS_FILE)
    except (KeyError, TypeError, ValueError, ValidationError, OSError, pa.ArrowException) as exc:
        raise RecopsError(f"{out_dir}: corrupt feature set: {exc}") from exc
    if len(items) != meta["n_items"] or len(users) != meta["n_users"]:
        raise RecopsError(f"{out_dir}: items/users tables do not match {META_FILE}")
    return FeatureSet(
        events=events,
        item_ids=np.asarray(items["item_id"].astype(str), dtype=np.str_),
        user_ids=np.asarray(users["user_id"].astype(str), dtype=np.str_),
        item_table=items,
        split_info=split_info,
        summary=summary,
        params=params,
    )
