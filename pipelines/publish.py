"""Publish a validated batch into the DVC-tracked ``data/`` layer, atomically and idempotently.

``data/<batch_id>/`` holds ``events.parquet`` and ``catalog.parquet`` in a canonical form: schema dtypes,
rows sorted on every column, written by pyarrow with fixed options, so the same content always gives the
same bytes and the same DVC hash. A batch folder appears whole or not at all: it is written in a staging
folder next to ``data/`` (same filesystem) and renamed in. Re-publishing the same content is a no-op;
different content under a published id is refused unless ``replace`` is given, which swaps the folders
and restores the old one if anything fails.

After ``data/`` changes, ``dvc add data`` records the new version in ``data.dvc`` and ``dvc push`` uploads
it; the push counts only when ``dvc status -c`` then reports nothing missing on the remote. One lock per
``data/`` folder (:func:`data_lock`) serialises publish and forget, so two writers never interleave. Atomic
writes, fsync and the lock come from :mod:`core.fsio`; the batch is read with the gate's reader and
written with the Parquet options of :mod:`pipelines.batch_io`.

:func:`run_publish` is the step-contract entry (``run_<step>(ctx, ...) -> StepResult``) the CLI and an
Airflow task call.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import pandas as pd

from core.errors import RecopsError
from core.fsio import exclusive_lock, staged_dir
from core.privacy import is_pseudonymized
from core.schema import (
    CATALOG_COLUMN_NAMES,
    CATALOG_FILE,
    EVENT_COLUMN_NAMES,
    EVENTS_FILE,
    batch_file,
    coerce_catalog,
    coerce_events,
)
from pipelines.batch_io import read_table
from pipelines.batch_io import write_parquet as _write_parquet
from pipelines.datastore import check_batch_id
from pipelines.dvc_ops import dvc_add, dvc_push, repo_relative

if TYPE_CHECKING:
    pass

PublishStatus = Literal["published", "replaced", "unchanged"]

#: Sort keys of the canonical form: every column, so ties are identical rows and order is total.
EVENT_SORT: tuple[str, ...] = (
    "ts",
    "event_id",
    *[c for c in EVENT_COLUMN_NAMES if c not in ("ts", "event_id")],
)
CATALOG_SORT: tuple[str, ...] = CATALOG_COLUMN_NAMES
DEFAULT_LOCK_TIMEOUT_S = 600.0


class ValidationRefused(RecopsError):
    """The batch failed the validation gate; nothing was published (exit 1, like a failed check)."""

    exit_code = 1


class ValidationOutcome(Protocol):
    """What publish needs from ``pipelines.validate.ValidationReport``."""

    @property
    def success(self) -> bool: ...

    @property
    def quarantine_path(self) -> Path | None: ...


Validator = Callable[[Path], ValidationOutcome]


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_batch` did.

    Attributes:
        batch_id: The batch folder's name under ``data/``.
        status: ``published`` (new id), ``replaced`` (``replace=True`` and new content) or ``unchanged``.
        path: ``data/<batch_id>``.
        content_hash: SHA-256 of the canonical tables (independent of parquet encoding).
        events: Rows in ``events.parquet``.
        items: Rows in ``catalog.parquet``.
        dvc_file: The ``data.dvc`` file updated by ``dvc add``.
        pushed: True when the push ran and ``dvc status -c`` was clean afterwards.
        remote: The remote pushed to (``None``: DVC's default remote).
    """

    batch_id: str
    status: PublishStatus
    path: Path
    content_hash: str
    events: int
    items: int
    dvc_file: Path
    pushed: bool
    remote: str | None


# ------------------------------------------------------------------------------------------- canonical form


def canonical_events(df: pd.DataFrame) -> pd.DataFrame:
    """Events with the schema's columns and dtypes, sorted on every column (stable, total order)."""
    events = coerce_events(df)
    return events.sort_values(list(EVENT_SORT), kind="mergesort", na_position="last").reset_index(drop=True)


def canonical_catalog(df: pd.DataFrame) -> pd.DataFrame:
    """Catalogue with the schema's columns and dtypes, sorted on every column (item id first)."""
    catalog = coerce_catalog(df)
    return catalog.sort_values(list(CATALOG_SORT), kind="mergesort", na_position="last").reset_index(
        drop=True
    )


