"""The alias audit trail: append-only rows, point-in-time champion, and the cross-process lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.audit import AuditError, AuditLog, lock_key

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _log(tmp_path: Path) -> AuditLog:
    return AuditLog(f"sqlite:///{tmp_path / 'state' / 'recops.db'}", lock_timeout_s=5)


def _moves(log: AuditLog, model: str = "m") -> None:
    log.record(
        actor="a",
        model_name=model,
        alias="champion",
        from_version=None,
        to_version=1,
        action="promote",
        at=T0,
    )
    log.record(
        actor="b",
        model_name=model,
        alias="champion",
        from_version=1,
        to_version=3,
        action="blocked",
        reason="worse",
        at=T0 + timedelta(hours=1),
    )
    log.record(
        actor="a", model_name=model, alias="champion", from_version=1, to_version=2, action="promote",
        at=T0 + timedelta(hours=2), metrics={"ndcg_at_10": 0.31, "nan": float("nan")},
    )  # fmt: skip
    log.record(
        actor="ops", model_name=model, alias="champion", from_version=2, to_version=1, action="rollback",
        at=T0 + timedelta(hours=3), reason="bad clicks",
    )  # fmt: skip


def test_champion_at_answers_point_in_time_and_ignores_blocked(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _moves(log)
    _moves(log, model="other")  # another model's rows must not leak in
    assert log.champion_at(T0 - timedelta(seconds=1), "m") is None
    assert log.champion_at(T0, "m") == 1
    assert log.champion_at(T0 + timedelta(minutes=90), "m") == 1  # the blocked attempt moved nothing
    assert log.champion_at(T0 + timedelta(hours=2, minutes=1), "m") == 2
    assert log.champion_at(T0 + timedelta(days=1), "m") == 1
    # naive timestamps are read as UTC, other zones are converted
    assert log.champion_at(datetime(2026, 3, 1, 14, 30), "m") == 2
    assert log.champion_at(datetime(2026, 3, 1, 15, 30, tzinfo=UTC).astimezone(), "m") == 1


def test_history_is_append_only_ordered_and_keeps_metrics(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _moves(log)
    rows = log.history("m")
    assert [r.action for r in rows] == ["promote", "blocked", "promote", "rollback"]
    assert [r.to_version for r in rows] == [1, 3, 2, 1]
    assert rows[2].metrics == {"ndcg_at_10": 0.31, "nan": None}
    assert rows[3].reason == "bad clicks" and rows[3].actor == "ops"
    assert all(r.at.tzinfo is not None for r in rows)
    assert [r.action for r in log.history("m", limit=2)] == ["promote", "rollback"]
    # a second AuditLog on the same database sees the same rows (table created once, idempotently)
    assert len(_log(tmp_path).history()) == 4


def test_unknown_action_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="unknown audit action"):
        _log(tmp_path).record(
            actor="a",
            model_name="m",
            alias="champion",
            from_version=None,
            to_version=1,
            action="delete",  # type: ignore[arg-type]
        )


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("recops:registry:a") == lock_key("recops:registry:a")
    assert lock_key("recops:registry:a") != lock_key("recops:registry:b")
    assert -(2**63) <= lock_key("x") < 2**63


def _exclusive_sections(log_factory: Callable[[], AuditLog]) -> list[tuple[str, float, float]]:
    """Two threads take the same lock; each records (name, entered, left)."""
    spans: list[tuple[str, float, float]] = []
    barrier = threading.Barrier(2)

    def worker(name: str) -> None:
        log = log_factory()
        barrier.wait()
        with log.lock("recops:registry:m") as conn:
            entered = time.monotonic()
            time.sleep(0.3)
            log.record(actor=name, model_name="m", alias="champion", from_version=None, to_version=1,
                       action="promote", conn=conn)  # fmt: skip
            spans.append((name, entered, time.monotonic()))
        log.dispose()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return sorted(spans, key=lambda s: s[1])


def test_sqlite_lock_serialises_writers_and_commits_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recops.db'}"
    _log_ = AuditLog(url)
    _log_.ensure_schema()
    spans = _exclusive_sections(lambda: AuditLog(url, lock_timeout_s=10))
    assert len(spans) == 2
    assert spans[1][1] >= spans[0][2] - 0.01  # the second entered only after the first left
    assert sorted(r.actor for r in _log_.history("m")) == ["t1", "t2"]


def test_lock_releases_and_keeps_rows_when_the_block_raises(tmp_path: Path) -> None:
    log = _log(tmp_path)
    with pytest.raises(RuntimeError), log.lock("x") as conn:
        log.record(actor="a", model_name="m", alias="previous", from_version=None, to_version=1,
                   action="promote", conn=conn)  # fmt: skip
        raise RuntimeError("alias move failed half-way")
    with log.lock("x"):  # would time out if the first lock were still held
        pass
    assert [r.alias for r in log.history("m")] == ["previous"]


@pytest.mark.integration
def test_postgres_audit_and_advisory_lock(make_pg_database: Callable[[], str]) -> None:
    url = make_pg_database()
    log = AuditLog(url)
    _moves(log)
    assert log.champion_at(T0 + timedelta(minutes=90), "m") == 1
    assert log.champion_at(T0 + timedelta(hours=2, minutes=1), "m") == 2
    assert log.history("m")[2].metrics == {"ndcg_at_10": 0.31, "nan": None}
    spans = _exclusive_sections(lambda: AuditLog(url, lock_timeout_s=10))
    assert spans[1][1] >= spans[0][2] - 0.01
    assert len(log.history("m")) == 6
    log.dispose()


def test_postgres_url_must_use_psycopg2() -> None:
    with pytest.raises(AuditError, match="psycopg2"):
        AuditLog("postgresql://u@localhost/db")
