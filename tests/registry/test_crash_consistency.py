"""Audit trail and MLflow aliases stay consistent when a command is killed at the exact step that matters.

The real ``recops`` command runs in a subprocess that loads ``tests/registry/killpoints/sitecustomize.py``:
with ``RECOPS_TEST_KILL_AT=after_alias:champion`` it SIGKILLs itself right after MLflow moved ``champion``
(before the audit row could be marked done), with ``before_alias:champion`` right before. Afterwards the
registry and the audit table are inspected, and the next command (or ``recops audit``) must reconcile them:
the audit's champion is MLflow's champion, and ``audit --at`` never names a version that was not champion.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, alias_lock, alias_version, move_alias
from registry.audit import AuditLog, audit_log
from registry.client import mlflow_client
from tests.registry_helpers import fit_package, log_package, register_run, run_recops, write_features_for


def recops(*args: str, kill_at: str = "") -> subprocess.CompletedProcess[str]:
    """``recops ARGS`` with this test's RECOPS_* settings (inherited) and the kill point armed."""
    result: subprocess.CompletedProcess[str] = run_recops(*args, kill_at=kill_at)
    return result


def killed(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode == -signal.SIGKILL and "killpoint" in result.stderr


def _promote_in_audit(settings: Settings, version: int) -> None:
    """Make ``version`` champion the audited way (what promote does after the gate)."""
    client, audit = mlflow_client(settings), audit_log(settings)
    with alias_lock(client, audit, settings.model_name) as lock:
        current = alias_version(client, settings.model_name, CHAMPION)
        if current is not None:
            move_alias(
                lock, alias=PREVIOUS, to_version=current, actor="seed", action="promote", reason="seed"
            )
        move_alias(lock, alias=CHAMPION, to_version=version, actor="seed", action="promote", reason="seed")


@pytest.fixture
def two_champions(recops_settings: Settings, tmp_path: Path) -> tuple[Settings, int, int]:
    """v1 was champion, v2 is champion now, previous = v1 (all audited)."""
    fs = write_features_for(recops_settings)
    v1 = register_run(
        recops_settings, log_package(recops_settings, fit_package(fs, "popularity"), tmp_path, metrics={})
    )
    v2 = register_run(
        recops_settings, log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics={})
    )
    _promote_in_audit(recops_settings, v1)
    _promote_in_audit(recops_settings, v2)
    return recops_settings, v1, v2


def _state(settings: Settings) -> tuple[int | None, int | None, list[tuple[str, int | None, str]]]:
    client, log = mlflow_client(settings), audit_log(settings)
    rows = [(r.alias, r.to_version, r.state) for r in log.history(settings.model_name)]
    return (
        alias_version(client, settings.model_name, CHAMPION),
        log.champion_at(datetime.now(UTC), settings.model_name),
        rows,
    )