def read_batch(batch_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical events and catalogue of a batch folder (``.parquet`` or ``.csv`` files)."""
    if not batch_dir.is_dir():
        raise RecopsError(f"batch folder not found: {batch_dir}")
    # The gate's reader: unreadable files are clear `BadBatchFile` errors, CSV cells stay text until coerced.
    events = canonical_events(read_table(batch_file(batch_dir, EVENTS_FILE)))
    catalog = canonical_catalog(read_table(batch_file(batch_dir, CATALOG_FILE)))
    return events, catalog


def table_hash(df: pd.DataFrame) -> str:
    """SHA-256 of a table's column names, dtypes and values (row order matters, index does not)."""
    digest = hashlib.sha256()
    for name, dtype in df.dtypes.items():
        digest.update(f"{name}:{dtype};".encode())
    digest.update(str(len(df)).encode())
    if len(df):
        digest.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def content_hash(events: pd.DataFrame, catalog: pd.DataFrame) -> str:
    """One hash for a canonical batch: equal iff both canonical tables are equal."""
    return hashlib.sha256(f"{table_hash(events)}:{table_hash(catalog)}".encode()).hexdigest()


def write_parquet(df: pd.DataFrame, path: Path, *, tmp_dir: Path | None = None) -> None:
    """Write ``df`` atomically with fixed pyarrow options (same frame and library versions -> same bytes).

    ``tmp_dir`` (same filesystem) holds the temporary file, e.g. the staging folder beside ``data/``.
    """
    _write_parquet(df, path, tmp_dir=tmp_dir)


def write_canonical_batch(folder: Path, events: pd.DataFrame, catalog: pd.DataFrame) -> None:
    """Write canonical ``events.parquet`` and ``catalog.parquet`` into an existing ``folder``."""
    write_parquet(events, folder / f"{EVENTS_FILE}.parquet")
    write_parquet(catalog, folder / f"{CATALOG_FILE}.parquet")


def published_content_hash(folder: Path) -> str | None:
    """Content hash of a published batch folder, or ``None`` if it is missing or unreadable."""
    try:
        events = canonical_events(pd.read_parquet(folder / f"{EVENTS_FILE}.parquet"))
        catalog = canonical_catalog(pd.read_parquet(folder / f"{CATALOG_FILE}.parquet"))
    except (OSError, ValueError, RecopsError):
        return None
    return content_hash(events, catalog)


# ------------------------------------------------------------------------------------------- staging and lock


def staging_root(data_dir: Path) -> Path:
    """``.<data>-staging/`` beside ``data_dir`` (same filesystem, so renames into ``data/`` are atomic).

    It holds the lock file and short-lived temp folders; it is gitignored and outside what DVC tracks.
    """
    return data_dir.parent / f".{data_dir.name}-staging"


@contextmanager
def data_lock(data_dir: Path, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold the exclusive lock of ``data_dir``: ``<staging>/data.lock`` (:func:`core.fsio.exclusive_lock`).

    Every writer of ``data/`` (publish, forget) takes it, so they run one at a time. The kernel drops the
    lock when the process dies, so a crash never leaves it stuck.

    Raises:
        RecopsError: another process held the lock for ``timeout_s`` seconds.
    """
    lock_file = staging_root(data_dir) / "data.lock"
    with exclusive_lock(lock_file, timeout_s=timeout_s, busy="another publish or forget") as held:
        yield held


# ------------------------------------------------------------------------------------------- publish


def sync_dvc(data_dir: Path, repo_root: Path, *, push: bool, remote: str | None) -> tuple[Path, bool]:
    """``dvc add data`` and, if ``push``, a verified ``dvc push``; return (``data.dvc``, pushed)."""
    dvc_file = dvc_add(data_dir, repo_root)
    if push:
        dvc_push(repo_root, remote, [dvc_file])
    return dvc_file, push


def publish_batch(
    batch_dir: Path,
    *,
    data_dir: Path,
    repo_root: Path,
    replace: bool = False,
    push: bool = True,
    remote: str | None = None,
    validator: Validator | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    sync: bool = True,
) -> PublishResult:
    """Publish ``batch_dir`` as ``data/<batch_dir.name>/`` and record it with DVC.

    Args:
        batch_dir: A batch folder (``events`` and ``catalog`` as parquet or CSV); its name is the batch id.
        data_dir: The DVC-tracked data folder (inside ``repo_root``).
        repo_root: The git + DVC repository.
        replace: Allow replacing a published batch whose content differs.
        push: Push to the DVC remote and check ``dvc status -c`` afterwards.
        remote: DVC remote name; ``None`` uses the repository's default remote.
        validator: Runs the validation gate on ``batch_dir`` (``pipelines.validate.validate_batch`` bound to
            its settings; it quarantines failures itself). ``None`` means the caller validated already.
            Skipped when the content is already published unchanged.
        lock_timeout_s: How long to wait for another publish or forget to finish.
        sync: Run ``dvc add`` (and the push) now; :func:`publish_batches` syncs once after many batches.

    Raises:
        ValidationRefused: the validator reported failure (exit code 1).
        RecopsError: bad batch id, raw user ids, content conflict without ``replace``, DVC failure.
    """
    batch_id = check_batch_id(batch_dir.resolve().name)
    repo_relative(data_dir, repo_root)  # fail before touching anything if DVC could not track data_dir
    try:
        events, catalog = read_batch(batch_dir)
    except RecopsError:
        # A batch that does not even fit the schema: let the gate quarantine it and list every failure.
        if validator is not None:
            _refuse_if_invalid(validator(batch_dir), batch_id)
        raise
    if not is_pseudonymized(events["user_id"]):
        raise RecopsError(
            f"batch {batch_id} holds raw user ids (expected pseudonyms 'p_' + 20 hex): load it with "
            "`recops data load`, which pseudonymises them with RECOPS_PSEUDONYMIZATION_KEY"
        )
    new_hash = content_hash(events, catalog)
    target = data_dir / batch_id

    with data_lock(data_dir, lock_timeout_s):
        status: PublishStatus
        if target.exists() and published_content_hash(target) == new_hash:
            status = "unchanged"
        else:
            if target.exists() and not replace:
                raise RecopsError(
                    f"batch {batch_id} is already published with different content ({target}); "
                    "pass --replace to replace it"
                )
            if validator is not None:
                _refuse_if_invalid(validator(batch_dir), batch_id)
            status = "replaced" if target.exists() else "published"
            _place(events, catalog, data_dir, target)
        # Also on "unchanged": re-running a publish whose add or push was interrupted finishes the job.
        if sync:
            dvc_file, pushed = sync_dvc(data_dir, repo_root, push=push, remote=remote)
        else:
            dvc_file, pushed = repo_root / f"{data_dir.name}.dvc", False
    return PublishResult(
        batch_id=batch_id,
        status=status,
        path=target,
        content_hash=new_hash,
        events=len(events),
        items=len(catalog),
        dvc_file=dvc_file,
        pushed=pushed,
        remote=remote,
    )


def _refuse_if_invalid(report: ValidationOutcome, batch_id: str) -> None:
    if not report.success:
        where = f"; see {report.quarantine_path}" if report.quarantine_path else ""
        raise ValidationRefused(f"batch {batch_id} failed validation, nothing published{where}")


def publish_batches(
    batch_dirs: Sequence[Path],
    *,
    data_dir: Path,
    repo_root: Path,
    replace: bool = False,
    push: bool = True,
    remote: str | None = None,
    validator: Validator | None = None,
    on_result: Callable[[PublishResult], None] | None = None,
) -> list[PublishResult]:
    """Publish several batches in batch-id order, then record them with one ``dvc add`` and push.

    Each batch is validated against the history published before it (so the volume check sees the
    earlier ones). The first failure stops the run; batches published before it are still recorded and
    pushed, so nothing already stored is left untracked.
    """
    results: list[PublishResult] = []
    try:
        for batch_dir in sorted(batch_dirs, key=lambda p: p.resolve().name):
            result = publish_batch(
                batch_dir,
                data_dir=data_dir,
                repo_root=repo_root,
                replace=replace,
                push=push,
                remote=remote,
                validator=validator,
                sync=False,
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        if results:
            with data_lock(data_dir):
                dvc_file, pushed = sync_dvc(data_dir, repo_root, push=push, remote=remote)
            results = [dataclasses.replace(r, dvc_file=dvc_file, pushed=pushed) for r in results]
    return results


def _place(events: pd.DataFrame, catalog: pd.DataFrame, data_dir: Path, target: Path) -> None:
    """Write the batch in a staging folder and rename it to ``target`` (swapping out an old one).

    The staging folder and the old copy live beside ``data/`` (never inside it), so DVC never sees them.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, if_exists="replace", staging=staging_root(data_dir)) as new:
        write_canonical_batch(new, events, catalog)
