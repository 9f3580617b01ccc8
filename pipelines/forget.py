"""Forget one shopper: remove every event of a user from the published ``data/`` layer (a new DVC version).

Published batches hold pseudonymised user ids only, so a raw id (as the person knows it) is first turned
into its pseudonym with the pseudonymisation key. Each affected ``data/<batch>/events.parquet`` is rewritten
without the user's rows (:func:`core.fsio.atomic_file`: temp file + rename, so readers see the old or the
new file, never half of one), under the same data lock as publish, then ``dvc add data`` and a verified push
record the new version.

What the scoring service keeps of the shopper goes too (:func:`forget_served`): their feedback rows and
served lists in the metadata database (:func:`core.feedback.forget_feedback`, as ``DELETE /users/{id}``
does) and their row of the online-store seed (rebuilt from the published data, which no longer holds them).
The live online state of a running service is its own: ``DELETE /users/{id}`` drops it, and a service
never loads a forgotten shopper from a seed.

Old versions stay in the DVC cache, on the remote and in git history until purged; the result lists the
cache objects (MD5s) that still hold the user's events, and ``docs/operations.md`` ("Forgetting a user")
explains how to delete them. Forgetting an absent user changes nothing and is not an error (the desired
state, "no events of this user", holds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from core.errors import RecopsError
from core.fsio import atomic_file, atomic_write_text
from core.privacy import (
    FORGOTTEN_FILE,
    PSEUDONYM_PREFIX,
    forgotten_path,
    forgotten_text,
    is_pseudonymized,
    pseudonymize_id,
    read_forgotten,
)
from core.schema import EVENTS_FILE
from pipelines.canonical import canonical_events, write_parquet
from pipelines.data_record import ensure_matches_record, file_md5
from pipelines.datastore import (
    DEFAULT_LOCK_TIMEOUT_S,
    FORGET_INTENT,
    data_lock,
    pending_forget,
    published_batches,
    read_published_table,
    refuse_if_forget_pending,
    staging_root,
)
from pipelines.dvc_objects import check_remote
from pipelines.dvc_ops import dvc_add, repo_relative
from pipelines.publish import push_recorded

if TYPE_CHECKING:
    from core.settings import Settings


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
        denied: True when this call put the user on the deny-list (``data/_forgotten.txt``).
    """

    pseudonym: str
    batches_changed: tuple[str, ...]
    events_removed: int
    stale_objects: tuple[str, ...]
    pushed: bool
    denied: bool = False

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


def remove_user_events(events: pd.DataFrame, pseudonym: str) -> pd.DataFrame:
    """``events`` without the rows of ``pseudonym`` (canonical order kept)."""
    keep = events["user_id"].ne(pseudonym).fillna(True)
    return canonical_events(events.loc[keep])


def _holds_user(path: Path, pseudonym: str) -> bool:
    return bool(read_published_table(path, ["user_id"])["user_id"].eq(pseudonym).any())


