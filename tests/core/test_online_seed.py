"""The online-store seed file: validation, atomic write with a manifest, digest checks on read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from core.online_seed import (
    SeedError,
    canonical_seed,
    read_manifest,
    read_seed,
    seed_digest,
    seed_paths,
    write_seed,
)
from core.privacy import pseudonymize_id
from core.settings import Settings

ALICE = pseudonymize_id("alice", "k")
BOB = pseudonymize_id("bob", "k")


def seed_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [BOB, ALICE],
            "recent_items": [["i3"], ["i1", "i2", "i1"]],
            "bought_items": [[], ["i2"]],
            "last_ts": pd.to_datetime(["2026-01-02T10:00:00Z", "2026-01-01T09:30:00Z"], utc=True),
        }
    )


def test_write_then_read_gives_the_rows_sorted_with_a_matching_manifest(recops_settings: Settings) -> None:
    manifest = write_seed(seed_frame(), recops_settings, now=datetime(2026, 1, 3, tzinfo=UTC))
    parquet_path, manifest_path = seed_paths(recops_settings)
    assert parquet_path == recops_settings.runtime_dir / "online" / "seed.parquet"
    assert read_manifest(manifest_path) == manifest
    assert manifest["rows"] == 2 and manifest["created_at"] == "2026-01-03T00:00:00+00:00"
    frame = read_seed(parquet_path)
    assert frame["user_id"].tolist() == sorted([ALICE, BOB])
    alice = frame.set_index("user_id").loc[ALICE]
    assert alice["recent_items"] == ["i1", "i2", "i1"] and alice["bought_items"] == ["i2"]
    assert alice["last_ts"] == pd.Timestamp("2026-01-01T09:30:00Z")
    assert str(frame["last_ts"].dtype) == "datetime64[us, UTC]"
    assert manifest["digest"] == seed_digest(frame)


def test_digest_depends_on_content_not_row_order() -> None:
    frame = seed_frame()
    assert seed_digest(canonical_seed(frame)) == seed_digest(canonical_seed(frame.iloc[::-1]))
    changed = frame.copy()
    changed["recent_items"] = pd.Series([["i4"], ["i1", "i2", "i1"]], dtype=object)
    assert seed_digest(canonical_seed(changed)) != seed_digest(canonical_seed(frame))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="bought_items"), "missing column"),
        (lambda f: f.assign(user_id=["alice", BOB]), "pseudonyms"),
        (lambda f: f.assign(user_id=[ALICE, ALICE]), "more than once"),
        (lambda f: f.assign(recent_items=["i1", ["i2"]]), "not a list of item ids"),
        (lambda f: f.assign(bought_items=[[None], []]), "not a list of item ids"),
        (lambda f: f.assign(last_ts=["2026-01-01", "2026-01-02"]), "timezone-aware"),
    ],
)
def test_malformed_frames_are_refused_and_nothing_is_written(
    recops_settings: Settings, change: object, message: str
) -> None:
    bad = change(seed_frame())  # type: ignore[operator]
    with pytest.raises(SeedError, match=message):
        write_seed(bad, recops_settings)
    assert not any(p.exists() for p in seed_paths(recops_settings))


def test_too_long_recent_items_are_refused_when_a_limit_is_given() -> None:
    with pytest.raises(SeedError, match="3 items > 2"):
        canonical_seed(seed_frame(), max_length=2)


def test_a_file_that_changed_after_writing_is_refused(recops_settings: Settings) -> None:
    write_seed(seed_frame(), recops_settings)
    parquet_path, manifest_path = seed_paths(recops_settings)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["digest"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(SeedError, match=r"does not match seed\.json"):
        read_seed(parquet_path)
    assert len(read_seed(parquet_path, verify=False)) == 2


def test_unreadable_or_missing_files_name_the_file(recops_settings: Settings) -> None:
    parquet_path, manifest_path = seed_paths(recops_settings)
    with pytest.raises(SeedError, match="not found: run `recops online seed`"):
        read_seed(parquet_path)
    parquet_path.parent.mkdir(parents=True)
    parquet_path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(SeedError, match=r"seed\.parquet: not a readable seed file"):
        read_seed(parquet_path)
    manifest_path.write_text("{", encoding="utf-8")
    with pytest.raises(SeedError, match="unreadable seed manifest"):
        read_manifest(manifest_path)
    manifest_path.write_text('{"digest": 1}', encoding="utf-8")
    with pytest.raises(SeedError, match="must hold digest"):
        read_manifest(manifest_path)
