"""Generic loader on files without timestamps (SASRec / BERT4Rec format): the synthetic row-order clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.datasets.loaders.common import DataFileError
from pipelines.datasets.loaders.generic import (
    ROW_ORDER_START,
    WHITESPACE,
    load_generic,
    required_event_fields,
)
from pipelines.features import build_features
from pipelines.params import FeatureParams
from tests.pipelines.datasets.loaders.helpers import assert_schema

MAPPING = {"user_id": "user", "item_id": "item"}
ROW_ORDER = {"header": ("user", "item"), "sep": WHITESPACE, "ts_from_row_order": True}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seq.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_tiny_whitespace_file_gets_one_step_per_row_of_each_user(tmp_path: Path) -> None:
    # users' rows interleave; spaces and tabs mixed; u2 repeats item 7 on consecutive rows
    path = _write(tmp_path, "1 10\n2 6\n1  11\n2\t7\n1 12\n2 7\n1 10\n2 9\n")
    events, catalog = load_generic(path, mapping=MAPPING, key=None, **ROW_ORDER)  # type: ignore[arg-type]
    assert_schema(events, catalog)
    assert (events["event_type"] == "purchase").all() and len(events) == 8
    minute = pd.Timedelta(seconds=60)
    for user, items in (("1", ["10", "11", "12", "10"]), ("2", ["6", "7", "7", "9"])):
        mine = events[events["user_id"] == user].sort_values("ts")
        assert mine["item_id"].tolist() == items  # file order is time order
        expected = [ROW_ORDER_START + k * minute for k in range(len(items))]
        assert mine["ts"].tolist() == expected
    # the repeated item stays two events (60 s > features.dedup_seconds) and leave-one-out follows the rows
    fs = build_features(events, catalog, FeatureParams(protocol="loo"))
    assert len(fs.events) == 8
    test = fs.interactions("test")
    assert sorted(fs.decode_items(test.item_idx).tolist()) == ["10", "9"]
    valid = fs.interactions("valid")
    assert sorted(fs.decode_items(valid.item_idx).tolist()) == ["12", "7", "7"]  # u2's run of 7 is one target
    again, _ = load_generic(path, mapping=MAPPING, key=None, **ROW_ORDER)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(again, events)


def test_row_step_is_configurable_and_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, "a x\na y\n")
    events, _ = load_generic(
        path,
        mapping=MAPPING,
        key=None,
        row_step_seconds=86_400,
        **ROW_ORDER,  # type: ignore[arg-type]
    )
    assert events.sort_values("ts")["ts"].diff().iloc[1] == pd.Timedelta(days=1)
    with pytest.raises(DataFileError, match="positive number"):
        load_generic(path, mapping=MAPPING, key=None, row_step_seconds=0, **ROW_ORDER)  # type: ignore[arg-type]
    with pytest.raises(DataFileError, match="would pass 2100"):
        load_generic(path, mapping=MAPPING, key=None, row_step_seconds=4e9, **ROW_ORDER)  # type: ignore[arg-type]


def test_mapping_rules_with_and_without_the_row_order_clock(tmp_path: Path) -> None:
    path = _write(tmp_path, "a x\na y\n")
    assert "ts" in required_event_fields() and "ts" not in required_event_fields(True)
    with pytest.raises(DataFileError, match="do not map ts"):
        load_generic(path, mapping={**MAPPING, "ts": "item"}, key=None, **ROW_ORDER)  # type: ignore[arg-type]
    with pytest.raises(DataFileError, match=r"required field.*ts"):
        load_generic(path, mapping=MAPPING, key=None, header=("user", "item"), sep=WHITESPACE)
    with pytest.raises(DataFileError, match="distinct, non-empty"):
        load_generic(path, mapping=MAPPING, key=None, header=("user", "user"), sep=WHITESPACE,
                     ts_from_row_order=True)  # fmt: skip


# ------------------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def beauty(raw_dir: Path) -> Path:
    return raw_dir / "amazon-beauty-bert4rec" / "beauty.txt"


def test_amazon_beauty_file_loads_with_the_row_order_clock(beauty: Path) -> None:
    """The shared BERT4Rec Beauty file (read in place): counts of SOURCE.md, file order = time order."""
    events, catalog = load_generic(beauty, mapping=MAPPING, key=None, **ROW_ORDER)  # type: ignore[arg-type]
    assert_schema(events, catalog)
    assert len(events) == 353_962
    assert events["user_id"].nunique() == 40_226 and len(catalog) == 54_542
    raw = pd.read_csv(beauty, sep=" ", header=None, names=["user", "item"], dtype=str)
    order = np.lexsort((events["ts"].to_numpy(), events["user_id"].to_numpy()))
    by_time = events.iloc[order]
    by_file = raw.iloc[np.argsort(raw["user"].to_numpy(), kind="stable")]
    assert by_time["user_id"].tolist() == by_file["user"].tolist()
    assert by_time["item_id"].tolist() == by_file["item"].tolist()
    assert not events.duplicated(["user_id", "ts"]).any()


def test_cli_loads_a_sasrec_style_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    path = _write(tmp_path, "u1 i1\nu1 i2\nu2 i1\n")
    result = CliRunner().invoke(
        app,
        [
            "data", "load", "generic", "--path", str(path), "--out", str(tmp_path / "out"),
            "--map", "user_id=user,item_id=item", "--header", "user,item", "--sep", "whitespace",
            "--ts-from-row-order", "--row-step-seconds", "30",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["2000-01-01"]
    events = pd.read_parquet(tmp_path / "out" / "2000-01-01" / "events.parquet").sort_values("ts")
    assert events["ts"].max() == ROW_ORDER_START + pd.Timedelta(seconds=30)
    assert len(events) == 3