def _rewrite_events(path: Path, pseudonym: str, scratch: Path) -> tuple[int, str | None]:
    """Drop the user's rows from one events file atomically; return (rows removed, old file MD5)."""
    if not _holds_user(path, pseudonym):  # cheap look (one column) before a full rewrite
        return 0, None
    events = canonical_events(read_published_table(path))
    kept = remove_user_events(events, pseudonym)
    old_md5 = file_md5(path)
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

    Under the data lock, before anything changes, ``data/`` must match ``data.dvc`` (except the events
    files an interrupted forget of the same user already rewrote), so the new version records only this
    erasure. Then an intent naming the user and the batches that hold them is written to the staging
    folder, the pseudonym goes on the deny-list (``data/_forgotten.txt``, so publish and the loaders
    never bring the user back), the events files are rewritten, ``dvc add`` records it and the intent is
    cleared; the push follows. A forget killed half way is finished by running it again; until then publish
    refuses to run.

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

    Raises:
        PushFailed: recorded in ``data.dvc`` but not pushed (exit 3); ``recops data push`` completes it.
        PublishedDataError: a published file is unreadable (named, with the restore command).
    """
    from tqdm import tqdm

    pseudonym = resolve_pseudonym(user_id, key, is_pseudonym=is_pseudonym)
    repo_relative(data_dir, repo_root)
    changed: list[str] = []
    stale: list[str] = []
    removed = 0
    pushed = denied = False
    with data_lock(data_dir, lock_timeout_s):
        intent_file = staging_root(data_dir) / FORGET_INTENT
        pending = pending_forget(data_dir)
        if pending is not None and pending != pseudonym:
            refuse_if_forget_pending(data_dir)  # finish the other user's forget first
        batches = published_batches(data_dir)
        if pending is None:
            if push:
                check_remote(repo_root, remote)
            ensure_matches_record(data_dir, repo_root, remote=remote, action="forget")
            holding = [b.name for b in batches if _holds_user(b / f"{EVENTS_FILE}.parquet", pseudonym)]
        else:  # resuming: the batches named in the intent may already be rewritten
            holding = list(json.loads(intent_file.read_text(encoding="utf-8")).get("batches", []))
            allow = [f"{b}/{EVENTS_FILE}.parquet" for b in holding] + [FORGOTTEN_FILE]
            ensure_matches_record(data_dir, repo_root, allow=allow, remote=remote, action="forget")
        intent = {"pseudonym": pseudonym, "batches": holding}
        atomic_write_text(intent_file, json.dumps(intent, sort_keys=True))
        forgotten = read_forgotten(data_dir)
        denied = pseudonym not in forgotten
        if denied:  # first, so a batch re-sent while this runs can never bring the user back
            data_dir.mkdir(parents=True, exist_ok=True)
            with atomic_file(forgotten_path(data_dir), tmp_dir=staging_root(data_dir)) as tmp:
                tmp.write_text(forgotten_text(forgotten | {pseudonym}), encoding="utf-8")
        scratch = staging_root(data_dir)
        for name in tqdm(holding, desc="forget", unit="batch", disable=None):
            count, old_md5 = _rewrite_events(data_dir / name / f"{EVENTS_FILE}.parquet", pseudonym, scratch)
            if count:
                changed.append(name)
                removed += count
                if old_md5:
                    stale.append(old_md5)
        # Also when nothing changed: a re-run finishes an earlier forget whose push failed.
        dvc_file = dvc_add(data_dir, repo_root)
        intent_file.unlink()  # recorded: from here on data/ matches data.dvc again
        if push:
            push_recorded(repo_root, dvc_file, remote, what=f"forgetting user {pseudonym} is")
            pushed = True
    return ForgetResult(
        pseudonym=pseudonym,
        batches_changed=tuple(sorted(changed)),
        events_removed=removed,
        stale_objects=tuple(stale),
        pushed=pushed,
        denied=denied,
    )


@dataclass(frozen=True)
class ServedForgetResult:
    """What :func:`forget_served` did.

    Attributes:
        feedback_rows: Feedback rows and served lists deleted from the metadata database; None when it holds
            no feedback store (the scoring service never ran against it).
        seed_rewritten: True when the online-store seed was rebuilt without the shopper, False when it did
            not hold them (same digest), None when there is no seed.
    """

    feedback_rows: int | None
    seed_rewritten: bool | None


def forget_feedback_rows(settings: Settings, pseudonym: str) -> int | None:
    """Delete the shopper's feedback rows and served lists; None when there is no feedback store."""
    import sqlalchemy as sa

    from core.feedback import (
        FEEDBACK_TABLE,
        RECOMMENDATIONS_TABLE,
        create_feedback_tables,
        feedback_engine,
        forget_feedback,
    )

    engine = feedback_engine(settings)
    present = {FEEDBACK_TABLE, RECOMMENDATIONS_TABLE} & set(sa.inspect(engine).get_table_names())
    if not present:
        return None
    create_feedback_tables(engine)  # a store with one table of the two: the delete needs both
    return forget_feedback(engine, pseudonym)


def forget_served(settings: Settings, pseudonym: str, *, actor: str = "recops") -> ServedForgetResult:
    """Forget what the scoring service keeps of a shopper (after :func:`forget_user`, whose deny-list
    leaves them out of the seed): feedback rows and served lists, then the online-store seed is rebuilt
    when there is one (``params.yaml`` is read only then)."""
    from core.online_seed import seed_paths
    from pipelines.online.seed import run_online_seed
    from pipelines.params import load_params
    from pipelines.steps import StepContext

    rows = forget_feedback_rows(settings, pseudonym)
    seed_file, manifest = seed_paths(settings)
    rewritten: bool | None = None
    if seed_file.exists() or manifest.exists():
        ctx = StepContext(settings, load_params(settings.params_file), actor=actor)
        rewritten = bool(run_online_seed(ctx).info["changed"])
    return ServedForgetResult(feedback_rows=rows, seed_rewritten=rewritten)
