"""Served recommendations and shoppers' feedback on them, kept durably in the metadata database.

The scorer records every list it serves (``recops_recommendations``) and the impressions, clicks, add-to-cart
and purchases shoppers report against a recommendation id (``recops_feedback``). A ``recops`` step exports the
feedback as event batches for the next training run, and the monitor computes click-through and conversion
per model version and variant from it. SQL rather than Redis because our Redis keeps nothing on disk.

The tables live in the metadata database (``Settings.metadata_db_url``: SQLite by default, PostgreSQL in
production) under a :class:`~sqlalchemy.MetaData` of their own. User ids are pseudonyms only
(:func:`core.privacy.pseudonymize_id`): a raw id is refused. Times are stored and returned as UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

from core.errors import RecopsError
from core.privacy import PSEUDONYM_PREFIX
from core.settings import Settings

FEEDBACK_KINDS: Final = ("impression", "click", "add_to_cart", "purchase")
RECOMMENDATIONS_TABLE: Final = "recops_recommendations"
FEEDBACK_TABLE: Final = "recops_feedback"
ID_MAX_LENGTH: Final = 200
_PSEUDONYM = re.compile(PSEUDONYM_PREFIX + r"[0-9a-f]{20}")


class FeedbackError(RecopsError, ValueError):
    """A feedback or recommendation row that cannot be stored as given (nothing of the batch was written)."""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware datetimes in, UTC-aware datetimes out, on SQLite (no time zones) and PostgreSQL."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise FeedbackError(f"timestamp {value.isoformat()} has no time zone (UTC expected)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

recommendations = sa.Table(
    RECOMMENDATIONS_TABLE,
    metadata,
    sa.Column("recommendation_id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("model_name", sa.String(256), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("variant", sa.String(32), nullable=False),
    sa.Column("items", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False, index=True),
)

feedback = sa.Table(
    FEEDBACK_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recommendation_id", sa.String(64), nullable=False, index=True),
    sa.Column("user_id", sa.String(64), nullable=False, index=True),
    sa.Column("item_id", sa.String(ID_MAX_LENGTH), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("variant", sa.String(32), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False, index=True),
    sa.CheckConstraint(
        "kind IN (" + ", ".join(f"'{k}'" for k in FEEDBACK_KINDS) + ")", name="recops_feedback_kind"
    ),
)


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    """Write-ahead logging on a SQLite file: a commit appends to the log (one fsync) instead of rewriting
    pages through a rollback journal, and readers (the export step, ``recops audit``) never block the
    service's writer. ``synchronous`` stays FULL: a committed row survives a power cut."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30}, json_serializer=_json_text)
        sa.event.listen(engine, "connect", _sqlite_wal)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, json_serializer=_json_text)


def _json_text(value: Any) -> str:
    """JSON columns (a served list's items) written by orjson: a third of ``json.dumps``'s time."""
    return orjson.dumps(value).decode()


def feedback_engine(settings: Settings) -> Engine:
    """The engine of the metadata database (one per URL per process)."""
    return _engine_for(settings.metadata_db_url)


def create_feedback_tables(engine: Engine) -> None:
    """Create both tables and their indexes if missing (safe to call from several processes)."""
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.SQLAlchemyError:
        # Another process created them between the check and the CREATE: the second check sees them.
        metadata.create_all(engine, checkfirst=True)


def _check_user(user_id: object, where: str) -> str:
    if not isinstance(user_id, str) or not _PSEUDONYM.fullmatch(user_id):
        raise FeedbackError(f"{where}: user_id must be a pseudonym (p_ + 20 hex), never a raw id")
    return user_id


def _check_text(value: object, name: str, where: str, max_length: int = ID_MAX_LENGTH) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise FeedbackError(f"{where}: {name} must be a non-empty string of at most {max_length} characters")
    return value


def _check_items(items: Sequence[str], where: str) -> list[str]:
    """The served item ids (one pass for the usual all-valid list; the first bad one is named)."""
    checked = list(items)
    if not all(type(item) is str and 0 < len(item) <= ID_MAX_LENGTH for item in checked):
        for item in checked:
            _check_text(item, "item id", where)
    return checked


