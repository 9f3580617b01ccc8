"""Atomic file and folder writes, fsync and the exclusive lock: the one helper every writer uses.

Readers of a path written here see the old content or the new one, never half of either:

* a **file** is written to a hidden temporary file in the same folder, flushed and fsynced, renamed over
  the target (``os.replace``), and the folder is fsynced so the rename survives a crash
  (:func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_file` for writers that need a path);
* a **folder** is built in a hidden temporary folder on the same filesystem and renamed into place; an
  existing folder is swapped out and restored if the swap fails (:func:`staged_dir`, :func:`replace_dir`);
* an **exclusive lock** (:func:`exclusive_lock`) is an ``flock`` held through :mod:`filelock`; the kernel
  drops it when the process dies, so a crash never leaves it stuck.

Everything here is standard library plus ``filelock``, so every layer (``models``, ``registry``,
``pipelines``, ``service``) can use it.
"""

from __future__ import annotations

import os
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


def replace_dir(new: Path, target: Path, *, aside_dir: Path | None = None) -> None:
    """Move folder ``new`` to ``target``, swapping out an existing ``target`` (restored if the swap fails).

    All folders must lie on the same filesystem. The old folder is moved aside (into ``aside_dir``, default
    next to ``target`` under a hidden name) and deleted after the new one is in place.

    Raises:
        OSError: the rename failed (``target`` is then as it was).
    """
    if not target.exists():
        os.rename(new, target)
        fsync_path(target.parent)
        return
    aside = _hidden_sibling(aside_dir / target.name if aside_dir is not None else target, "old")
    os.rename(target, aside)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(aside, target)
        raise
    fsync_path(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


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
