"""The alias audit trail: rows, intents and their states, point-in-time champion, the upgrade of an older
table, and the cross-process lock (held by another process, released when that process is killed)."""

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
        with log.lock("recops:registry:m"):
            entered = time.monotonic()
            time.sleep(0.3)
            log.record(actor=name, model_name="m", alias="champion", from_version=None, to_version=1,
                       action="promote")  # fmt: skip
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
    with pytest.raises(RuntimeError), log.lock("x"):
        log.record(actor="a", model_name="m", alias="previous", from_version=None, to_version=1,
                   action="promote")  # fmt: skip
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


# ------------------------------------------------------------------------------------ intents and states


def _intent(log: AuditLog, to: int, at: datetime, frm: int | None = None) -> int:
    return log.record(
        actor="a", model_name="m", alias="champion", from_version=frm, to_version=to, action="rollback",
        at=at, state="pending",
    ).id  # fmt: skip


def test_pending_and_aborted_intents_never_count_as_moves(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _moves(log)  # champion: v1 at T0, v2 at +2h, v1 again at +3h
    later = T0 + timedelta(hours=4)
    pending = _intent(log, 5, later, frm=1)
    assert [r.id for r in log.pending("m")] == [pending]
    assert log.champion_at(later + timedelta(minutes=1), "m") == 1  # a pending intent is not a move
    assert not log.was_at("m", "champion", 5)
    assert log.settle(pending, "aborted") and not log.settle(pending, "done")  # settled once only
    assert log.champion_at(later + timedelta(minutes=1), "m") == 1 and log.pending("m") == []
    done = _intent(log, 6, later + timedelta(hours=1), frm=1)
    log.settle(done, "done")
    assert log.champion_at(later + timedelta(hours=2), "m") == 6 and log.was_at("m", "champion", 6)
    states = [(r.to_version, r.state, r.is_move) for r in log.history("m")[-2:]]
    assert states == [(5, "aborted", False), (6, "done", True)]
    with pytest.raises(AuditError, match="done or aborted"):
        log.settle(done, "pending")  # type: ignore[arg-type]


def test_was_at_counts_targets_and_what_a_move_replaced(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _moves(log)
    log.record(actor="a", model_name="m", alias="champion", from_version=7, to_version=8, action="promote")
    assert log.was_at("m", "champion", 7)  # set before the audit trail existed, replaced by an audited move
    assert log.was_at("m", "champion", 2) and log.was_at("m", "champion", 8)
    assert not log.was_at("m", "champion", 3)  # only ever blocked
    assert not log.was_at("m", "previous", 2) and not log.was_at("other", "champion", 2)


def test_an_older_table_without_states_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as the previous release created it, with one move
        conn.execute(sa.text(
            "CREATE TABLE alias_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at DATETIME NOT NULL, "
            "actor VARCHAR(200) NOT NULL, model_name VARCHAR(256) NOT NULL, alias VARCHAR(64) NOT NULL, "
            "from_version INTEGER, to_version INTEGER, action VARCHAR(16) NOT NULL, reason TEXT NOT NULL, "
            "metrics JSON)"
        ))  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO alias_audit (at, actor, model_name, alias, from_version, to_version, action, "
            "reason, metrics) VALUES "
            "('2026-03-01 12:00:00.000000', 'old', 'm', 'champion', NULL, 4, 'promote', '', '{}')"
        ))  # fmt: skip
    engine.dispose()
    log = AuditLog(url)
    assert log.champion_at(T0 + timedelta(minutes=1), "m") == 4  # the old row is a completed move
    (row,) = log.history("m")
    assert (row.actor, row.state, row.is_move) == ("old", "done", True)
    _intent(log, 5, T0 + timedelta(hours=1), frm=4)
    assert log.champion_at(T0 + timedelta(hours=2), "m") == 4 and len(AuditLog(url).pending("m")) == 1


_HOLDER = """
import sys, time
from registry.audit import AuditLog
log = AuditLog(sys.argv[1], lock_timeout_s=5)
with log.lock("recops:registry:m"):
    log.record(actor="holder", model_name="m", alias="champion", from_version=None, to_version=9,
               action="promote", state="pending")
    print("held", flush=True)
    time.sleep(600)
"""


def _lock_survives_only_its_holder(url: str) -> None:
    """Another process takes the lock and writes an intent inside it; the intent is visible at once (it
    committed on its own), the lock excludes us while the holder lives, and SIGKILL releases it."""
    import os
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        log = AuditLog(url, lock_timeout_s=1)
        assert [r.to_version for r in log.pending("m")] == [9]  # committed while the lock is still held
        with pytest.raises(AuditError, match="could not take lock"), log.lock("recops:registry:m"):
            pass
        with log.lock("recops:registry:other"):  # another model's lock is independent
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with AuditLog(url, lock_timeout_s=30).lock("recops:registry:m"):  # released by the holder's death
            pass
        log.dispose()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_sqlite_lock_is_cross_process_and_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'recops.db'}"
    AuditLog(url).ensure_schema()
    _lock_survives_only_its_holder(url)


@pytest.mark.integration
def test_postgres_lock_is_cross_process_and_released_when_the_holder_is_killed(
    make_pg_database: Callable[[], str],
) -> None:
    url = make_pg_database()
    AuditLog(url).ensure_schema()
    _lock_survives_only_its_holder(url)
