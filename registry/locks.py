"""The cross-process lock that serialises alias moves, held apart from any transaction.

Audit intents must commit while the lock is held (a crash right after the alias move must leave a committed
intent behind), so the lock cannot be a database transaction:

* **PostgreSQL**: ``pg_advisory_lock`` (session level) on a dedicated connection in autocommit mode, waiting
  at most ``timeout_s`` (``lock_timeout``); unlocked at the end, and dropped by the server if the holder's
  connection dies (a killed process, a lost network).
* **SQLite**: an ``flock`` (:func:`core.fsio.exclusive_lock`) on ``.<database file>.<key>.lock`` next to the
  database; the kernel drops it when the holder dies.

Both exclude other processes, other machines sharing the database (PostgreSQL) and other threads of the same
process (each hold opens its own connection or file descriptor).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import RecopsError


class LockError(RecopsError):
    """The lock was held elsewhere for too long, or the database could not take it."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def lock_file(database: str | None, name: str) -> Path:
    """SQLite: the lock file of ``name`` next to the database file (in the temp folder for ``:memory:``)."""
    key = f"{lock_key(name) & 0xFFFFFFFFFFFFFFFF:016x}"
    if not database or database == ":memory:":
        return Path(tempfile.gettempdir()) / f"recops-memory-{key}.lock"
    db = Path(database).expanduser().resolve()
    return db.with_name(f".{db.name}.{key}.lock")


@contextmanager
def hold_lock(engine: Engine, name: str, timeout_s: float) -> Iterator[None]:
    """Hold the lock ``name`` of the database behind ``engine`` for the ``with`` block."""
    if engine.dialect.name == "sqlite":
        from core.fsio import LockTimeout, exclusive_lock

        try:
            with exclusive_lock(lock_file(engine.url.database, name), timeout_s=timeout_s):
                yield
        except LockTimeout as exc:
            raise LockError(f"could not take lock {name!r} within {timeout_s:.0f}s") from exc
        return
    yield from _pg_lock(engine, name, timeout_s)


def _pg_lock(engine: Engine, name: str, timeout_s: float) -> Iterator[None]:
    key = lock_key(name)
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        conn.execute(sa.text(f"SET lock_timeout = '{int(timeout_s * 1000)}ms'"))
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        conn.execute(sa.text("RESET lock_timeout"))
    except sa.exc.DBAPIError as exc:
        conn.invalidate()
        conn.close()
        if "lock timeout" in str(exc.orig):
            raise LockError(f"could not take lock {name!r} within {timeout_s:.0f}s") from exc
        raise LockError(f"cannot take lock {name!r} in the metadata database: {exc.orig}") from exc
    try:
        yield
    finally:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        except sa.exc.DBAPIError:
            conn.invalidate()  # the session ends, and the server drops its locks with it
        conn.close()
