"""Atomic file and folder writes, fsync and the exclusive lock: the one helper every writer uses.

Readers of a path written here see the old content or the new one, never half of either:

* a **file** is written to a hidden temporary file in the same folder, flushed and fsynced, renamed over
  the target (``os.replace``), and the folder is fsynced so the rename survives a crash
  (:func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_file` for writers that need a path);
* a **folder** is built in a hidden temporary folder on the same filesystem and renamed into place; an
  existing folder is swapped out and restored if the swap fails (:func:`staged_dir`, :func:`replace_dir`);
  the swap is journaled, so one interrupted by a crash is rolled back or forward by :func:`recover_staging`;
* an **exclusive lock** (:func:`exclusive_lock`) is an ``flock`` held through :mod:`filelock`; the kernel
  drops it when the process dies, so a crash never leaves it stuck.

Everything here is standard library plus ``filelock``, so every layer (``models``, ``registry``,
``pipelines``, ``service``) can use it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from core.errors import RecopsError

IfExists = Literal["refuse", "replace"]


class TargetExists(RecopsError, FileExistsError):
    """The target folder of a staged write already exists and replacing it was not asked for."""


class LockTimeout(RecopsError, TimeoutError):
    """Another process held an exclusive lock for longer than the caller was willing to wait."""


def fsync_path(path: Path) -> None:
    """Flush a file or a folder to disk (a folder: so a rename or a new entry in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (deepest first), then ``folder`` itself."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def _hidden_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_file(path: Path, *, tmp_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path`` atomically.

    Use it for writers that want a file name (``DataFrame.to_parquet(tmp)``). The temporary file is removed
    when the block raises, and ``path`` is left as it was.

    Args:
        path: the file to create or replace; its folder must exist.
        tmp_dir: where the temporary file is made instead (same filesystem), e.g. to keep it out of a
            folder that a tracker such as DVC watches.
    """
    path = Path(path)
    tmp = _hidden_sibling(tmp_dir / path.name if tmp_dir is not None else path, "tmp")
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    with atomic_file(path) as tmp, tmp.open("wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Create or replace ``path`` with ``text`` atomically and durably."""
    atomic_write_bytes(path, text.encode(encoding))


#: Journal of a folder swap (:func:`replace_dir`), written beside the copy moved aside.
SWAP_JOURNAL_SUFFIX = ".swap.json"
#: Names of the hidden temporary files and folders made here (``.<name>.tmp-<x>``, ``.<name>.old-<x>``).
_TEMP_NAME = re.compile(r"^\..+\.(tmp|old)-[A-Za-z0-9_]+$")


def replace_dir(new: Path, target: Path, *, aside_dir: Path | None = None) -> None:
    """Move folder ``new`` to ``target``, swapping out an existing ``target`` (restored if the swap fails).

    All folders must lie on the same filesystem. The old folder is moved aside (into ``aside_dir``, default
    next to ``target`` under a hidden name) and deleted after the new one is in place. Before the first
    rename a journal (``*.swap.json`` beside the aside copy) names the three folders, so a process killed
    between the two renames leaves enough for :func:`recover_staging` to put the old folder back; the
    journal is removed once the new folder is in place.

    Raises:
        OSError: the rename failed (``target`` is then as it was).
    """
    if not target.exists():
        os.rename(new, target)
        fsync_path(target.parent)
        return
    aside = _hidden_sibling(aside_dir / target.name if aside_dir is not None else target, "old")
    journal = aside.with_name(aside.name + SWAP_JOURNAL_SUFFIX)  # hidden, like the copies
    record = {"target": str(target.absolute()), "new": str(new.absolute()), "aside": str(aside.absolute())}
    atomic_write_text(journal, json.dumps(record, sort_keys=True))
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        fsync_path(target.parent)
        journal.unlink(missing_ok=True)
        raise
    fsync_path(target.parent)
    if aside.parent != target.parent:
        fsync_path(aside.parent)
    journal.unlink()  # the swap is done: from here on, recovery rolls forward (deletes the old copy)
    fsync_path(journal.parent)
    shutil.rmtree(aside, ignore_errors=True)


class SwapRecoveryError(RecopsError):
    """An interrupted folder swap left a state that cannot be repaired automatically."""


def recover_staging(staging: Path) -> list[str]:
    """Finish or undo the folder swaps interrupted in ``staging`` and delete leftover temporary copies.

    Call it only while holding the lock that serialises the writers using ``staging`` (their temporary
    copies are otherwise live). For each swap journal:

    * the swap had not replaced ``target`` yet (``target`` missing, or the new copy still waiting): it is
      rolled **back**: the old copy returns to ``target``, the new copy is deleted;
    * the new copy is already at ``target``: it is rolled **forward**: the old copy is deleted.

    Then every hidden temporary folder or file (``.<name>.tmp-*``, ``.<name>.old-*``) left by a killed
    writer is deleted. Other files (locks, intents) are left alone.

    Returns:
        One line per action, for a person (empty when there was nothing to do).

    Raises:
        SwapRecoveryError: a journal describes a state no swap can leave (e.g. both copies gone).
    """
    if not staging.is_dir():
        return []
    actions: list[str] = []
    for journal in sorted(staging.glob(f"*{SWAP_JOURNAL_SUFFIX}")):
        actions.append(_recover_swap(journal))
    for leftover in sorted(staging.iterdir()):
        if not _TEMP_NAME.match(leftover.name):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink(missing_ok=True)
        actions.append(f"deleted the leftover temporary copy {leftover}")
    if actions:
        fsync_path(staging)
    return actions


def _recover_swap(journal: Path) -> str:
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        target, new, aside = (Path(record[k]) for k in ("target", "new", "aside"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SwapRecoveryError(f"unreadable swap journal {journal} ({exc}); inspect and delete it") from exc
    if target.exists() and not aside.exists():
        # Killed before the old folder moved aside (or after it was deleted): target is whole.
        shutil.rmtree(new, ignore_errors=True)
        journal.unlink()
        return f"interrupted replace of {target}: it had not started, {target} kept as it was"
    if not target.exists() and aside.exists():
        os.rename(aside, target)  # roll back: the old folder returns
        fsync_path(target.parent)
        shutil.rmtree(new, ignore_errors=True)
        journal.unlink()
        return f"interrupted replace of {target}: rolled back, the previous copy is back in place"
    if target.exists() and aside.exists() and not new.exists():
        journal.unlink()  # roll forward: the new folder was in place, only the old copy remained
        fsync_path(journal.parent)
        shutil.rmtree(aside)
        return f"interrupted replace of {target}: rolled forward, the new copy is in place"
    raise SwapRecoveryError(
        f"interrupted replace of {target} cannot be repaired automatically (target "
        f"{'present' if target.exists() else 'missing'}, old copy {aside} "
        f"{'present' if aside.exists() else 'missing'}, new copy {new} "
        f"{'present' if new.exists() else 'missing'}); journal {journal}"
    )


@contextmanager
def staged_dir(
    target: Path, *, if_exists: IfExists = "refuse", staging: Path | None = None
) -> Iterator[Path]:
    """Yield an empty temporary folder; on a clean exit it becomes ``target`` in one rename.

    Args:
        target: the folder to create (or replace).
        if_exists: ``refuse`` raises :class:`TargetExists` when ``target`` exists (checked before and at the
            rename, so a concurrent writer cannot be overwritten); ``replace`` swaps it out.
        staging: where the temporary folder is made and a replaced folder is moved aside before it is
            deleted (default: ``target``'s parent); it must be on the same filesystem as ``target``.

    Raises:
        TargetExists: ``target`` exists and ``if_exists`` is ``refuse``.
    """
    target = Path(target)
    if if_exists == "refuse" and target.exists():
        raise TargetExists(f"{target} already exists")
    parent = staging if staging is not None else target.parent
    parent.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    try:
        yield work
        fsync_tree(work)
        if if_exists == "replace":
            replace_dir(work, target, aside_dir=staging)
        else:
            try:
                os.rename(work, target)  # fails on a non-empty target: never overwrites a concurrent writer
            except OSError as exc:
                if target.exists():
                    raise TargetExists(f"{target} already exists (written concurrently?)") from exc
                raise
            fsync_path(target.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def exclusive_lock(lock_file: Path, *, timeout_s: float, busy: str = "") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created with its folder if needed) for the block.

    The lock file itself is kept (deleting lock files races with other waiters). Locks taken through this
    function from different processes, or through different calls in one process, exclude each other.

    Args:
        lock_file: the lock file.
        timeout_s: how long to wait for another holder; 0 means try once.
        busy: what the holder is likely doing, for the timeout message (e.g. "another publish or forget").

    Raises:
        LockTimeout: the lock was held elsewhere for ``timeout_s`` seconds.
    """
    import filelock

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(lock_file, timeout=timeout_s, preserve_lock_file=True, fallback_to_soft=False)
    try:
        lock.acquire()
    except filelock.Timeout as exc:
        who = busy or "another process"
        raise LockTimeout(f"{who} holds {lock_file} (waited {timeout_s:.0f} s); try again later") from exc
    try:
        yield lock_file
    finally:
        lock.release()
