"""Forgetting a user: their events leave every published batch, and data/ gets a new DVC version."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.feedback import (
    create_feedback_tables,
    feedback_engine,
    read_feedback,
    read_recommendations,
    record_feedback,
    record_recommendations,
)
from core.online_seed import read_seed, seed_paths
from core.privacy import forgotten_path, forgotten_text, pseudonymize, pseudonymize_id
from core.settings import Settings
from pipelines.dvc_ops import dvc_status_cloud
from pipelines.forget import forget_served, forget_user, remove_user_events, resolve_pseudonym
from pipelines.online.seed import run_online_seed
from pipelines.params import load_params
from pipelines.publish import canonical_events, publish_batch
from pipelines.steps import StepContext
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

    target = pseudonymize_id("u5", KEY)
    runtime = tmp_path / "runtime"  # the CLI's metadata database: sqlite:///<runtime>/recops.db
    settings = Settings(
        project_dir=repo, runtime_dir=runtime, metadata_db_url=f"sqlite:///{runtime / 'recops.db'}"
    )
    serve_and_feedback(settings, [target, pseudonymize_id("u6", KEY)])

    done = recops("data", "forget", "--user", "u5", "--no-push")
    assert done.returncode == 0, done.stderr
    assert f"deleted 3 feedback row(s) and served list(s) of user {target}" in done.stdout
    assert {r["user_id"] for r in read_feedback(feedback_engine(settings))} == {pseudonymize_id("u6", KEY)}
    assert f"forgot user {pseudonymize_id('u5', KEY)}" in done.stdout
    assert "u5" not in done.stdout.replace(pseudonymize_id("u5", KEY), "")
    assert "not pushed" in done.stdout
    assert dvc_status_cloud(repo, "local") != {}  # the new version is recorded but was not pushed

    nothing = recops("data", "forget", "--user", pseudonymize_id("u5", KEY), "--pseudonym")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to forget" in nothing.stdout
    assert f"deleted 0 feedback row(s) and served list(s) of user {target}" in nothing.stdout
    assert dvc_status_cloud(repo, "local") == {}  # ... and the re-run pushed it

    bad = recops("data", "forget", "--user", "u5", "--pseudonym")
    assert bad.returncode == 2
    assert "not a pseudonym" in bad.stderr


# ------------------------------------------------------------------------------ the scoring service's side


def serve_and_feedback(settings: Settings, users: list[str]) -> None:
    """What the scoring service stores per shopper: one served list, an impression and a click on it."""
    engine = feedback_engine(settings)
    create_feedback_tables(engine)
    at = datetime(2026, 1, 3, 9, tzinfo=UTC)
    record_recommendations(
        engine,
        [{"recommendation_id": f"rec-{n}", "user_id": user, "model_name": "m", "model_version": 1,
          "variant": "champion", "items": ["i00001"], "created_at": at} for n, user in enumerate(users)],
    )  # fmt: skip
    record_feedback(
        engine,
        [{"recommendation_id": f"rec-{n}", "user_id": user, "item_id": "i00001", "kind": kind,
          "model_version": 1, "variant": "champion", "ts": at + timedelta(seconds=1)}
         for n, user in enumerate(users) for kind in ("impression", "click")],
    )  # fmt: skip


def test_forget_served_deletes_feedback_and_lists_and_rebuilds_the_seed(recops_settings: Settings) -> None:
    for day in DAYS:
        write_batch(recops_settings.data_dir, day, events=_events(day), catalog=make_catalog())
    target, other = pseudonymize_id("u3", KEY), pseudonymize_id("u4", KEY)
    serve_and_feedback(recops_settings, [target, other])
    ctx = StepContext(recops_settings, load_params(recops_settings.params_file), actor="test")
    run_online_seed(ctx)
    seed_file = seed_paths(recops_settings)[0]
    assert target in set(read_seed(seed_file)["user_id"])
    # What forget_user leaves behind: the shopper on the deny-list.
    forgotten_path(recops_settings.data_dir).write_text(forgotten_text(frozenset({target})), encoding="utf-8")

    served = forget_served(recops_settings, target)

    assert served.feedback_rows == 3  # one served list, an impression and a click
    engine = feedback_engine(recops_settings)
    assert {r["user_id"] for r in read_feedback(engine)} == {other}
    assert {r["user_id"] for r in read_recommendations(engine)} == {other}
    assert served.seed_rewritten is True
    seeded = set(read_seed(seed_file)["user_id"])
    assert target not in seeded and other in seeded

    again = forget_served(recops_settings, target)
    assert (again.feedback_rows, again.seed_rewritten) == (0, False)


def test_forget_served_without_a_feedback_store_or_a_seed(recops_settings: Settings) -> None:
    served = forget_served(recops_settings, pseudonymize_id("u3", KEY))
    assert (served.feedback_rows, served.seed_rewritten) == (None, None)
    create_feedback_tables(feedback_engine(recops_settings))
    assert forget_served(recops_settings, pseudonymize_id("u3", KEY)).feedback_rows == 0
    with pytest.raises(RecopsError, match="pseudonym"):
        forget_served(recops_settings, "u3")  # a raw id never reaches the database
