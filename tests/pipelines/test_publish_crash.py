"""Publish and forget killed at exact steps (SIGKILL inside the rename that matters), then the next command.

The real ``recops`` command runs in a throw-away git + DVC repository; ``tests/pipelines/crash.py`` makes it
kill itself inside one ``os.rename``/``os.replace``. Then we look at ``data/``, ``data.dvc`` and the staging
folder, and run the next command as an operator would: it must repair the interrupted swap, or refuse with
instructions, and never record or push a damaged ``data/``.
"""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.privacy import pseudonymize, pseudonymize_id
from pipelines.data_record import read_listing, tree_md5, workspace_listing
from pipelines.dvc_ops import dvc_status_cloud
from pipelines.publish import publish_batches
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.crash import KILLED, RECOPS, kill_env, recops, recops_env, run
from tests.pipelines.dvc_repo import dvc_file_md5, make_dvc_repo, tree_digest

KEY = "crash-test-key"
PROJECT = Path(__file__).resolve().parents[2]
DAY, DAY2, DAY3 = date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3)


def landed(root: Path, day: date, seed: int) -> Path:
    events = make_events(day, n=300, n_users=10, seed=seed)
    events["user_id"] = pseudonymize(events["user_id"], KEY)
    return write_batch(root / f"landing-{seed}", day, events=events, catalog=make_catalog())


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout + done.stderr


def record_matches_disk(repo: Path) -> bool:
    """data.dvc records exactly the bytes now under data/ (re-hashed, not DVC's mtime cache)."""
    return dvc_file_md5(repo / "data.dvc") == tree_md5(workspace_listing(repo / "data"))


def staging_entries(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".data-staging").iterdir())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_dvc_repo(tmp_path)


@pytest.fixture
def env(tmp_path: Path, repo: Path) -> dict[str, str]:
    return recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml", RECOPS_PSEUDONYMIZATION_KEY=KEY)


def publish(repo: Path, *batches: Path, replace: bool = False) -> None:
    """Publish through the Python API (no gate: these batches are valid by construction; it is fast)."""
    publish_batches(list(batches), data_dir=repo / "data", repo_root=repo, replace=replace, remote="local")


def test_replace_killed_between_the_renames_is_rolled_back_by_the_next_publish(
    tmp_path: Path, repo: Path, env: dict[str, str]
) -> None:
    data = repo / "data"
    publish(repo, landed(tmp_path, DAY, 0))
    before = tree_digest(data / DAY.isoformat())
    replacement = landed(tmp_path, DAY, 1)

    killer = kill_env(env, tmp_path / "killer", match=rf"\.tmp-\w+ -> .*/data/{DAY}$", when="before")
    killed = run([str(RECOPS), "publish", str(replacement), "--replace"], killer, repo)
    assert killed.returncode == KILLED, killed.stdout + killed.stderr
    assert not (data / DAY.isoformat()).exists()  # the old copy is aside, the new one not in yet

    out = ok(recops(env, repo, "publish", str(landed(tmp_path, DAY2, 2))))
    assert "rolled back" in out
    assert tree_digest(data / DAY.isoformat()) == before  # the published batch is back, byte for byte
    assert record_matches_disk(repo)
    listing = read_listing(repo, dvc_file_md5(repo / "data.dvc"))
    assert listing is not None and {f"{DAY}/events.parquet", f"{DAY2}/events.parquet"} <= set(listing)
    assert staging_entries(repo) == ["data.lock"]  # journal, old and new copies gone
    assert dvc_status_cloud(repo, "local") == {}

    publish(repo, replacement, replace=True)  # the interrupted command, run again, completes
    assert tree_digest(data / DAY.isoformat()) != before
    assert record_matches_disk(repo)