def _check_time(value: object, name: str, where: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise FeedbackError(f"{where}: {name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _check_version(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FeedbackError(f"{where}: model_version must be a non-negative integer")
    return value


def recommendation_row(
    *,
    recommendation_id: str,
    user_id: str,
    model_name: str,
    model_version: int,
    variant: str,
    items: Sequence[str],
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One checked ``recops_recommendations`` row (raises :class:`FeedbackError` on a bad value)."""
    where = f"recommendation {recommendation_id!r}"
    return {
        "recommendation_id": _check_text(recommendation_id, "recommendation_id", where, 64),
        "user_id": _check_user(user_id, where),
        "model_name": _check_text(model_name, "model_name", where, 256),
        "model_version": _check_version(model_version, where),
        "variant": _check_text(variant, "variant", where, 32),
        "items": _check_items(items, where),
        "created_at": _check_time(created_at or datetime.now(UTC), "created_at", where),
    }


def feedback_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One checked ``recops_feedback`` row from a mapping with the table's columns (``id`` excluded)."""
    where = f"feedback on {row.get('recommendation_id')!r}"
    kind = row.get("kind")
    if kind not in FEEDBACK_KINDS:
        raise FeedbackError(f"{where}: kind {kind!r} is not one of {', '.join(FEEDBACK_KINDS)}")
    return {
        "recommendation_id": _check_text(row.get("recommendation_id"), "recommendation_id", where, 64),
        "user_id": _check_user(row.get("user_id"), where),
        "item_id": _check_text(row.get("item_id"), "item_id", where),
        "kind": kind,
        "model_version": _check_version(row.get("model_version"), where),
        "variant": _check_text(row.get("variant"), "variant", where, 32),
        "ts": _check_time(row.get("ts"), "ts", where),
    }


def record_recommendations(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert served lists (mappings as :func:`recommendation_row` returns) in one transaction.

    A recommendation id already stored is left as it was (a retried write does not fail the batch): on
    SQLite and PostgreSQL by ``INSERT ... ON CONFLICT DO NOTHING`` (one statement, no read first), on
    other databases by reading the batch's ids first. Returns the number of rows inserted.
    """
    checked = [recommendation_row(**dict(row)) for row in rows]
    if not checked:
        return 0
    unique = list({row["recommendation_id"]: row for row in checked}.values())
    dialect = engine.dialect.name
    with engine.begin() as conn:
        if dialect in ("sqlite", "postgresql"):
            insert = _insert_ignoring_stored(dialect)
            result = conn.execute(insert, unique)
            return max(int(result.rowcount), 0)
        ids = [row["recommendation_id"] for row in unique]
        existing = set(
            conn.scalars(
                sa.select(recommendations.c.recommendation_id).where(
                    recommendations.c.recommendation_id.in_(ids)
                )
            )
        )
        fresh = [row for row in unique if row["recommendation_id"] not in existing]
        if fresh:
            conn.execute(recommendations.insert(), fresh)
    return len(fresh)


@lru_cache(maxsize=2)
def _insert_ignoring_stored(dialect: str) -> Any:
    """``INSERT INTO recops_recommendations ... ON CONFLICT (recommendation_id) DO NOTHING``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(recommendations).on_conflict_do_nothing(index_elements=["recommendation_id"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(recommendations).on_conflict_do_nothing(index_elements=["recommendation_id"])


def record_recommendation(
    engine: Engine,
    *,
    recommendation_id: str,
    user_id: str,
    model_name: str,
    model_version: int,
    variant: str,
    items: Sequence[str],
    created_at: datetime | None = None,
) -> None:
    """Insert one served list (see :func:`record_recommendations`)."""
    record_recommendations(
        engine,
        [
            {
                "recommendation_id": recommendation_id,
                "user_id": user_id,
                "model_name": model_name,
                "model_version": model_version,
                "variant": variant,
                "items": list(items),
                "created_at": created_at,
            }
        ],
    )


def record_feedback(engine: Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert feedback rows in one transaction: all or none (every row is checked first).

    Returns the number of rows inserted. Raises :class:`FeedbackError` naming the first bad row.
    """
    checked = [feedback_row(row) for row in rows]
    if checked:
        with engine.begin() as conn:
            conn.execute(feedback.insert(), checked)
    return len(checked)


def _window(column: Any, since: datetime | None, until: datetime | None) -> list[Any]:
    clauses = []
    if since is not None:
        clauses.append(column >= _check_time(since, "since", "read"))
    if until is not None:
        clauses.append(column < _check_time(until, "until", "read"))
    return clauses


def read_feedback(
    engine: Engine, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Feedback rows with ``since <= ts < until`` (either bound optional), oldest first, ``ts`` in UTC."""
    query = (
        sa.select(feedback)
        .where(*_window(feedback.c.ts, since, until))
        .order_by(feedback.c.ts, feedback.c.id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def read_recommendations(
    engine: Engine, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Served lists with ``since <= created_at < until``, oldest first."""
    table = recommendations
    query = (
        sa.select(table)
        .where(*_window(table.c.created_at, since, until))
        .order_by(table.c.created_at, table.c.recommendation_id)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def forget_feedback(engine: Engine, pseudonym: str) -> int:
    """Delete every feedback row and served list of one shopper; returns the number of rows deleted."""
    _check_user(pseudonym, "forget")
    with engine.begin() as conn:
        deleted = conn.execute(sa.delete(feedback).where(feedback.c.user_id == pseudonym)).rowcount
        deleted += conn.execute(
            sa.delete(recommendations).where(recommendations.c.user_id == pseudonym)
        ).rowcount
    return int(deleted)
