"""Publish a validated batch into the DVC-tracked ``data/`` layer, atomically and idempotently.

``data/<batch_id>/`` holds ``events.parquet`` and ``catalog.parquet`` in the canonical form of
:mod:`pipelines.canonical` (same content, same bytes, same DVC hash). A batch folder appears whole or not
at all: it is written in a staging folder next to ``data/`` (same filesystem) and renamed in. Re-publishing
the same content is a no-op; different content under a published id is refused unless ``replace`` is given,
which swaps the folders (journaled: a swap cut short by a crash is rolled back or forward by the next
writer) and restores the old one if anything fails.

Only the batches being published may change: ``data/`` must match ``data.dvc`` elsewhere
(:mod:`pipelines.data_record`), event ids must not be published in another batch
(:mod:`pipelines.event_ids`), and events of forgotten users are left out (:mod:`core.privacy`). Then
``dvc add data`` records the new version in ``data.dvc`` and ``dvc push`` uploads it; the push counts only
when ``dvc status -c`` then reports nothing missing on the remote, and a failed push is a
:class:`~pipelines.dvc_ops.PushFailed` (exit 3) that says how to complete it. One lock per ``data/`` folder
(:func:`data_lock`) serialises publish, forget and unpublish.

:func:`run_publish` is the step-contract entry (``run_<step>(ctx, ...) -> StepResult``) the CLI and an
Airflow task call.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pandas as pd

from core.errors import RecopsError
from core.fsio import staged_dir
from core.privacy import drop_forgotten, is_pseudonymized, read_forgotten
from pipelines.canonical import (
    CATALOG_SORT,
    EVENT_SORT,
    canonical_catalog,
    canonical_events,
    content_hash,
    published_content_hash,
    read_batch,
    table_hash,
    write_canonical_batch,
    write_parquet,
)
from pipelines.data_record import dvc_file_for, ensure_matches_record
from pipelines.datastore import (
    DEFAULT_LOCK_TIMEOUT_S,
    check_batch_id,
    data_lock,
    refuse_if_forget_pending,
    staging_root,
)
from pipelines.dvc_objects import check_remote
from pipelines.dvc_ops import DvcError, PushFailed, dvc_add, dvc_push, repo_relative
from pipelines.event_ids import PublishedEventIds

__all__ = [
    "CATALOG_SORT",
    "DEFAULT_LOCK_TIMEOUT_S",
    "EVENT_SORT",
    "PublishResult",
    "PushFailed",
    "ValidationRefused",
    "canonical_catalog",
    "canonical_events",
    "content_hash",
    "data_lock",
    "publish_batch",
    "publish_batches",
    "published_content_hash",
    "push_recorded",
    "read_batch",
    "staging_root",
    "sync_dvc",
    "table_hash",
    "write_canonical_batch",
    "write_parquet",
]

log = logging.getLogger(__name__)

PublishStatus = Literal["published", "replaced", "unchanged"]


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
        dropped_forgotten: Events of forgotten users (the deny-list) left out of the batch.
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
    dropped_forgotten: int = 0


# ------------------------------------------------------------------------------------------- publish


def sync_dvc(
    data_dir: Path, repo_root: Path, *, push: bool, remote: str | None, what: str = "data/"
) -> tuple[Path, bool]:
    """``dvc add data`` and, if ``push``, a verified ``dvc push``; return (``data.dvc``, pushed).

    Raises:
        PushFailed: ``data.dvc`` was updated but the push failed (exit 3); the message says how to finish.
        DvcError: ``dvc add`` failed.
    """
    dvc_file = dvc_add(data_dir, repo_root)
    if push:
        push_recorded(repo_root, dvc_file, remote, what=what)
    return dvc_file, push


def push_recorded(repo_root: Path, dvc_file: Path, remote: str | None, *, what: str = "data/") -> None:
    """Verified push of what ``dvc_file`` records; a failure is :class:`PushFailed` saying how to finish."""
    try:
        dvc_push(repo_root, remote, [dvc_file])
    except DvcError as exc:
        again = f"recops data push --remote {remote}" if remote else "recops data push"
        raise PushFailed(
            f"{what} recorded in {dvc_file.name}, but the push to DVC remote {remote or '(default)'} "
            f"failed, so other machines cannot pull it yet. Nothing is lost: the new version is in the "
            f"local DVC cache. Once the remote works, complete it with `{again}` (or `dvc push "
            f"{'-r ' + remote + ' ' if remote else ''}{dvc_file.name}`); `recops data verify` lists what "
            f"the remote lacks. DVC said: {exc}",
            output=exc.output,
        ) from exc


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
    """Publish ``batch_dir`` as ``data/<batch_dir.name>/`` and record it with DVC (:func:`publish_batches`).

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
        sync: Check ``data/`` against ``data.dvc`` first and run ``dvc add`` (and the push) after; False
            only places the batch.

    Raises:
        ValidationRefused: the validator reported failure (exit code 1).
        PushFailed: placed and recorded, but the push failed (exit code 3).
        RecopsError: bad batch id, raw user ids, content conflict without ``replace``, event ids already
            published in another batch, ``data/`` changed outside this batch, DVC failure.
    """
    return publish_batches(
        [batch_dir],
        data_dir=data_dir,
        repo_root=repo_root,
        replace=replace,
        push=push,
        remote=remote,
        validator=validator,
        lock_timeout_s=lock_timeout_s,
        sync=sync,
    )[0]


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
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    sync: bool = True,
) -> list[PublishResult]:
    """Publish several batches in batch-id order, then record them with one ``dvc add`` and push.

    Under the data lock (which first recovers a swap a killed writer left half done), before anything
    changes: no forget may be pending, the push remote must exist, and ``data/`` must match ``data.dvc``
    outside these batches (:func:`pipelines.data_record.ensure_matches_record`), so the ``dvc add`` records
    only them. Each batch then loses the events of forgotten users (:func:`core.privacy.read_forgotten`),
    is refused if another published batch holds one of its event ids, is validated against the history
    published before it (so the volume check sees the earlier ones), and is placed atomically. The first
    failure stops the run; batches published before it are still recorded and pushed, so nothing already
    stored is left untracked.
    """
    ordered = sorted(batch_dirs, key=lambda p: p.resolve().name)
    ids = [check_batch_id(p.resolve().name) for p in ordered]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise RecopsError(f"two batch folders share the batch id {', '.join(repeated)}: publish one of them")
    repo_relative(data_dir, repo_root)  # fail before touching anything if DVC could not track data_dir
    results: list[PublishResult] = []
    with data_lock(data_dir, lock_timeout_s):
        refuse_if_forget_pending(data_dir)
        if sync:
            if push:
                check_remote(repo_root, remote)
            what = f"publishing {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}"
            ensure_matches_record(
                data_dir, repo_root, allow=[f"{i}/" for i in ids], remote=remote, action=what
            )
        forgotten = read_forgotten(data_dir)
        event_ids = PublishedEventIds(data_dir)
        try:
            for batch_dir in ordered:
                result = _publish_one(batch_dir, data_dir, replace, validator, forgotten, event_ids)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            if results and sync:
                changed = [r.batch_id for r in results]
                what = f"batch(es) {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}"
                dvc_file, pushed = sync_dvc(data_dir, repo_root, push=push, remote=remote, what=what)
                results[:] = [
                    dataclasses.replace(r, dvc_file=dvc_file, pushed=pushed, remote=remote) for r in results
                ]
    return results


def _publish_one(
    batch_dir: Path,
    data_dir: Path,
    replace: bool,
    validator: Validator | None,
    forgotten: frozenset[str],
    event_ids: PublishedEventIds,
) -> PublishResult:
    batch_id = batch_dir.resolve().name
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
    events, dropped = drop_forgotten(events, forgotten)
    if dropped:
        events = events.reset_index(drop=True)
        log.warning("batch %s: dropped %d event(s) of forgotten users", batch_id, dropped)
    new_hash = content_hash(events, catalog)
    target = data_dir / batch_id
    status: PublishStatus
    if target.exists() and published_content_hash(target) == new_hash:
        status = "unchanged"  # also then: re-running a publish whose add or push was interrupted finishes it
    else:
        if target.exists() and not replace:
            damaged = published_content_hash(target) is None
            note = ", unreadable: `recops data verify` tells how to restore it" if damaged else ""
            raise RecopsError(
                f"batch {batch_id} is already published with different content ({target}{note}); "
                "pass --replace to replace it"
            )
        event_ids.refuse_duplicates(batch_id, events["event_id"])
        if validator is not None:
            _refuse_if_invalid(validator(batch_dir), batch_id)
        status = "replaced" if target.exists() else "published"
        _place(events, catalog, data_dir, target)
        event_ids.placed(batch_id, events["event_id"])
    return PublishResult(
        batch_id=batch_id,
        status=status,
        path=target,
        content_hash=new_hash,
        events=len(events),
        items=len(catalog),
        dvc_file=dvc_file_for(data_dir),
        pushed=False,
        remote=None,
        dropped_forgotten=dropped,
    )


def _refuse_if_invalid(report: ValidationOutcome, batch_id: str) -> None:
    if not report.success:
        where = f"; see {report.quarantine_path}" if report.quarantine_path else ""
        raise ValidationRefused(f"batch {batch_id} failed validation, nothing published{where}")


def _place(events: pd.DataFrame, catalog: pd.DataFrame, data_dir: Path, target: Path) -> None:
    """Write the batch in a staging folder and rename it to ``target`` (swapping out an old one).

    The staging folder and the old copy live beside ``data/`` (never inside it), so DVC never sees them; a
    replace is journaled there, so the next writer's :func:`data_lock` repairs a swap cut short by a crash.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, if_exists="replace", staging=staging_root(data_dir)) as new:
        write_canonical_batch(new, events, catalog)