def test_replace_killed_after_the_swap_is_rolled_forward_and_must_be_rerun(
    tmp_path: Path, repo: Path, env: dict[str, str]
) -> None:
    data = repo / "data"
    publish(repo, landed(tmp_path, DAY, 0))
    # A kill while a batch is being written leaves a temporary copy in the staging folder.
    third = landed(tmp_path, DAY3, 3)
    killer = kill_env(env, tmp_path / "killer", match=r"events\.parquet\.tmp-\w+ -> ", when="before")
    assert run([str(RECOPS), "publish", str(third)], killer, repo).returncode == KILLED
    assert any(name.startswith(f".{DAY3}.tmp-") for name in staging_entries(repo))
    assert not (data / DAY3.isoformat()).exists()

    recorded = (repo / "data.dvc").read_text()
    replacement = landed(tmp_path, DAY, 1)
    killer = kill_env(env, tmp_path / "killer2", match=rf"\.tmp-\w+ -> .*/data/{DAY}$", when="after")
    assert run([str(RECOPS), "publish", str(replacement), "--replace"], killer, repo).returncode == KILLED

    refused = recops(env, repo, "publish", str(third))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.count("error: ") == 1 and "Traceback" not in refused.stderr
    assert "rolled forward" in refused.stderr
    assert f"modified: data/{DAY}/events.parquet." in refused.stderr  # the catalogue is the same
    assert "re-run it" in refused.stderr and "dvc checkout --force data.dvc" in refused.stderr
    assert (repo / "data.dvc").read_text() == recorded  # nothing recorded, nothing pushed
    assert not (data / DAY3.isoformat()).exists()
    assert staging_entries(repo) == ["data.lock"]  # the leftover copy was deleted

    publish(repo, replacement, replace=True)  # re-run: "unchanged" on disk, now recorded
    publish(repo, third)
    assert record_matches_disk(repo)
    assert dvc_status_cloud(repo, "local") == {}


def test_forget_killed_half_way_blocks_publish_until_it_is_finished(
    tmp_path: Path, repo: Path, env: dict[str, str]
) -> None:
    data = repo / "data"
    publish(repo, landed(tmp_path, DAY, 0), landed(tmp_path, DAY2, 1))
    recorded = (repo / "data.dvc").read_text()
    user = pseudonymize_id("u3", KEY)

    killer = kill_env(env, tmp_path / "killer", match=rf"-> .*/data/{DAY}/events\.parquet$", when="after")
    killed = run([str(RECOPS), "data", "forget", "--user", "u3"], killer, repo)
    assert killed.returncode == KILLED, killed.stdout + killed.stderr
    first = pd.read_parquet(data / DAY.isoformat() / "events.parquet")
    second = pd.read_parquet(data / DAY2.isoformat() / "events.parquet")
    assert user not in set(first["user_id"]) and user in set(second["user_id"])  # half done

    third = landed(tmp_path, DAY3, 3)
    refused = recops(env, repo, "publish", str(third))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"interrupted `recops data forget` of user {user}" in refused.stderr
    assert f"recops data forget --user {user} --pseudonym" in refused.stderr
    assert (repo / "data.dvc").read_text() == recorded
    assert not (data / DAY3.isoformat()).exists()

    out = ok(recops(env, repo, "data", "forget", "--user", user, "--pseudonym"))
    assert f"forgot user {user}" in out
    for day in (DAY, DAY2):
        assert user not in set(pd.read_parquet(data / day.isoformat() / "events.parquet")["user_id"])
    assert record_matches_disk(repo)
    assert dvc_status_cloud(repo, "local") == {}
    publish(repo, third)
    assert record_matches_disk(repo)


def test_unpublish_killed_after_the_folder_left_is_finished_by_running_it_again(
    tmp_path: Path, repo: Path, env: dict[str, str]
) -> None:
    data = repo / "data"
    publish(repo, landed(tmp_path, DAY, 0), landed(tmp_path, DAY2, 1))
    recorded = (repo / "data.dvc").read_text()

    killer = kill_env(env, tmp_path / "killer", match=rf"/data/{DAY} -> .*\.old-unpublish$", when="after")
    killed = run([str(RECOPS), "data", "unpublish", DAY.isoformat()], killer, repo)
    assert killed.returncode == KILLED, killed.stdout + killed.stderr
    assert not (data / DAY.isoformat()).exists()
    assert (repo / "data.dvc").read_text() == recorded  # the removal is not recorded yet

    refused = recops(env, repo, "publish", str(landed(tmp_path, DAY3, 3)))
    assert refused.returncode == 2 and f"deleted: data/{DAY}/" in refused.stderr, refused.stderr

    out = ok(recops(env, repo, "data", "unpublish", DAY.isoformat()))
    assert f"unpublished: batch {DAY}" in out
    assert staging_entries(repo) == ["data.lock"]
    assert record_matches_disk(repo) and (repo / "data.dvc").read_text() != recorded
    assert dvc_status_cloud(repo, "local") == {}
