"""Read the published, validated batches under ``data/`` (the layer tracked by ``data.dvc``), and the lock
every writer of ``data/`` holds.

Layout: ``data/<batch_id>/events.parquet`` and ``data/<batch_id>/catalog.parquet``; batch ids sort in time
order (daily batches are ``YYYY-MM-DD``). ``data/_forgotten.txt`` is the deny-list of forgotten shoppers
(:mod:`core.privacy`). Published data is never edited in place; see ``pipelines.publish``.

Published files are read with their Parquet page checksums verified (:func:`read_published_table`): a file
that is truncated, corrupt or rotten raises :class:`PublishedDataError`, which names the file and how to
restore it, instead of a pyarrow traceback or silently wrong rows.

Writers (publish, forget, unpublish) hold :func:`data_lock`; on entry it rolls back or forward whatever a
killed writer left half done (:func:`core.fsio.recover_staging`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from core.errors import RecopsError
from core.fsio import exclusive_lock, recover_staging
from core.schema import CATALOG_FILE, EVENTS_FILE, coerce_catalog, coerce_events

log = logging.getLogger(__name__)

BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_LOCK_TIMEOUT_S = 600.0
#: What to do about a damaged published file (the CLI prints it after the file name).
RESTORE_HINT = (
    "delete it and run `dvc checkout data.dvc` to copy it back from the DVC cache, or `dvc pull data.dvc` "
    "when the cache copy is missing or damaged too (`recops data verify` lists every damaged copy)"
)
#: Intent of a `recops data forget` in progress (in the staging folder), so an interrupted one is finished.
FORGET_INTENT = "forget-intent.json"


class PublishedDataError(RecopsError):
    """A published file is missing, truncated or corrupt (its message names the file and the remedy)."""


def check_batch_id(batch_id: str) -> str:
    """Return ``batch_id`` if it is a safe folder name, else raise a clear error."""
    if not BATCH_ID.match(batch_id):
        raise RecopsError(
            f"invalid batch id {batch_id!r}: use letters, digits, '.', '_' or '-' (max 128, no leading dot)"
        )
    return batch_id


def published_batches(data_dir: Path) -> list[Path]:
    """Published batch folders in batch-id order (folders holding an events file)."""
    if not data_dir.is_dir():
        return []
    return sorted(
        p
        for p in data_dir.iterdir()
        if p.is_dir() and BATCH_ID.match(p.name) and (p / f"{EVENTS_FILE}.parquet").is_file()
    )


def read_published_table(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """One published Parquet file (page checksums verified), or :class:`PublishedDataError` naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(
            path, columns=list(columns) if columns is not None else None, page_checksum_verification=True
        )
    except FileNotFoundError as exc:
        raise PublishedDataError(f"{path}: published file is missing; {RESTORE_HINT}") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise PublishedDataError(
            f"{path}: published file is unreadable (truncated or corrupt: {reason}); {RESTORE_HINT}"
        ) from exc
    frame: pd.DataFrame = table.to_pandas()
    return frame


def read_published(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All published events (schema dtypes, ``batch_id`` column added) and the latest catalogue.

    The catalogue is the union of every batch's snapshot where the newest batch wins for each item, so
    price and stock reflect the latest state while items that left the feed keep their attributes.

    Raises:
        PublishedDataError: a published file is unreadable (named, with the restore command).
        RecopsError: nothing is published.
    """
    batches = published_batches(data_dir)
    if not batches:
        raise RecopsError(
            f"no published batches in {data_dir}: run `recops data generate` and `recops publish`"
        )
    events, catalogs = [], []
    for batch in batches:
        ev = coerce_events(read_published_table(batch / f"{EVENTS_FILE}.parquet"))
        ev["batch_id"] = batch.name
        events.append(ev)
        cat_path = batch / f"{CATALOG_FILE}.parquet"
        if cat_path.is_file():
            cat = coerce_catalog(read_published_table(cat_path))
            cat["batch_id"] = batch.name
            catalogs.append(cat)
    all_events = pd.concat(events, ignore_index=True)
    catalog = pd.concat(catalogs, ignore_index=True) if catalogs else coerce_catalog(pd.DataFrame())
    catalog = catalog.drop_duplicates("item_id", keep="last").drop(columns="batch_id").reset_index(drop=True)
    return all_events, catalog


# ------------------------------------------------------------------------------------------- staging and lock


def staging_root(data_dir: Path) -> Path:
    """``.<data>-staging/`` beside ``data_dir`` (same filesystem, so renames into ``data/`` are atomic).

    It holds the lock file, swap journals, the forget intent and short-lived temp folders; it is gitignored
    and outside what DVC tracks.
    """
    return data_dir.parent / f".{data_dir.name}-staging"


@contextmanager
def data_lock(
    data_dir: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S, *, recover: bool = True
) -> Iterator[Path]:
    """Hold the exclusive lock of ``data_dir``: ``<staging>/data.lock`` (:func:`core.fsio.exclusive_lock`).

    Every writer of ``data/`` (publish, forget, unpublish) takes it, so they run one at a time. The kernel
    drops the lock when the process dies, so a crash never leaves it stuck. With ``recover`` (the default),
    a folder swap that a killed writer left half done is rolled back or forward and leftover temporary
    copies are deleted first (:func:`core.fsio.recover_staging`); each action is logged as a warning.

    Raises:
        RecopsError: another process held the lock for ``timeout_s`` seconds.
        SwapRecoveryError: an interrupted swap cannot be repaired automatically.
    """
    staging = staging_root(data_dir)
    with exclusive_lock(staging / "data.lock", timeout_s=timeout_s, busy="another publish or forget") as held:
        if recover:
            for action in recover_staging(staging):
                log.warning("recovered: %s", action)
        yield held


def pending_forget(data_dir: Path) -> str | None:
    """The pseudonym of a ``recops data forget`` that was interrupted (its intent is still recorded)."""
    path = staging_root(data_dir) / FORGET_INTENT
    try:
        intent = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RecopsError(f"{path}: unreadable forget intent ({exc}); inspect and delete it") from exc
    return str(intent.get("pseudonym", "")) or None


def refuse_if_forget_pending(data_dir: Path) -> None:
    """Refuse to write ``data/`` while an interrupted forget has not been finished."""
    pseudonym = pending_forget(data_dir)
    if pseudonym:
        raise RecopsError(
            f"an interrupted `recops data forget` of user {pseudonym} left data/ partly rewritten; finish it "
            f"first with `recops data forget --user {pseudonym} --pseudonym`, then run this command again"
        )
