"""Forget one shopper: remove every event of a user from the published ``data/`` layer (a new DVC version).

Published batches hold pseudonymised user ids only, so a raw id (as the person knows it) is first turned
into its pseudonym with the pseudonymisation key. Each affected ``data/<batch>/events.parquet`` is rewritten
without the user's rows (:func:`core.fsio.atomic_file`: temp file + rename, so readers see the old or the
new file, never half of one), under the same data lock as publish, then ``dvc add data`` and a verified push
record the new version.

Old versions stay in the DVC cache, on the remote and in git history until purged; the result lists the
cache objects (MD5s) that still hold the user's events, and ``docs/operations.md`` ("Forgetting a user")
explains how to delete them. Forgetting an absent user changes nothing and is not an error (the desired
state, "no events of this user", holds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.errors import RecopsError
from core.privacy import PSEUDONYM_PREFIX, is_pseudonymized, pseudonymize_id
from core.schema import EVENTS_FILE
from pipelines.datastore import published_batches
from pipelines.dvc_ops import repo_relative
from pipelines.publish import (
    DEFAULT_LOCK_TIMEOUT_S,
    canonical_events,
    data_lock,
    staging_root,
    sync_dvc,
    write_parquet,
)


@dataclass(frozen=True)
class ForgetResult:
    """What :func:`forget_user` did.

    Attributes:
        pseudonym: The user id as stored in ``data/``.
        batches_changed: Ids of the batches whose events file was rewritten (sorted).
        events_removed: How many events were deleted in all.
        stale_objects: MD5s of the replaced ``events.parquet`` files: the DVC cache/remote objects that still
            hold the user's events (``files/md5/<first 2>/<rest>``) until purged.
        pushed: True when the new version was pushed and ``dvc status -c`` was clean afterwards.
    """

    pseudonym: str
    batches_changed: tuple[str, ...]
    events_removed: int
    stale_objects: tuple[str, ...]
    pushed: bool

    @property
    def found(self) -> bool:
        """Whether the user had any published event."""
        return self.events_removed > 0


def resolve_pseudonym(user_id: str, key: str, *, is_pseudonym: bool = False) -> str:
    """The stored id of a user: ``user_id`` itself if it is a pseudonym, else its keyed hash."""
    user_id = user_id.strip()
    if not user_id:
        raise RecopsError("the user id is empty")
    if is_pseudonym:
        if not is_pseudonymized(pd.Series([user_id], dtype="string")):
            raise RecopsError(
                f"{user_id!r} is not a pseudonym ({PSEUDONYM_PREFIX!r} + 20 hex characters); "
                "give the raw id without --pseudonym"
            )
        return user_id
    if not key:
        raise RecopsError("no pseudonymisation key: set RECOPS_PSEUDONYMIZATION_KEY")
    return pseudonymize_id(user_id, key)


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_user_events(events: pd.DataFrame, pseudonym: str) -> pd.DataFrame:
    """``events`` without the rows of ``pseudonym`` (canonical order kept)."""
    keep = events["user_id"].ne(pseudonym).fillna(True)
    return canonical_events(events.loc[keep])


def _rewrite_events(path: Path, pseudonym: str, scratch: Path) -> tuple[int, str | None]:
    """Drop the user's rows from one events file atomically; return (rows removed, old file MD5)."""
    ids = pd.read_parquet(path, columns=["user_id"])["user_id"]  # cheap look before a full rewrite
    hits = int(ids.eq(pseudonym).sum())
    if hits == 0:
        return 0, None
    events = canonical_events(pd.read_parquet(path))
    kept = remove_user_events(events, pseudonym)
    old_md5 = _file_md5(path)
    write_parquet(kept, path, tmp_dir=scratch)  # atomic; the temporary file stays outside data/
    return len(events) - len(kept), old_md5


def forget_user(
    user_id: str,
    *,
    data_dir: Path,
    repo_root: Path,
    key: str,
    is_pseudonym: bool = False,
    push: bool = True,
    remote: str | None = None,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> ForgetResult:
    """Remove every published event of one user and record the result as a new DVC version of ``data/``.

    Args:
        user_id: The raw user id (as in the shop's systems), or a pseudonym with ``is_pseudonym``.
        data_dir: The DVC-tracked data folder.
        repo_root: The git + DVC repository.
        key: The pseudonymisation key (the same one used at ingest).
        is_pseudonym: ``user_id`` is already the stored pseudonym.
        push: Push the new version and check ``dvc status -c``.
        remote: DVC remote name; ``None`` uses the default remote.
        lock_timeout_s: How long to wait for a publish or another forget to finish.

    Returns:
        The result; ``found`` is False (``data/`` untouched) when the user has no published event. DVC add
        and push run either way, so re-running a forget whose push failed completes it.
    """
    from tqdm import tqdm

    pseudonym = resolve_pseudonym(user_id, key, is_pseudonym=is_pseudonym)
    repo_relative(data_dir, repo_root)
    changed: list[str] = []
    stale: list[str] = []
    removed = 0
    with data_lock(data_dir, lock_timeout_s):
        batches = published_batches(data_dir)
        scratch = staging_root(data_dir)
        for batch in tqdm(batches, desc="forget", unit="batch", disable=None):
            count, old_md5 = _rewrite_events(batch / f"{EVENTS_FILE}.parquet", pseudonym, scratch)
            if count:
                changed.append(batch.name)
                removed += count
                if old_md5:
                    stale.append(old_md5)
        pushed = False
        if batches:  # also when nothing changed: a re-run finishes an earlier forget whose push failed
            _, pushed = sync_dvc(data_dir, repo_root, push=push, remote=remote)
    return ForgetResult(
        pseudonym=pseudonym,
        batches_changed=tuple(sorted(changed)),
        events_removed=removed,
        stale_objects=tuple(stale),
        pushed=pushed,
    )
