"""``recops data verify``: is the published data whole, here, in the DVC cache and on the remote?

DVC trusts file sizes and mtimes (a bit flipped in the cache with both kept is checked out silently) and,
once a directory's ``.dir`` object is on a remote, trusts that every file under it is there too. This check
trusts neither. It re-hashes, against the listing ``data.dvc`` records:

* every file under ``data/`` (deleted, modified, or not recorded), and reads every Parquet file with its
  page checksums verified (a file recorded already damaged is caught too);
* every object of that version in the local DVC cache (missing, or bytes that no longer match the MD5);
* the remote's object list (``dvc ls-url remote://<name>/files/md5``): every object must be there (a push
  that failed or never ran, or an object lost later, shows up as ``not on remote``; the bytes on the remote
  are re-hashed by every ``dvc pull``, since both remotes have ``verify = true``);

and reports events of forgotten users still published, and writers that were interrupted (a swap journal,
a forget intent, leftover temporary copies). Nothing is changed. Meant for a scheduled job: exit 0 when all
is well, 1 with one line per problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.fsio import SWAP_JOURNAL_SUFFIX
from core.privacy import read_forgotten
from core.schema import EVENTS_FILE
from pipelines.data_record import compare, file_md5, recorded_data
from pipelines.datastore import (
    DEFAULT_LOCK_TIMEOUT_S,
    FORGET_INTENT,
    PublishedDataError,
    data_lock,
    published_batches,
    read_published_table,
    staging_root,
)
from pipelines.dvc_objects import cache_object_path, remote_objects
from pipelines.dvc_ops import DvcError


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (``workspace``, ``cache``, ``remote``, ``record``, ``privacy``, ``staging``),
    the path or object, and what."""

    where: str
    path: str
    detail: str

    def line(self) -> str:
        return f"BAD {self.where}: {self.path}: {self.detail}"


@dataclass
class VerifyReport:
    """What :func:`verify_data` found."""

    md5: str | None = None
    files: int = 0
    remote: str | None = None
    remote_checked: bool = False
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        where = f"remote {self.remote or '(default)'}" if self.remote_checked else "remote not checked"
        state = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return f"{state}: data.dvc {self.md5 or '(none)'}, {self.files} file(s); workspace, cache, {where}"


def verify_data(
    data_dir: Path,
    repo_root: Path,
    *,
    remote: str | None = None,
    check_remote: bool = True,
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
) -> VerifyReport:
    """Check ``data/``, the DVC cache and the remote against ``data.dvc`` (see the module docstring).

    Holds the data lock (so a publish in progress is not reported half done) but repairs nothing.

    Raises:
        DvcError: the remote could not be listed (unreachable, bad credentials).
    """
    report = VerifyReport(remote=remote)
    bad = report.problems.append
    with data_lock(data_dir, lock_timeout_s, recover=False):
        _staging_problems(data_dir, bad)
        recorded = recorded_data(data_dir, repo_root, remote=remote if check_remote else None)
        report.md5 = recorded.md5
        if recorded.md5 is None:
            bad(Problem("record", recorded.dvc_file.name, "does not exist: nothing is recorded"))
            return report
        if recorded.files is None:
            why = f"the remote could not be asked: {recorded.remote_error}" if recorded.remote_error else ""
            listing = "the listing of this version is neither in the DVC cache nor on the remote"
            bad(Problem("record", recorded.md5, why or listing))
            return report
        report.files = len(recorded.files)
        drift = compare(data_dir, recorded.files)
        prefix = data_dir.name
        for rel in drift.deleted:
            bad(Problem("workspace", f"{prefix}/{rel}", "recorded but missing"))
        for rel in drift.modified:
            bad(Problem("workspace", f"{prefix}/{rel}", "bytes differ from the recorded MD5"))
        for rel in drift.added:
            bad(Problem("workspace", f"{prefix}/{rel}", "not recorded in data.dvc"))
        for rel in sorted(drift.actual):
            if rel.endswith(".parquet"):
                try:
                    read_published_table(data_dir / rel)
                except PublishedDataError as exc:
                    bad(Problem("workspace", f"{prefix}/{rel}", str(exc).split("; restore")[0]))
        objects = {recorded.md5: "(directory listing)"} | {m: rel for rel, m in recorded.files.items()}
        for md5, rel in sorted(objects.items()):
            path = cache_object_path(repo_root, md5)
            if not path.is_file():
                bad(Problem("cache", md5, f"missing from the local DVC cache ({rel})"))
            elif file_md5(path) != md5.removesuffix(".dir"):
                bad(Problem("cache", md5, f"corrupt in the local DVC cache: bytes do not match ({rel})"))
        if check_remote:
            try:
                on_remote = remote_objects(repo_root, remote)
            except DvcError as exc:
                bad(Problem("remote", remote or "(default)", f"cannot be listed: {exc}"))
            else:
                report.remote_checked = True
                for md5, rel in sorted(objects.items()):
                    if md5 not in on_remote:
                        bad(Problem("remote", md5, f"not on remote ({rel})"))
        _privacy_problems(data_dir, bad)
    return report


def _staging_problems(data_dir: Path, add: Callable[[Problem], None]) -> None:
    staging = staging_root(data_dir)
    if not staging.is_dir():
        return
    for path in sorted(staging.iterdir()):
        if path.name.endswith(SWAP_JOURNAL_SUFFIX):
            add(
                Problem(
                    "staging", str(path), "an interrupted replace: the next publish rolls it back/forward"
                )
            )
        elif path.name == FORGET_INTENT:
            add(Problem("staging", str(path), "an interrupted forget: run `recops data forget` again"))
        elif path.name.startswith("."):
            add(Problem("staging", str(path), "a leftover temporary copy: the next publish deletes it"))


def _privacy_problems(data_dir: Path, bad: Callable[[Problem], None]) -> None:
    forgotten = read_forgotten(data_dir)
    if not forgotten:
        return
    for batch in published_batches(data_dir):
        path = batch / f"{EVENTS_FILE}.parquet"
        try:
            users = read_published_table(path, ["user_id"])["user_id"]
        except PublishedDataError:
            continue  # already reported as unreadable
        hits = int(users.isin(forgotten).sum())
        if hits:
            bad(Problem("privacy", f"{data_dir.name}/{batch.name}", f"{hits} event(s) of forgotten users"))