def _killed_rollback_is_reconciled_by_audit(settings: Settings, v1: int, v2: int) -> None:
    result = recops("rollback", "--reason", "INC-1", kill_at="after_alias:champion")
    assert killed(result), (result.returncode, result.stdout, result.stderr)
    champion, audited, rows = _state(settings)
    # MLflow moved; the audit holds the move as a pending intent, which does not count yet
    assert champion == v1
    assert rows[-2:] == [(PREVIOUS, v2, "done"), (CHAMPION, v1, "pending")]
    assert audited == v2  # what the audit knows for sure: v2 was champion until this intent

    down = run_recops("audit", env={"RECOPS_MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert down.returncode == 0, down.stderr  # the trail stays readable; the intent stays pending
    assert "warning: interrupted alias moves stay pending (cannot reach the MLflow server" in down.stderr
    assert "rollback (pending)" in down.stdout
    assert audit_log(settings).pending(settings.model_name) != []

    shown = recops("audit")
    assert shown.returncode == 0, shown.stderr
    assert (
        f"reconciled an interrupted rollback of champion -> v{v1}" in shown.stdout
        and ": done" in shown.stdout
    )
    champion, audited, rows = _state(settings)
    assert champion == audited == v1 and rows[-1] == (CHAMPION, v1, "done")
    assert audit_log(settings).pending(settings.model_name) == []
    at = recops("audit", "--at", datetime.now(UTC).isoformat())
    assert f"champion at {datetime.now(UTC).date().isoformat()}" in at.stdout and at.stdout.strip().endswith(
        f"v{v1}"
    )


def test_rollback_killed_after_the_alias_moved_is_reconciled(
    two_champions: tuple[Settings, int, int],
) -> None:
    _killed_rollback_is_reconciled_by_audit(*two_champions)


def test_rollback_killed_before_the_alias_moved_is_aborted_and_retried(
    two_champions: tuple[Settings, int, int],
) -> None:
    settings, v1, v2 = two_champions
    result = recops("rollback", "--reason", "INC-2", kill_at="before_alias:champion")
    assert killed(result), (result.returncode, result.stdout, result.stderr)
    killed_at = datetime.now(UTC)
    champion, audited, rows = _state(settings)
    assert champion == audited == v2  # nothing served changed, and the audit does not claim otherwise
    assert rows[-1] == (CHAMPION, v1, "pending")

    retry = recops("rollback", "--to", str(v1), "--reason", "INC-2 retry")
    assert retry.returncode == 0, retry.stderr
    assert f"champion v{v2} -> v{v1}" in retry.stdout
    champion, audited, rows = _state(settings)
    assert champion == audited == v1
    assert (CHAMPION, v1, "aborted") in rows and rows[-1] == (CHAMPION, v1, "done")
    log = audit_log(settings)
    assert log.champion_at(killed_at, settings.model_name) == v2  # the aborted intent is never a move


def test_register_killed_after_the_challenger_moved_is_reconciled_by_the_next_register(
    recops_settings: Settings, tmp_path: Path
) -> None:
    settings = recops_settings
    fs = write_features_for(settings)
    log_package(
        settings, fit_package(fs, "good"), tmp_path, metrics={"valid_ndcg_at_10": 0.4, "ndcg_at_10": 0.4}
    )
    result = recops("register", kill_at="after_alias:challenger")
    assert killed(result), (result.returncode, result.stdout, result.stderr)
    client, log = mlflow_client(settings), audit_log(settings)
    assert alias_version(client, settings.model_name, CHALLENGER) == 1
    assert [(r.alias, r.state) for r in log.history(settings.model_name)] == [(CHALLENGER, "pending")]
    again = recops("register")
    assert again.returncode == 0, again.stderr
    assert "reused existing" in again.stdout and "v1" in again.stdout
    assert [(r.alias, r.to_version, r.state) for r in log.history(settings.model_name)] == [
        (CHALLENGER, 1, "done")
    ]
    assert log.alias_at(datetime.now(UTC), settings.model_name, CHALLENGER) == 1


def test_promote_killed_after_the_champion_moved_is_reconciled_by_the_next_promote(
    recops_settings: Settings, tmp_path: Path
) -> None:
    settings = recops_settings
    fs = write_features_for(settings)
    v1 = register_run(settings, log_package(settings, fit_package(fs, "popularity"), tmp_path, metrics={}))
    _promote_in_audit(settings, v1)
    v2 = register_run(
        settings, log_package(settings, fit_package(fs, "good"), tmp_path, metrics={}), CHALLENGER
    )
    result = recops("promote", kill_at="after_alias:champion")
    assert killed(result), (result.returncode, result.stdout, result.stderr)
    champion, audited, rows = _state(settings)
    assert (champion, audited) == (v2, v1) and rows[-1] == (CHAMPION, v2, "pending")
    again = recops("promote")
    assert again.returncode == 0, again.stderr
    assert "already_champion" in again.stdout
    champion, audited, rows = _state(settings)
    assert champion == audited == v2 and rows[-1] == (CHAMPION, v2, "done")


@pytest.mark.integration
def test_killed_rollback_with_the_audit_in_postgres_is_reconciled(
    recops_settings: Settings, tmp_path: Path, make_pg_database: Callable[[], str], monkeypatch: Any
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RECOPS_METADATA_DB_URL", make_pg_database())
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.metadata_db_url.startswith("postgresql")
    fs = write_features_for(settings)
    v1 = register_run(settings, log_package(settings, fit_package(fs, "popularity"), tmp_path, metrics={}))
    v2 = register_run(settings, log_package(settings, fit_package(fs, "good"), tmp_path, metrics={}))
    _promote_in_audit(settings, v1)
    _promote_in_audit(settings, v2)
    _killed_rollback_is_reconciled_by_audit(settings, v1, v2)
    # the killed holder's session-level advisory lock went with its connection: the lock is free
    with AuditLog(settings.metadata_db_url, lock_timeout_s=10).lock(f"recops:registry:{settings.model_name}"):
        pass
