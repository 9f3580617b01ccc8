"""Forgetting a user: their events leave every published batch, and data/ gets a new DVC version."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.privacy import pseudonymize, pseudonymize_id
from pipelines.dvc_ops import dvc_status_cloud
from pipelines.forget import forget_user, remove_user_events, resolve_pseudonym
from pipelines.publish import canonical_events, publish_batch
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.dvc_repo import dvc_file_md5, make_dvc_repo, tree_digest

KEY = "forget-test-key"
DAYS = (date(2026, 1, 1), date(2026, 1, 2))
RECOPS = Path(sys.executable).parent / "recops"


def _events(day: date) -> pd.DataFrame:
    events = make_events(day, n=200, n_users=10, seed=day.day)
    events["user_id"] = pseudonymize(events["user_id"], KEY)
    return events


def _published(tmp_path: Path) -> Path:
    repo = make_dvc_repo(tmp_path)
    for day in DAYS:
        batch = write_batch(tmp_path / "landing", day, events=_events(day), catalog=make_catalog())
        publish_batch(batch, data_dir=repo / "data", repo_root=repo, push=False)
    return repo


def _all_events(data: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(data / d.isoformat() / "events.parquet") for d in DAYS], ignore_index=True
    )


def test_pseudonym_resolution() -> None:
    assert resolve_pseudonym(" u3 ", KEY) == pseudonymize_id("u3", KEY)
    stored = pseudonymize_id("u3", KEY)
    assert resolve_pseudonym(stored, "", is_pseudonym=True) == stored
    with pytest.raises(RecopsError, match="not a pseudonym"):
        resolve_pseudonym("u3", KEY, is_pseudonym=True)
    with pytest.raises(RecopsError, match="empty"):
        resolve_pseudonym("  ", KEY)


def test_remove_user_events_keeps_everyone_else() -> None:
    events = canonical_events(_events(DAYS[0]))
    target = pseudonymize_id("u3", KEY)
    kept = remove_user_events(events, target)
    assert target in set(events["user_id"])
    assert target not in set(kept["user_id"])
    others = events[events["user_id"] != target].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, others)


def test_forget_removes_only_that_user_and_makes_a_new_version(tmp_path: Path) -> None:
    repo = _published(tmp_path)
    data = repo / "data"
    target = pseudonymize_id("u3", KEY)
    before = _all_events(data)
    expected_removed = int((before["user_id"] == target).sum())
    assert expected_removed > 0
    md5_before = dvc_file_md5(repo / "data.dvc")
    catalogs_before = [tree_digest(data / d.isoformat() / "catalog.parquet") for d in DAYS]

    result = forget_user("u3", data_dir=data, repo_root=repo, key=KEY)

    assert result.found
    assert result.pseudonym == target
    assert result.events_removed == expected_removed
    assert result.batches_changed == tuple(d.isoformat() for d in DAYS)
    assert len(result.stale_objects) == 2
    assert all(
        (repo / ".dvc" / "cache" / "files" / "md5" / h[:2] / h[2:]).is_file() for h in result.stale_objects
    )
    after = _all_events(data)
    assert target not in set(after["user_id"])
    remaining = before[before["user_id"] != target]
    assert sorted(after["event_id"]) == sorted(remaining["event_id"])
    assert [tree_digest(data / d.isoformat() / "catalog.parquet") for d in DAYS] == catalogs_before
    assert dvc_file_md5(repo / "data.dvc") != md5_before
    assert result.pushed
    assert dvc_status_cloud(repo, "local") == {}

    md5_after, tree_after = dvc_file_md5(repo / "data.dvc"), tree_digest(data)
    again = forget_user(target, data_dir=data, repo_root=repo, key="", is_pseudonym=True)
    assert not again.found
    assert again.batches_changed == ()
    assert dvc_file_md5(repo / "data.dvc") == md5_after
    assert tree_digest(data) == tree_after


def test_cli_forget_prints_only_the_pseudonym(tmp_path: Path) -> None:
    repo = _published(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        RECOPS_PROJECT_DIR=str(repo),
        RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"),
        RECOPS_PSEUDONYMIZATION_KEY=KEY,
    )

    def recops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RECOPS), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=180, check=False
        )

    done = recops("data", "forget", "--user", "u5", "--no-push")
    assert done.returncode == 0, done.stderr
    assert f"forgot user {pseudonymize_id('u5', KEY)}" in done.stdout
    assert "u5" not in done.stdout.replace(pseudonymize_id("u5", KEY), "")
    assert "not pushed" in done.stdout
    assert dvc_status_cloud(repo, "local") != {}  # the new version is recorded but was not pushed

    nothing = recops("data", "forget", "--user", pseudonymize_id("u5", KEY), "--pseudonym")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to forget" in nothing.stdout
    assert dvc_status_cloud(repo, "local") == {}  # ... and the re-run pushed it

    bad = recops("data", "forget", "--user", "u5", "--pseudonym")
    assert bad.returncode == 2
    assert "not a pseudonym" in bad.stderr
