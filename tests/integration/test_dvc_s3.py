"""DVC round trip through an S3 remote (moto server over HTTP), and a corrupted remote object caught on pull.

Runs in a temporary git + DVC repository, never the project's own. The S3 remote is declared the way the
project's ``.dvc/config`` declares it (``verify = true``); endpoint, bucket and credentials go to
``config.local`` through :func:`pipelines.dvc_ops.configure_s3_remote`.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.privacy import pseudonymize
from pipelines.dvc_ops import DvcHashMismatch, configure_s3_remote, dvc_pull, dvc_status_cloud, run_dvc
from pipelines.publish import publish_batch
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.dvc_repo import make_dvc_repo, tree_digest

if TYPE_CHECKING:
    from tests.conftest import S3Endpoint

pytestmark = pytest.mark.integration

PREFIX = "store"


def _s3_repo(tmp_path: Path, s3: S3Endpoint) -> tuple[Path, str]:
    repo = make_dvc_repo(tmp_path)
    run_dvc(["remote", "add", "s3", "s3://recops-dvc/store"], repo)
    run_dvc(["remote", "modify", "s3", "verify", "true"], repo)
    bucket = s3.make_bucket("dvc")
    configure_s3_remote(
        repo,
        s3.endpoint_url,
        bucket,
        prefix=PREFIX,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        region=s3.region,
    )
    return repo, bucket


def _forget_local_copies(repo: Path) -> None:
    shutil.rmtree(repo / "data", ignore_errors=True)
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)


def test_push_pull_round_trip_and_corrupted_object(tmp_path: Path, s3_server: S3Endpoint) -> None:
    repo, bucket = _s3_repo(tmp_path, s3_server)
    assert "s3://recops-dvc/store" in (repo / ".dvc" / "config").read_text()  # committed config untouched
    events = make_events(date(2026, 1, 1), n=200)
    events["user_id"] = pseudonymize(events["user_id"], "k")
    batch = write_batch(tmp_path / "landing", date(2026, 1, 1), events=events, catalog=make_catalog())

    result = publish_batch(batch, data_dir=repo / "data", repo_root=repo, remote="s3")
    assert result.pushed
    assert dvc_status_cloud(repo, "s3") == {}
    client = s3_server.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/")["Contents"]]
    assert len(keys) == 3  # events, catalog and the .dir listing
    original = tree_digest(repo / "data")

    _forget_local_copies(repo)
    dvc_pull(repo, "s3")
    assert tree_digest(repo / "data") == original

    # One flipped byte in the events object on the remote, same key: DVC must refuse it (verify = true).
    events_md5 = hashlib.md5((repo / "data" / batch.name / "events.parquet").read_bytes()).hexdigest()
    key = f"{PREFIX}/files/md5/{events_md5[:2]}/{events_md5[2:]}"
    assert key in keys
    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))

    _forget_local_copies(repo)
    with pytest.raises(DvcHashMismatch, match="hash mismatch") as info:
        dvc_pull(repo, "s3")
    assert events_md5 in str(info.value)
    assert "failed to pull" in str(info.value)  # DVC's own message, non-zero exit
    corrupt = repo / "data" / batch.name / "events.parquet"
    assert not corrupt.exists()  # nothing corrupt was checked out
    cached = repo / ".dvc" / "cache" / "files" / "md5" / events_md5[:2] / events_md5[2:]
    assert not cached.exists()  # the bad bytes never entered the cache under the good hash

    # Why `verify = true` matters (D1): without it DVC trusts the remote and checks the corrupt bytes out.
    run_dvc(["remote", "modify", "--local", "s3", "verify", "false"], repo)
    _forget_local_copies(repo)
    dvc_pull(repo, "s3")
    assert hashlib.md5(corrupt.read_bytes()).hexdigest() != events_md5


def test_verify_finds_an_object_lost_on_s3_that_dvc_status_does_not(
    tmp_path: Path, s3_server: S3Endpoint
) -> None:
    from pipelines.verify import verify_data

    repo, bucket = _s3_repo(tmp_path, s3_server)
    events = make_events(date(2026, 1, 1), n=200)
    events["user_id"] = pseudonymize(events["user_id"], "k")
    batch = write_batch(tmp_path / "landing", date(2026, 1, 1), events=events, catalog=make_catalog())
    publish_batch(batch, data_dir=repo / "data", repo_root=repo, remote="s3")
    assert verify_data(repo / "data", repo, remote="s3").ok

    # An object lost later (lifecycle rule, a hand-made delete); the .dir listing is still there.
    events_md5 = hashlib.md5((repo / "data" / batch.name / "events.parquet").read_bytes()).hexdigest()
    s3_server.client().delete_object(
        Bucket=bucket, Key=f"{PREFIX}/files/md5/{events_md5[:2]}/{events_md5[2:]}"
    )
    assert dvc_status_cloud(repo, "s3") == {}  # DVC trusts the .dir object and sees nothing wrong
    report = verify_data(repo / "data", repo, remote="s3")
    assert [p.line() for p in report.problems] == [
        f"BAD remote: {events_md5}: not on remote ({batch.name}/events.parquet)"
    ]
