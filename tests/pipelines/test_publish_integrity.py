"""Publish changes only the batches it publishes: data/ checked against data.dvc first, event ids unique
across batches, forgotten users never come back, and a failed push says how to finish (exit 3)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.privacy import FORGOTTEN_FILE, pseudonymize, pseudonymize_id, read_forgotten
from pipelines.data_record import DataDrift, read_listing, tree_md5, workspace_listing
from pipelines.dvc_ops import DvcError, dvc_status_cloud, run_dvc
from pipelines.event_ids import DuplicateEvents
from pipelines.forget import forget_user
from pipelines.publish import publish_batch, publish_batches
from pipelines.unpublish import unpublish_batch
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.crash import recops, recops_env
from tests.pipelines.dvc_repo import dvc_file_md5, git, make_dvc_repo, tree_digest

KEY = "integrity-test-key"
PROJECT = Path(__file__).resolve().parents[2]
DAY, DAY2, DAY3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)


def landed(root: Path, day: date, seed: int = 0, name: str | None = None) -> Path:
    events = make_events(day, n=200, n_users=10, seed=seed)
    events["user_id"] = pseudonymize(events["user_id"], KEY)
    batch = write_batch(root / f"landing-{seed}", day, events=events, catalog=make_catalog())
    if name is not None:
        batch = batch.rename(batch.with_name(name))
    return batch


def record_matches_disk(repo: Path) -> bool:
    return dvc_file_md5(repo / "data.dvc") == tree_md5(workspace_listing(repo / "data"))


def remote_objects(tmp_path: Path) -> set[str]:
    return {
        p.relative_to(tmp_path / "remote").as_posix() for p in (tmp_path / "remote").rglob("*") if p.is_file()
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_dvc_repo(tmp_path)
    publish_batches(
        [landed(tmp_path, DAY), landed(tmp_path, DAY2, 1)], data_dir=repo / "data", repo_root=repo
    )
    return repo


# ------------------------------------------------------------------------------------ data/ vs data.dvc


def test_hand_made_damage_is_refused_before_anything_is_recorded(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    recorded, pushed = (repo / "data.dvc").read_text(), remote_objects(tmp_path)
    shutil.rmtree(data / DAY.isoformat())  # a published batch deleted by hand
    events = data / DAY2.isoformat() / "events.parquet"
    events.write_bytes(events.read_bytes()[:300])  # another one truncated
    (data / "stray").mkdir()
    (data / "stray" / "notes.txt").write_text("x")  # something that was never published

    with pytest.raises(DataDrift) as info:
        publish_batch(landed(tmp_path, DAY3, 2), data_dir=data, repo_root=repo)
    message = str(info.value)
    assert f"deleted: data/{DAY}/catalog.parquet, data/{DAY}/events.parquet" in message
    assert f"modified: data/{DAY2}/events.parquet" in message
    assert "not recorded: data/stray/notes.txt" in message
    assert "dvc checkout --force data.dvc" in message
    assert (repo / "data.dvc").read_text() == recorded  # nothing recorded ...
    assert remote_objects(tmp_path) == pushed  # ... nothing pushed
    assert not (data / DAY3.isoformat()).exists()  # ... nothing placed

    run_dvc(["checkout", "--force", "data.dvc"], repo)  # the recovery the message names
    assert not (data / "stray").exists()  # (it also removes what was never recorded)
    result = publish_batch(landed(tmp_path, DAY3, 2), data_dir=data, repo_root=repo)
    assert result.status == "published" and result.pushed
    assert record_matches_disk(repo)
    listing = read_listing(repo, dvc_file_md5(repo / "data.dvc"))
    assert listing is not None and len(listing) == 6  # three whole batches


def test_the_cli_names_the_damage_in_one_line(tmp_path: Path, repo: Path) -> None:
    (repo / "data" / DAY.isoformat() / "catalog.parquet").unlink()
    env = recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml")
    done = recops(env, repo, "publish", str(landed(tmp_path, DAY3, 2)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: data/ does not match data.dvc") and "Traceback" not in done.stderr
    assert f"deleted: data/{DAY}/catalog.parquet" in done.stderr


def test_a_fresh_clone_must_pull_before_it_publishes(tmp_path: Path, repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=60)
    with pytest.raises(DataDrift, match=rf"deleted: data/{DAY}/catalog\.parquet.*dvc pull --force data\.dvc"):
        publish_batch(landed(tmp_path, DAY3, 2), data_dir=clone / "data", repo_root=clone, push=False)
    assert not (clone / "data").exists()
    run_dvc(["pull", "data.dvc"], clone)
    result = publish_batch(landed(tmp_path, DAY3, 2), data_dir=clone / "data", repo_root=clone, push=False)
    assert result.status == "published" and record_matches_disk(clone)

    # A clone whose remote never held the recorded version (the demo's fresh clone) rebuilds data/.
    empty = tmp_path / "clone2"
    subprocess.run(["git", "clone", "-q", str(repo), str(empty)], check=True, timeout=60)
    run_dvc(["remote", "modify", "--local", "local", "url", str(tmp_path / "empty-remote")], empty)
    batches = [landed(tmp_path, DAY), landed(tmp_path, DAY2, 1)]
    publish_batches(batches, data_dir=empty / "data", repo_root=empty, push=False)
    assert dvc_file_md5(empty / "data.dvc") == dvc_file_md5(repo / "data.dvc")  # byte-identical rebuild


def test_a_clone_that_cannot_reach_its_remote_refuses_instead_of_guessing(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, timeout=60)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    run_dvc(["remote", "modify", "--local", "local", "url", "s3://recops-missing/store"], clone)
    run_dvc(["remote", "modify", "--local", "local", "endpointurl", "http://127.0.0.1:9"], clone)  # nobody
    with pytest.raises(DataDrift, match=r"remote \(default\) could not be asked .*nothing was changed"):
        publish_batch(landed(tmp_path, DAY3, 2), data_dir=clone / "data", repo_root=clone, push=False)
    assert not (clone / "data").exists()


# ------------------------------------------------------------------------------------ unique event ids


def test_a_copy_of_a_day_under_another_name_is_refused(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    recorded = (repo / "data.dvc").read_text()
    copy = landed(tmp_path, DAY, 0, name="backfill-1")  # same events as the published 2026-01-01
    with pytest.raises(
        DuplicateEvents,
        match=rf"batch backfill-1 holds 200 event id\(s\) already published in batch\(es\) {DAY} \(200\)",
    ):
        publish_batch(copy, data_dir=data, repo_root=repo)
    assert not (data / "backfill-1").exists()
    assert (repo / "data.dvc").read_text() == recorded

    # Replacing a batch with itself re-sent is not a clash; unpublishing the original lets the copy in.
    assert publish_batch(landed(tmp_path, DAY, 0), data_dir=data, repo_root=repo).status == "unchanged"
    result = unpublish_batch(DAY.isoformat(), data_dir=data, repo_root=repo)
    assert result.pushed and len(result.stale_objects) == 2
    assert not (data / DAY.isoformat()).exists() and record_matches_disk(repo)
    assert publish_batch(copy, data_dir=data, repo_root=repo).status == "published"
    assert record_matches_disk(repo) and dvc_status_cloud(repo, "local") == {}


def test_unpublish_refuses_unknown_batches_and_hand_made_damage(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    env = recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml")
    done = recops(env, repo, "data", "unpublish", "2026-02-01")
    assert done.returncode == 2 and "error: batch 2026-02-01 is not published" in done.stderr, done.stderr
    (data / DAY2.isoformat() / "events.parquet").write_bytes(b"rotten")
    with pytest.raises(DataDrift, match=rf"modified: data/{DAY2}/events\.parquet"):
        unpublish_batch(DAY.isoformat(), data_dir=data, repo_root=repo)
    assert (data / DAY.isoformat()).is_dir()


# ------------------------------------------------------------------------------------ forgotten users


def test_a_forgotten_user_does_not_come_back_with_a_resent_batch(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    user = pseudonymize_id("u3", KEY)
    forgotten = forget_user("u3", data_dir=data, repo_root=repo, key=KEY)
    assert forgotten.found and forgotten.denied
    assert read_forgotten(data) == {user}
    assert (data / FORGOTTEN_FILE).read_text() == f"{user}\n"  # the pseudonym only, never the raw id
    assert record_matches_disk(repo)

    resent = landed(tmp_path, DAY, 0)  # the landing copy still holds the user's events
    assert user in set(pd.read_parquet(resent / "events.parquet")["user_id"])
    result = publish_batch(resent, data_dir=data, repo_root=repo, replace=True)
    assert result.status == "unchanged" and result.dropped_forgotten > 0
    changed = landed(tmp_path, DAY, 5)  # a different batch for that day, also holding the user
    result = publish_batch(changed, data_dir=data, repo_root=repo, replace=True)
    assert result.status == "replaced" and result.dropped_forgotten > 0
    for batch in (DAY, DAY2):
        assert user not in set(pd.read_parquet(data / batch.isoformat() / "events.parquet")["user_id"])
    assert record_matches_disk(repo)


def test_a_reload_leaves_forgotten_users_out(tmp_path: Path) -> None:
    from pipelines.datasets.loaders import LoadNotes, load_to_landing

    events = make_events(DAY, n=200, n_users=10)
    events["user_id"] = pseudonymize(events["user_id"], KEY)
    user = pseudonymize_id("u3", KEY)
    notes = LoadNotes()
    report = load_to_landing(
        "test",
        lambda: (events, make_catalog()),
        tmp_path / "landing",
        notes=notes,
        forgotten=frozenset({user}),
    )
    landed_events = pd.read_parquet(report.batches[0] / "events.parquet")
    assert user not in set(landed_events["user_id"])
    assert notes.forgotten_dropped == int((events["user_id"] == user).sum()) > 0
    assert "deny-listed users left out" in report.summary()


# ------------------------------------------------------------------------------------ failed pushes


def test_an_unknown_remote_is_refused_before_anything_changes(tmp_path: Path, repo: Path) -> None:
    recorded = (repo / "data.dvc").read_text()
    with pytest.raises(DvcError, match=r"DVC remote .nosuch. is not configured .*nothing was changed"):
        publish_batch(landed(tmp_path, DAY3, 2), data_dir=repo / "data", repo_root=repo, remote="nosuch")
    assert not (repo / "data" / DAY3.isoformat()).exists()
    assert (repo / "data.dvc").read_text() == recorded


def test_a_failed_push_says_how_to_finish_and_data_push_completes_it(tmp_path: Path, repo: Path) -> None:
    broken = tmp_path / "not-a-folder"
    broken.write_text("a file where the remote's folder should be")
    run_dvc(["remote", "add", "backup", str(broken / "store")], repo)
    env = recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml")

    done = recops(env, repo, "publish", str(landed(tmp_path, DAY3, 2)), "--remote", "backup")
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        "error: batch(es) 2026-01-03 recorded in data.dvc, but the push to DVC remote backup failed"
        in done.stderr
    )
    assert "recops data push --remote backup" in done.stderr and "Traceback" not in done.stderr
    assert (repo / "data" / DAY3.isoformat()).is_dir() and record_matches_disk(repo)  # placed and recorded

    run_dvc(["remote", "modify", "backup", "url", str(tmp_path / "backup")], repo)  # the remote is fixed
    unverified = recops(env, repo, "data", "verify", "--remote", "backup")
    assert unverified.returncode == 1, unverified.stdout + unverified.stderr
    assert "BAD remote: " in unverified.stdout and "not on remote" in unverified.stdout
    pushed = recops(env, repo, "data", "push", "--remote", "backup")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    verified = recops(env, repo, "data", "verify", "--remote", "backup")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("OK: data.dvc ")
    assert tree_digest(repo / "data")  # (data/ untouched by push and verify)
