"""Audit trail of registry alias moves, and the lock that serialises them.

Every move of ``champion``, ``challenger`` or ``previous`` (and every blocked promotion) is one row of the
``alias_audit`` table of the metadata database (``settings.metadata_db_url``: SQLite by default, PostgreSQL
in production). Rows are never deleted, so the table answers "which version was champion at time T" long
after MLflow's own alias state has moved on.

**Intent first.** A move is written as an *intent* (``state='pending'``, committed) before MLflow's alias
changes, and marked ``done`` right after (``aborted`` when the alias did not move). A process killed in
between leaves a pending row; the next alias-moving command and ``recops audit`` reconcile it against the
alias MLflow actually holds (:func:`registry.aliases.reconcile_intents`). Only ``done`` rows (and rows
written before states existed) count as moves: :meth:`AuditLog.alias_at` never names a version from a
pending or aborted intent. The state column is the only value ever updated, once, from ``pending``.

:meth:`AuditLog.lock` is the mutual exclusion for alias moves across processes and machines, held on its
own so intents commit independently of it (:mod:`registry.locks`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from core.errors import RecopsError
from core.settings import Settings
from registry.locks import LockError, hold_lock, lock_key

__all__ = ["AuditError", "AuditLog", "AuditRecord", "audit_log", "lock_key", "to_utc"]

Action = Literal["register", "promote", "rollback", "blocked"]
ACTIONS: tuple[Action, ...] = ("register", "promote", "rollback", "blocked")
#: Actions that really moved an alias (``blocked`` records a refused move).
MOVE_ACTIONS: tuple[Action, ...] = ("register", "promote", "rollback")
State = Literal["pending", "done", "aborted"]
PENDING: State = "pending"
DONE: State = "done"
ABORTED: State = "aborted"
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
    # pending | done | aborted; NULL: a row written before intents existed (a completed move)
    sa.Column("state", sa.String(16), nullable=True),
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
    state: str = DONE

    @property
    def is_move(self) -> bool:
        """True when this row is an alias move that happened (not blocked, pending or aborted)."""
        return self.action in MOVE_ACTIONS and self.state == DONE


def to_utc(ts: datetime) -> datetime:
    """Naive timestamps are taken as UTC; aware ones are converted to UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


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
    """Log of alias moves in the metadata database (created on first use); see the module docstring."""

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
        self._add_state_column()
        self._ensured = True

    def _add_state_column(self) -> None:
        """Upgrade a table created before intents existed (its rows keep NULL: completed moves)."""
        for attempt in range(3):
            columns = {c["name"] for c in sa.inspect(self.engine).get_columns(TABLE_NAME)}
            if "state" in columns:
                return
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(f"ALTER TABLE {TABLE_NAME} ADD COLUMN state VARCHAR(16)"))
                return
            except sa.exc.DBAPIError as exc:  # another process added it first
                if attempt == 2:
                    raise AuditError(f"cannot upgrade the audit table: {exc.orig}") from exc

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
        state: State = DONE,
    ) -> AuditRecord:
        """Append one row and commit it. Alias moves go through :func:`registry.aliases.move_alias`, which
        writes a ``pending`` intent here before it moves the alias and :meth:`settle` s it afterwards."""
        if action not in ACTIONS:
            raise AuditError(f"unknown audit action {action!r}; expected one of {ACTIONS}")
        if state not in (PENDING, DONE, ABORTED):
            raise AuditError(f"unknown audit state {state!r}")
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
            "state": state,
        }
        statement = sa.insert(alias_audit).values(**values).returning(alias_audit.c.id)
        with self.engine.begin() as conn:
            row_id = int(conn.execute(statement).scalar_one())
        return AuditRecord(id=row_id, **values)  # type: ignore[arg-type]

    def settle(self, row_id: int, state: State) -> bool:
        """Mark a pending intent ``done`` or ``aborted`` (committed); False when it was not pending."""
        if state not in (DONE, ABORTED):
            raise AuditError(f"an intent settles as done or aborted, not {state!r}")
        self.ensure_schema()
        statement = (
            sa.update(alias_audit)
            .where(alias_audit.c.id == row_id, alias_audit.c.state == PENDING)
            .values(state=state)
        )
        with self.engine.begin() as conn:
            return int(conn.execute(statement).rowcount or 0) == 1

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the cross-process lock ``name`` for the ``with`` block (see :mod:`registry.locks`).

        Rows written meanwhile commit on their own (intents must survive a crash inside the block).
        Raises:
            AuditError: another holder kept the lock for ``lock_timeout_s`` seconds, or the database failed.
        """
        self.ensure_schema()
        try:
            with hold_lock(self.engine, name, self.lock_timeout_s):
                yield
        except LockError as exc:
            raise AuditError(str(exc)) from exc

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
        """The version ``alias`` pointed to at ``ts``: the target of the last completed move at or before it
        (pending and aborted intents and blocked promotions never count)."""
        self.ensure_schema()
        query = (
            sa.select(alias_audit.c.to_version)
            .where(
                alias_audit.c.model_name == model_name,
                alias_audit.c.alias == alias,
                alias_audit.c.action.in_(MOVE_ACTIONS),
                _completed(),
                alias_audit.c.at <= to_utc(ts),
            )
            .order_by(alias_audit.c.at.desc(), alias_audit.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).first()
        return None if found is None or found[0] is None else int(found[0])

    def pending(self, model_name: str) -> list[AuditRecord]:
        """Intents of ``model_name`` not settled yet, oldest first (left by a process that died)."""
        self.ensure_schema()
        query = (
            sa.select(alias_audit)
            .where(alias_audit.c.model_name == model_name, alias_audit.c.state == PENDING)
            .order_by(alias_audit.c.id)
        )
        with self.engine.connect() as conn:
            return [_to_record(row) for row in conn.execute(query).mappings().all()]

    def next_move(self, row: AuditRecord) -> AuditRecord | None:
        """The first later row that moved (or meant to move) the same alias of the same model."""
        self.ensure_schema()
        query = (
            sa.select(alias_audit)
            .where(
                alias_audit.c.model_name == row.model_name,
                alias_audit.c.alias == row.alias,
                alias_audit.c.action.in_(MOVE_ACTIONS),
                alias_audit.c.id > row.id,
            )
            .order_by(alias_audit.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        return None if found is None else _to_record(found)

    def was_at(self, model_name: str, alias: str, version: int) -> bool:
        """True when a completed move shows ``alias`` on ``version`` at some time: as the move's target, or
        as what it held before the move (a version set before the audit trail existed shows up that way)."""
        self.ensure_schema()
        query = (
            sa.select(alias_audit.c.id)
            .where(
                alias_audit.c.model_name == model_name,
                alias_audit.c.alias == alias,
                alias_audit.c.action.in_(MOVE_ACTIONS),
                _completed(),
                sa.or_(alias_audit.c.to_version == version, alias_audit.c.from_version == version),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None


def _completed() -> sa.ColumnElement[bool]:
    """Rows that are completed moves: ``done``, or written before intents existed (NULL state)."""
    return sa.or_(alias_audit.c.state.is_(None), alias_audit.c.state == DONE)


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
        state=str(row.get("state") or DONE),
    )


def audit_log(settings: Settings) -> AuditLog:
    """The audit log of ``settings.metadata_db_url``."""
    return AuditLog(settings.metadata_db_url)
