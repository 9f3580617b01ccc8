"""Take a published batch out of ``data/`` (a new DVC version), and complete a push that failed.

``recops data unpublish BATCH`` is how a batch published by mistake (a copy of a day under another name, a
test batch) leaves the data layer: under the data lock, with ``data/`` checked against ``data.dvc`` first,
the folder is renamed into the staging folder (one atomic rename; a crash leaves a hidden copy that the next
writer deletes, and running the command again records the removal), then deleted, and ``dvc add data`` plus
a verified push record the version without it. Its
objects stay in the DVC cache and on the remote, like every older version (see docs/operations.md).

``recops data push`` re-runs the verified push of what ``data.dvc`` records: the way to complete a publish,
forget or unpublish whose push failed (:class:`~pipelines.dvc_ops.PushFailed`, exit 3).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import RecopsError
from core.fsio import fsync_path
from pipelines.data_record import dvc_file_for, ensure_matches_record, file_md5, recorded_md5
from pipelines.datastore import (
    DEFAULT_LOCK_TIMEOUT_S,
    check_batch_id,
    data_lock,
    refuse_if_forget_pending,
    staging_root,
)
from pipelines.dvc_objects import check_remote
from pipelines.dvc_ops import dvc_add, repo_relative
from pipelines.publish import push_recorded


@dataclass(frozen=True)
class UnpublishResult:
    """What :func:`unpublish_batch` did.

    Attributes:
        batch_id: The batch taken out of ``data/``.
        files: Relative paths (under ``data/``) of the files removed.
        stale_objects: MD5s of those files: DVC cache and remote objects that still hold them until purged.
        dvc_file: ``data.dvc``, updated.
        pushed: True when the new version was pushed and ``dvc status -c`` was clean afterwards.
    """

    batch_id: str
    files: tuple[str, ...]
    stale_objects: tuple[str, ...]
    dvc_file: Path
    pushed: bool


def unpublish_batch(
    batch_id: str,
    *,
    data_dir: Path,
    repo_root: Path,
    push: bool = True,
    remote: str | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> UnpublishResult:
    """Remove ``data/<batch_id>/`` and record the new version of ``data/`` (see the module docstring).

    Raises:
        RecopsError: the batch is not published, ``data/`` changed outside it, or a forget is pending.
        PushFailed: recorded in ``data.dvc`` but not pushed (exit 3); ``recops data push`` completes it.
    """
    check_batch_id(batch_id)
    repo_relative(data_dir, repo_root)
    target = data_dir / batch_id
    with data_lock(data_dir, lock_timeout_s):
        refuse_if_forget_pending(data_dir)
        if push:
            check_remote(repo_root, remote)
        recorded = ensure_matches_record(
            data_dir, repo_root, allow=[f"{batch_id}/"], remote=remote, action=f"unpublishing {batch_id}"
        )
        prefix = f"{batch_id}/"
        if target.is_dir():
            files = sorted(p.relative_to(data_dir).as_posix() for p in target.rglob("*") if p.is_file())
            stale = tuple(sorted({file_md5(data_dir / rel) for rel in files}))
            staging = staging_root(data_dir)
            staging.mkdir(parents=True, exist_ok=True)
            aside = staging / f".{batch_id}.old-unpublish"
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(target, aside)  # one atomic step; after a crash the next writer deletes the copy
            fsync_path(data_dir)
            shutil.rmtree(aside)
        elif recorded.files and any(rel.startswith(prefix) for rel in recorded.files):
            # An unpublish killed after the folder left data/: only the record is left to update.
            files = sorted(rel for rel in recorded.files if rel.startswith(prefix))
            stale = tuple(sorted({recorded.files[rel] for rel in files}))
        else:
            raise RecopsError(f"batch {batch_id} is not published (no folder {target})")
        dvc_file = dvc_add(data_dir, repo_root)
        if push:
            push_recorded(repo_root, dvc_file, remote, what=f"unpublishing batch {batch_id} is")
    return UnpublishResult(
        batch_id=batch_id,
        files=tuple(files),
        stale_objects=stale,
        dvc_file=dvc_file,
        pushed=push,
    )


def push_data(
    data_dir: Path, repo_root: Path, remote: str | None, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
) -> Path:
    """Verified push of the version ``data.dvc`` records (completes a push that failed); return ``data.dvc``.

    Raises:
        RecopsError: there is no ``data.dvc``, or the remote is not configured.
        PushFailed: the push failed again.
    """
    dvc_file = dvc_file_for(data_dir)
    with data_lock(data_dir, lock_timeout_s):
        if recorded_md5(dvc_file) is None:
            raise RecopsError(f"nothing to push: {dvc_file} does not exist (publish a batch first)")
        check_remote(repo_root, remote)
        push_recorded(repo_root, dvc_file, remote, what=f"the version of data/ in {dvc_file.name} is")
    return dvc_file
