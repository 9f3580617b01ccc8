"""Writing and reading a feature set: round trip, identical bytes, clear errors."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from pipelines.features import build_features, read_features, write_features
from pipelines.features.io import FILES, META_FILE, SUMMARY_FILE
from pipelines.params import FeatureParams
from tests.factories import make_catalog, make_events

PARAMS = FeatureParams(test_days=2, valid_days=2, max_sequence_length=5)


def _events() -> pd.DataFrame:
    return pd.concat([make_events(date(2026, 1, d), n=300, seed=d) for d in range(1, 9)], ignore_index=True)


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    fs = build_features(_events(), make_catalog(), PARAMS)
    write_features(fs, tmp_path)
    back = read_features(tmp_path)
    pd.testing.assert_frame_equal(back.events, fs.events)
    pd.testing.assert_frame_equal(back.item_table, fs.item_table)
    assert back.item_ids.tolist() == fs.item_ids.tolist() and back.user_ids.tolist() == fs.user_ids.tolist()
    assert back.split_info == fs.split_info and back.params == fs.params and back.summary == fs.summary
    seq = pd.read_parquet(tmp_path / "sequences.parquet")
    assert seq["items"].map(len).max() == 5
    assert list(seq["items"].iloc[0]) == [i for i in fs.sequences("all")[0].tolist() if i >= 0]


def test_equal_input_gives_identical_bytes(tmp_path: Path) -> None:
    ev = _events()
    write_features(build_features(ev, make_catalog(), PARAMS), tmp_path / "a")
    write_features(
        build_features(ev.sample(frac=1.0, random_state=1), make_catalog(), PARAMS), tmp_path / "b"
    )
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_summary_is_flat_enough_for_dvc_metrics(tmp_path: Path) -> None:
    write_features(build_features(_events(), make_catalog(), PARAMS), tmp_path)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["events_out"] <= summary["events_in"] == 2400
    assert all(isinstance(v, int) for v in summary["temporal"].values())


def test_missing_or_foreign_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecopsError, match="not a feature set"):
        read_features(tmp_path)
    write_features(build_features(_events(), make_catalog(), PARAMS), tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["format_version"] = 99
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(RecopsError, match="unsupported format"):
        read_features(tmp_path)
