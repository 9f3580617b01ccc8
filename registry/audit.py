"""Audit trail of registry alias moves, and the lock that serialises them.

Every move of ``champion``, ``challenger`` or ``previous`` (and every blocked promotion) appends one row to
the ``alias_audit`` table of the metadata database (``settings.metadata_db_url``: SQLite by default,
PostgreSQL in production). Rows are never updated or deleted, so the table answers "which version was
champion at time T" long after MLflow's own alias state has moved on.

:meth:`AuditLog.lock` is the mutual exclusion for alias moves across processes and machines: a
transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` (the database write lock) on SQLite.
Audit rows written through the connection it yields commit together with the release of the lock.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import RecopsError
from core.settings import Settings

Action = Literal["register", "promote", "rollback", "blocked"]
ACTIONS: tuple[Action, ...] = ("register", "promote", "rollback", "blocked")
#: Actions that really moved an alias (``blocked`` records a refused move).
MOVE_ACTIONS: tuple[Action, ...] = ("register", "promote", "rollback")
TABLE_NAME = "alias_audit"
DEFAULT_LOCK_TIMEOUT_S = 60.0

metadata = sa.MetaData()
alias_audit = sa.Table(
    TABLE_NAME,
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("model_name", sa.String(256), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("metrics", sa.JSON, nullable=True),
)


class AuditError(RecopsError):
    """The audit database cannot be reached, or a lock could not be taken in time."""


@dataclass(frozen=True)
class AuditRecord:
    """One row of ``alias_audit``."""

    id: int
    at: datetime
    actor: str
    model_name: str
    alias: str
    from_version: int | None
    to_version: int | None
    action: str
    reason: str
    metrics: dict[str, Any]


def to_utc(ts: datetime) -> datetime:
    """Naive timestamps are taken as UTC; aware ones are converted to UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` derived from a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def _clean(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON (and PostgreSQL's json type) has no NaN or infinity
    return value


def _json_safe(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Plain JSON values only: numpy scalars become floats, NaN and infinities become null."""
    if not metrics:
        return {}
    plain = json.loads(json.dumps(dict(metrics), default=float))
    out: dict[str, Any] = _clean(plain)
    return out


class AuditLog:
    """Append-only log of alias moves in the metadata database (created on first use)."""

    def __init__(self, url: str, *, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        self.engine: Engine = self._make_engine(url, lock_timeout_s)
        self._ensured = False

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @staticmethod
    def _make_engine(url: str, lock_timeout_s: float) -> Engine:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise AuditError(f"invalid metadata_db_url {url!r}: {exc}") from exc
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:":
                from pathlib import Path

                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # timeout: how long a writer waits for the database lock held by another process.
            return sa.create_engine(url, connect_args={"timeout": lock_timeout_s})
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() not in ("psycopg2",):
            raise AuditError(
                f"use a postgresql+psycopg2:// URL for the metadata database, not {parsed.drivername}"
            )
        return sa.create_engine(url, pool_pre_ping=True)

    def ensure_schema(self) -> None:
        """Create the audit table if it is missing (idempotent, safe to call from many processes)."""
        if self._ensured:
            return
        for attempt in range(3):
            try:
                metadata.create_all(self.engine, checkfirst=True)
                break
            except sa.exc.DBAPIError as exc:
                # Another process created the table (or its index) between the check and the create.
                racing = "already exists" in str(exc) or isinstance(exc, sa.exc.IntegrityError)
                if racing and attempt < 2:
                    continue
                raise AuditError(
                    f"cannot prepare the audit table in the metadata database: {exc.orig}"
                ) from exc
        self._ensured = True

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------------------------ writing

    def record(
        self,
        *,
        actor: str,
        model_name: str,
        alias: str,
        from_version: int | None,
        to_version: int | None,
        action: Action,
        reason: str = "",
        metrics: Mapping[str, Any] | None = None,
        at: datetime | None = None,
        conn: Connection | None = None,
    ) -> AuditRecord:
        """Append one row; inside :meth:`lock` pass its connection so the row commits with the lock."""
        if action not in ACTIONS:
            raise AuditError(f"unknown audit action {action!r}; expected one of {ACTIONS}")
        self.ensure_schema()
        values = {
            "at": to_utc(at or datetime.now(UTC)),
            "actor": actor or "unknown",
            "model_name": model_name,
            "alias": alias,
            "from_version": from_version,
            "to_version": to_version,
            "action": action,
            "reason": reason,
            "metrics": _json_safe(metrics),
        }
        statement = sa.insert(alias_audit).values(**values).returning(alias_audit.c.id)
        if conn is not None:
            row_id = int(conn.execute(statement).scalar_one())
        else:
            with self.engine.begin() as own:
                row_id = int(own.execute(statement).scalar_one())
        return AuditRecord(id=row_id, **values)  # type: ignore[arg-type]

    @contextmanager
    def lock(self, name: str) -> Iterator[Connection]:
        """Hold the cross-process lock ``name`` for the ``with`` block; yields the locked connection.

        PostgreSQL: ``pg_advisory_xact_lock`` inside a transaction (released at commit or rollback).
        SQLite: ``BEGIN IMMEDIATE`` takes the database write lock. Rows written with the yielded
        connection commit when the block exits, also when it raises (moves already made stay recorded).
        """
        self.ensure_schema()
        if self.is_sqlite:
            with self.engine.connect() as raw:
                conn = raw.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except sa.exc.OperationalError as exc:
                    raise AuditError(
                        f"could not take lock {name!r} within {self.lock_timeout_s:.0f}s"
                    ) from exc
                try:
                    yield conn
                finally:
                    conn.exec_driver_sql("COMMIT")
            return
        with self.engine.connect() as conn:
            conn.begin()
            try:
                conn.execute(sa.text(f"SET LOCAL lock_timeout = '{int(self.lock_timeout_s * 1000)}ms'"))
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
            except sa.exc.OperationalError as exc:
                conn.rollback()
                raise AuditError(f"could not take lock {name!r} within {self.lock_timeout_s:.0f}s") from exc
            try:
                yield conn
            finally:
                conn.commit()

    # ------------------------------------------------------------------------------------ reading

    def history(
        self, model_name: str | None = None, *, alias: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Rows oldest first (optionally one model / one alias, the newest ``limit`` of them)."""
        self.ensure_schema()
        query = sa.select(alias_audit)
        if model_name is not None:
            query = query.where(alias_audit.c.model_name == model_name)
        if alias is not None:
            query = query.where(alias_audit.c.alias == alias)
        query = query.order_by(alias_audit.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_to_record(row) for row in reversed(rows)]

    def champion_at(self, ts: datetime, model_name: str) -> int | None:
        """The version that held ``champion`` at ``ts`` according to the log (None: no champion yet)."""
        return self.alias_at(ts, model_name, "champion")

    def alias_at(self, ts: datetime, model_name: str, alias: str) -> int | None:
        """The version ``alias`` pointed to at ``ts``: the target of the last real move at or before it."""
        self.ensure_schema()
        query = (
            sa.select(alias_audit.c.to_version)
            .where(
                alias_audit.c.model_name == model_name,
                alias_audit.c.alias == alias,
                alias_audit.c.action.in_(MOVE_ACTIONS),
                alias_audit.c.at <= to_utc(ts),
            )
            .order_by(alias_audit.c.at.desc(), alias_audit.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None or found[0] is None else int(found[0])


def _to_record(row: sa.RowMapping) -> AuditRecord:
    metrics = row["metrics"]
    if isinstance(metrics, str):  # some drivers hand JSON back as text
        metrics = json.loads(metrics)
    return AuditRecord(
        id=int(row["id"]),
        at=to_utc(row["at"]),
        actor=str(row["actor"]),
        model_name=str(row["model_name"]),
        alias=str(row["alias"]),
        from_version=None if row["from_version"] is None else int(row["from_version"]),
        to_version=None if row["to_version"] is None else int(row["to_version"]),
        action=str(row["action"]),
        reason=str(row["reason"] or ""),
        metrics=dict(metrics or {}),
    )


def audit_log(settings: Settings) -> AuditLog:
    """The audit log of ``settings.metadata_db_url``."""
    return AuditLog(settings.metadata_db_url)
