"""Publishing batches into a DVC-tracked data/ folder of a temporary git + DVC repository."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from core.errors import RecopsError
from core.privacy import pseudonymize
from pipelines.dvc_ops import dvc_status_cloud
from pipelines.publish import (
    ValidationRefused,
    canonical_catalog,
    canonical_events,
    content_hash,
    data_lock,
    publish_batch,
    read_batch,
    staging_root,
    write_canonical_batch,
)
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.dvc_repo import dvc_file_md5, make_dvc_repo, tree_digest

KEY = "test-key"
PROJECT = Path(__file__).resolve().parents[2]
RECOPS = Path(sys.executable).parent / "recops"
DAY = date(2026, 1, 1)


def clean_events(day: date = DAY, seed: int = 0, n: int = 300) -> pd.DataFrame:
    events = make_events(day, n=n, seed=seed)
    events["user_id"] = pseudonymize(events["user_id"], KEY)
    return events


def landed(root: Path, day: date = DAY, seed: int = 0) -> Path:
    return write_batch(root / f"landing-{seed}", day, events=clean_events(day, seed), catalog=make_catalog())


@dataclass(frozen=True)
class Report:
    success: bool
    quarantine_path: Path | None = None


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_dvc_repo(tmp_path)


# --------------------------------------------------------------------------------- canonical form (no DVC)


def test_canonical_form_ignores_row_order_and_file_format(tmp_path: Path) -> None:
    events = clean_events()
    shuffled = events.sample(frac=1.0, random_state=7)
    assert not shuffled["event_id"].equals(events["event_id"])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    catalog = make_catalog()
    write_canonical_batch(a, canonical_events(events), canonical_catalog(catalog))
    write_canonical_batch(b, canonical_events(shuffled), canonical_catalog(catalog.iloc[::-1]))
    assert tree_digest(a) == tree_digest(b)  # byte-identical files

    csv = tmp_path / "csv" / "2026-01-01"
    csv.mkdir(parents=True)
    events.to_csv(csv / "events.csv", index=False)
    catalog.to_csv(csv / "catalog.csv", index=False)
    from_csv = read_batch(csv)
    from_parquet = read_batch(write_batch(tmp_path / "pq", DAY, events=events, catalog=catalog))
    assert content_hash(*from_csv) == content_hash(*from_parquet)
    changed = from_parquet[0].copy()
    changed.loc[0, "price"] = 1234.5
    assert content_hash(changed, from_parquet[1]) != content_hash(*from_parquet)


def test_raw_user_ids_are_refused(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "landing", DAY, events=make_events(DAY, n=50))  # raw ids "u0".."u39"
    with pytest.raises(RecopsError, match="raw user ids"):
        publish_batch(batch, data_dir=tmp_path / "data", repo_root=tmp_path, push=False)
    assert not (tmp_path / "data").exists()


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    batch = landed(tmp_path)
    events = batch / "events.parquet"
    events.write_bytes(events.read_bytes()[:500])  # truncated Parquet
    with pytest.raises(RecopsError, match="not a readable Parquet file"):
        publish_batch(batch, data_dir=tmp_path / "data", repo_root=tmp_path, push=False)
    assert not (tmp_path / "data").exists()


def test_batch_outside_the_schema_goes_to_the_gate_not_a_crash(tmp_path: Path) -> None:
    events = clean_events()
    events["quantity"] = events["quantity"].astype("float64")
    events.loc[events.index[0], "quantity"] = 1.5  # cannot become the schema's integer quantity
    batch = write_batch(tmp_path / "landing", DAY, events=events, catalog=make_catalog())
    seen: list[Path] = []

    def failing(path: Path) -> Report:
        seen.append(path)
        return Report(success=False, quarantine_path=tmp_path / "quarantine" / path.name)

    with pytest.raises(ValidationRefused, match="failed validation"):
        publish_batch(batch, data_dir=tmp_path / "data", repo_root=tmp_path, push=False, validator=failing)
    assert seen == [batch]  # the gate saw it (and quarantined it), instead of a schema traceback
    assert not (tmp_path / "data").exists()


def test_failed_swap_restores_the_old_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    first = landed(tmp_path, seed=0)
    (data / first.name).mkdir(parents=True)
    write_canonical_batch(data / first.name, *read_batch(first))
    before = tree_digest(data)
    calls: list[tuple[str, str]] = []
    real_rename = os.rename

    def flaky_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append((str(src), str(dst)))
        if len(calls) == 2:  # moving the new folder in
            raise OSError("disk on fire")
        real_rename(src, dst)

    monkeypatch.setattr("core.fsio.os.rename", flaky_rename)
    with pytest.raises(OSError, match="disk on fire"):
        publish_batch(landed(tmp_path, seed=1), data_dir=data, repo_root=tmp_path, replace=True, push=False)
    assert len(calls) == 3  # aside, (failed) in, restore
    assert tree_digest(data) == before
    assert list(staging_root(data).iterdir()) == [staging_root(data) / "data.lock"]  # no leftovers


def test_a_held_lock_blocks_a_second_writer(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with data_lock(data), pytest.raises(RecopsError, match="holds"):
        publish_batch(landed(tmp_path), data_dir=data, repo_root=tmp_path, push=False, lock_timeout_s=0.3)
    assert not data.exists()


# ------------------------------------------------------------------------------------- with DVC


def test_publish_pushes_and_republishing_is_a_no_op(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    batch = landed(tmp_path)
    result = publish_batch(batch, data_dir=data, repo_root=repo)
    assert result.status == "published"
    assert result.pushed
    assert sorted(p.name for p in (data / batch.name).iterdir()) == ["catalog.parquet", "events.parquet"]
    assert len(pd.read_parquet(data / batch.name / "events.parquet")) == result.events == 300
    assert result.dvc_file == repo / "data.dvc"
    md5 = dvc_file_md5(repo / "data.dvc")
    assert md5.endswith(".dir")
    assert dvc_status_cloud(repo, "local") == {}  # the push success criterion
    dir_object = tmp_path / "remote" / "files" / "md5" / md5[:2] / md5[2:]
    assert dir_object.is_file()
    stored = {
        hashlib.md5((data / batch.name / name).read_bytes()).hexdigest()
        for name in ("events.parquet", "catalog.parquet")
    }
    assert all((tmp_path / "remote" / "files" / "md5" / h[:2] / h[2:]).is_file() for h in stored)

    before, dvc_before = tree_digest(data), (repo / "data.dvc").read_text()
    mtime = (data / batch.name / "events.parquet").stat().st_mtime_ns
    again = publish_batch(landed(tmp_path, seed=0), data_dir=data, repo_root=repo)
    assert again.status == "unchanged"
    assert again.content_hash == result.content_hash
    assert tree_digest(data) == before
    assert (repo / "data.dvc").read_text() == dvc_before
    assert (data / batch.name / "events.parquet").stat().st_mtime_ns == mtime  # not even rewritten


def test_conflicting_content_is_refused_unless_replace(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    publish_batch(landed(tmp_path, seed=0), data_dir=data, repo_root=repo, push=False)
    before, dvc_before = tree_digest(data), (repo / "data.dvc").read_text()

    other = landed(tmp_path, seed=1)  # same batch id (the day), other events
    with pytest.raises(RecopsError, match="already published with different content"):
        publish_batch(other, data_dir=data, repo_root=repo)
    assert tree_digest(data) == before
    assert (repo / "data.dvc").read_text() == dvc_before

    result = publish_batch(other, data_dir=data, repo_root=repo, replace=True)
    assert result.status == "replaced"
    assert result.pushed
    assert tree_digest(data) != before
    published = pd.read_parquet(data / other.name / "events.parquet")
    assert set(published["event_id"]) == set(clean_events(seed=1)["event_id"])
    assert dvc_file_md5(repo / "data.dvc") != yaml.safe_load(dvc_before)["outs"][0]["md5"]
    assert dvc_status_cloud(repo, "local") == {}
    assert list(staging_root(data).iterdir()) == [staging_root(data) / "data.lock"]


def test_failing_validation_refuses_and_leaves_data_untouched(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    publish_batch(landed(tmp_path, DAY), data_dir=data, repo_root=repo, push=False)
    before, dvc_before = tree_digest(data), (repo / "data.dvc").read_text()
    seen: list[Path] = []

    def failing(path: Path) -> Report:
        seen.append(path)
        return Report(success=False, quarantine_path=tmp_path / "quarantine" / path.name)

    nxt = landed(tmp_path, date(2026, 1, 2))
    with pytest.raises(ValidationRefused, match="failed validation") as info:
        publish_batch(nxt, data_dir=data, repo_root=repo, validator=failing)
    assert info.value.exit_code == 1
    assert seen == [nxt]
    assert tree_digest(data) == before
    assert (repo / "data.dvc").read_text() == dvc_before
    assert not (data / nxt.name).exists()


# ------------------------------------------------------------------------------------- the CLI, real gate


def test_cli_runs_the_real_gate_before_publishing(tmp_path: Path, repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(
        COLUMNS="200",
        NO_COLOR="1",
        RECOPS_PROJECT_DIR=str(repo),
        RECOPS_PARAMS_FILE=str(PROJECT / "params.yaml"),
        RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"),
    )

    def recops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RECOPS), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    bad_events = clean_events()
    bad_events.loc[:20, "user_id"] = None  # 7% null user ids: check 1's failure
    bad = write_batch(tmp_path / "bad", DAY, events=bad_events, catalog=make_catalog())
    refused = recops("publish", str(bad))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "expect_column_values_to_not_be_null events.user_id" in refused.stderr
    assert "failed validation, nothing published" in refused.stderr
    assert (tmp_path / "runtime" / "quarantine" / DAY.isoformat()).is_dir()
    assert not (repo / "data").exists()
    assert not (repo / "data.dvc").exists()

    done = recops("publish", str(landed(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"published: batch {DAY.isoformat()} (300 events, 50 items)" in done.stdout
    assert "pushed to DVC remote local" in done.stdout
    assert (repo / "data" / DAY.isoformat() / "events.parquet").is_file()
    assert dvc_status_cloud(repo, "local") == {}


# ------------------------------------------------------------------------------------- the step contract


def test_run_publish_returns_a_json_able_step_result(
    tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings
    from pipelines.params import load_params
    from pipelines.publish_step import run_publish
    from pipelines.steps import StepContext, StepResult

    for name in [k for k in os.environ if k.startswith("RECOPS_") and not k.startswith("RECOPS_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECOPS_PROJECT_DIR", str(repo))
    monkeypatch.setenv("RECOPS_PARAMS_FILE", str(PROJECT / "params.yaml"))
    monkeypatch.setenv("RECOPS_RUNTIME_DIR", str(tmp_path / "runtime"))
    get_settings.cache_clear()
    try:
        settings = get_settings()
        ctx = StepContext(
            settings,
            load_params(settings.params_file),
            pipeline_run_id="dag-run-1",
            logical_date=datetime(2026, 1, 3, 6, tzinfo=UTC),  # the gate's "now"
        )
        reports: list[bool] = []
        batches = [landed(tmp_path, DAY), landed(tmp_path, date(2026, 1, 2), seed=1)]
        step = run_publish(ctx, batches, on_report=lambda r: reports.append(r.success))
        assert reports == [True, True]
        assert step.step == "publish"
        assert step.outputs == {"data": "data", "dvc_file": "data.dvc"}
        assert step.metrics == {"batches": 2.0, "batches_changed": 2.0, "events": 600.0}
        assert [b["status"] for b in step.info["batches"]] == ["published", "published"]
        assert step.info["pushed"] is True and step.info["remote"] == "local"
        assert StepResult.from_dict(json.loads(json.dumps(step.to_dict()))) == step  # XCom round trip
        again = run_publish(
            ctx, batches[:1], push=False, validate=False, on_report=lambda r: reports.append(r.success)
        )
        assert again.metrics["batches_changed"] == 0.0 and again.info["pushed"] is False
        assert reports == [True, True]  # validate=False: the caller ran the gate already
    finally:
        get_settings.cache_clear()
