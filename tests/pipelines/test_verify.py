"""Bit rot and damaged published files: page checksums catch them on read, ``recops data verify`` finds them
in data/, the DVC cache and on the remote, and every reader names the file and the restore command."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.privacy import pseudonymize
from pipelines.data_record import file_md5, read_listing
from pipelines.datastore import PublishedDataError, read_published
from pipelines.dvc_objects import cache_object_path
from pipelines.dvc_ops import run_dvc
from pipelines.publish import publish_batches
from pipelines.verify import verify_data
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.crash import recops, recops_env
from tests.pipelines.dvc_repo import dvc_file_md5, make_dvc_repo

KEY = "verify-test-key"
PROJECT = Path(__file__).resolve().parents[2]
DAY, DAY2 = date(2026, 1, 1), date(2026, 1, 2)


def flip_page_byte(path: Path) -> None:
    """Flip the last byte of the first column chunk (inside a data page), keeping size, mode and mtime."""
    column = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    offset = start + column.total_compressed_size - 1
    before, mode = path.stat(), stat.S_IMODE(path.stat().st_mode)
    path.chmod(mode | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    path.chmod(mode)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = make_dvc_repo(tmp_path)
    batches = []
    for seed, day in enumerate((DAY, DAY2)):
        events = make_events(day, n=200, n_users=10, seed=seed)
        events["user_id"] = pseudonymize(events["user_id"], KEY)
        batches.append(write_batch(tmp_path / "landing", day, events=events, catalog=make_catalog()))
    publish_batches(batches, data_dir=repo / "data", repo_root=repo)
    return repo


def test_bit_rot_in_the_dvc_cache_is_caught_on_read_and_by_verify(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    events = data / DAY.isoformat() / "events.parquet"
    listing = read_listing(repo, dvc_file_md5(repo / "data.dvc"))
    assert listing is not None
    md5 = listing[f"{DAY}/events.parquet"]
    cached = cache_object_path(repo, md5)
    flip_page_byte(cached)  # bit rot in the cache; size and mtime kept, so DVC trusts it

    events.unlink()
    run_dvc(["checkout", "data.dvc"], repo)  # DVC restores the rotten copy without a word
    assert events.is_file() and file_md5(events) != md5

    with pytest.raises(PublishedDataError, match=r"events\.parquet: published file is unreadable") as info:
        read_published(data)
    assert "CRC" in str(info.value) and "delete it and run `dvc checkout data.dvc`" in str(info.value)
    assert str(events) in str(info.value)

    report = verify_data(data, repo, remote="local")
    lines = [p.line() for p in report.problems]
    assert (
        f"BAD cache: {md5}: corrupt in the local DVC cache: bytes do not match ({DAY}/events.parquet)"
        in lines
    )
    assert f"BAD workspace: data/{DAY}/events.parquet: bytes differ from the recorded MD5" in lines
    assert any(
        line.startswith(f"BAD workspace: data/{DAY}/events.parquet: ") and "CRC" in line for line in lines
    )
    assert len(lines) == 3, lines  # nothing else: the remote holds every object

    env = recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml")
    done = recops(env, repo, "data", "verify")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("3 problem(s): data.dvc ")

    # The runbook: delete the damaged copies verify names (cache object and data file), then pull the good
    # copy back (the remote re-hashes it on download).
    cached.chmod(0o644)
    cached.unlink()
    events.unlink()
    run_dvc(["pull", "data.dvc"], repo)
    assert file_md5(events) == md5
    assert verify_data(data, repo, remote="local").ok
    fine = recops(env, repo, "data", "verify")
    assert fine.returncode == 0 and fine.stdout.startswith("OK: data.dvc "), fine.stdout + fine.stderr


def test_damaged_published_files_are_clear_errors_for_every_reader(tmp_path: Path, repo: Path) -> None:
    events = repo / "data" / DAY2.isoformat() / "events.parquet"
    events.write_bytes(events.read_bytes()[:500])  # truncated
    env = recops_env(repo, tmp_path / "runtime", PROJECT / "params.yaml", RECOPS_PSEUDONYMIZATION_KEY=KEY)
    for args in (("features",), ("recommend", "--user", "u1"), ("data", "forget", "--user", "u1")):
        done = recops(env, repo, *args)
        assert done.returncode == 2, f"{args}: {done.stdout}{done.stderr}"
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr, args
        assert f"{DAY2}/events.parquet" in done.stderr, args
        assert "dvc checkout" in done.stderr, args  # (forget: data/ differs from data.dvc, same remedy)
    assert not (repo / "artifacts").exists()  # features stopped before writing anything


def test_verify_lists_unrecorded_changes_and_interrupted_writers(tmp_path: Path, repo: Path) -> None:
    data = repo / "data"
    (data / "2026-02-01").mkdir()
    (data / "2026-02-01" / "events.parquet").write_bytes(b"not parquet")
    staging = repo / ".data-staging"
    (staging / ".2026-02-01.tmp-abc").mkdir()
    report = verify_data(data, repo, check_remote=False)
    lines = [p.line() for p in report.problems]
    assert "BAD workspace: data/2026-02-01/events.parquet: not recorded in data.dvc" in lines
    assert any("2026-02-01/events.parquet: published file is unreadable" in line for line in lines)
    assert any(line.startswith("BAD staging: ") and "leftover temporary copy" in line for line in lines)
    assert "remote not checked" in report.summary() and not report.ok
