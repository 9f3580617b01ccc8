"""The model package: serving filters, training cut-off, and bytes that are a pure function of the fit."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import create_model, family_class
from models.base import FitContext, Interactions, ModelLoadError
from models.package import ITEMS_FILE, PACKAGE_FILE, ModelPackage, package_digest
from tests.models.conftest import MOST_POPULAR, N_ITEMS, new_model

CUTOFF = datetime(2026, 2, 16, tzinfo=UTC)


def item_table(n_items: int = N_ITEMS, out_of_stock: tuple[int, ...] = ()) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "category": [f"c{i % 3}" for i in range(n_items)],
            "brand": [f"b{i % 2}" for i in range(n_items)],
            "price": [1.5 + i for i in range(n_items)],
            "in_stock": [i not in out_of_stock for i in range(n_items)],
        }
    )


def popularity_package(block_interactions: Interactions, out_of_stock: tuple[int, ...] = ()) -> ModelPackage:
    model = create_model("popularity").fit(block_interactions)
    return ModelPackage(model=model, items=item_table(out_of_stock=out_of_stock), training_cutoff=CUTOFF)


def first_ids(package: ModelPackage, history: list[str], **kwargs: bool) -> list[str]:
    return [item for item, _ in package.recommend_ids([history], k=3, **kwargs)[0]]


# ------------------------------------------------------------------------------------------- serving filters


def test_exclude_seen_drops_a_seen_item_that_would_rank_first(block_interactions: Interactions) -> None:
    package = popularity_package(block_interactions)
    seen = f"i{MOST_POPULAR}"
    assert first_ids(package, [seen])[0] == seen, "without the filter the seen item ranks first"
    filtered = first_ids(package, [seen], exclude_seen=True)
    assert seen not in filtered
    assert len(filtered) == 3


def test_in_stock_only_drops_an_out_of_stock_item_that_would_rank_first(
    block_interactions: Interactions,
) -> None:
    package = popularity_package(block_interactions, out_of_stock=(MOST_POPULAR,))
    top = f"i{MOST_POPULAR}"
    assert first_ids(package, [], in_stock_only=False)[0] == top
    assert top not in first_ids(package, [])  # in_stock_only is the default
    assert top not in first_ids(package, [], in_stock_only=True)


def test_unknown_history_items_are_ignored(block_interactions: Interactions) -> None:
    package = popularity_package(block_interactions)
    assert first_ids(package, ["not-in-catalogue"]) == first_ids(package, [])


# ------------------------------------------------------------------------------------------- cut-off


def test_training_cutoff_round_trips_as_utc(block_interactions: Interactions, tmp_path: Path) -> None:
    model = create_model("popularity").fit(block_interactions)
    local = CUTOFF.astimezone(timezone(timedelta(hours=2)))
    ModelPackage(model=model, items=item_table(), training_cutoff=local).save(tmp_path)
    assert json.loads((tmp_path / PACKAGE_FILE).read_text())["training_cutoff"] == "2026-02-16T00:00:00Z"
    loaded = ModelPackage.load(tmp_path)
    assert loaded.training_cutoff == CUTOFF
    assert loaded.training_cutoff is not None and loaded.training_cutoff.utcoffset() == timedelta(0)


def test_packages_without_a_cutoff_load_with_none(block_interactions: Interactions, tmp_path: Path) -> None:
    popularity_package(block_interactions).save(tmp_path)
    meta = json.loads((tmp_path / PACKAGE_FILE).read_text())
    del meta["training_cutoff"]
    meta["lineage"] = {"git_commit": "abc"}  # what packages held before lineage moved to MLflow
    (tmp_path / PACKAGE_FILE).write_text(json.dumps(meta))
    assert ModelPackage.load(tmp_path).training_cutoff is None


def test_a_bad_cutoff_is_refused(block_interactions: Interactions, tmp_path: Path) -> None:
    popularity_package(block_interactions).save(tmp_path)
    meta = json.loads((tmp_path / PACKAGE_FILE).read_text())
    for bad, message in (("yesterday", "ISO-8601"), ("2026-02-16T00:00:00", "time zone")):
        (tmp_path / PACKAGE_FILE).write_text(json.dumps({**meta, "training_cutoff": bad}))
        with pytest.raises(ModelLoadError, match=message):
            ModelPackage.load(tmp_path)
    model = create_model("popularity").fit(block_interactions)
    with pytest.raises(ValueError, match="timezone-aware"):
        ModelPackage(model=model, items=item_table(), training_cutoff=datetime(2026, 2, 16))


# ------------------------------------------------------------------------------------------- pure bytes


def folder_bytes(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_fitting_and_saving_twice_gives_identical_folders(
    family: str, block_interactions: Interactions, tmp_path: Path
) -> None:
    """Same data, config and seed: the same bytes, whatever the worker thread count.

    Torch families are the exception: torch's parallel reductions sum in an order that depends on the thread
    count, so they give the same bytes for the same thread count (and device) only.
    """
    counts = (1, 1) if family_class(family).uses_torch else (1, 2)
    for name, threads in zip(("a", "b"), counts, strict=True):
        model = new_model(family).fit(block_interactions, ctx=FitContext(seed=5, threads=threads))
        ModelPackage(model=model, items=item_table(), training_cutoff=CUTOFF).save(tmp_path / name)
    first, second = folder_bytes(tmp_path / "a"), folder_bytes(tmp_path / "b")
    assert sorted(first) == [ITEMS_FILE, "model/config.json", "model/weights.safetensors", PACKAGE_FILE]
    for name in first:
        assert first[name] == second[name], f"{name} differs between two identical fits"
    assert package_digest(tmp_path / "a") == package_digest(tmp_path / "b")


def test_package_json_holds_no_lineage(block_interactions: Interactions, tmp_path: Path) -> None:
    popularity_package(block_interactions).save(tmp_path)
    meta = json.loads((tmp_path / PACKAGE_FILE).read_text())
    assert set(meta) == {"format_version", "family", "n_items", "catalog_sha256", "training_cutoff"}


def test_package_digest_sees_every_byte(block_interactions: Interactions, tmp_path: Path) -> None:
    popularity_package(block_interactions).save(tmp_path)
    before = package_digest(tmp_path)
    assert len(before) == 64
    weights = tmp_path / "model" / "weights.safetensors"
    content = bytearray(weights.read_bytes())
    content[-1] ^= 1
    weights.write_bytes(bytes(content))
    assert package_digest(tmp_path) != before
    with pytest.raises(ModelLoadError, match="no model package folder"):
        package_digest(tmp_path / "missing")


def test_item_order_is_the_model_index(block_interactions: Interactions, tmp_path: Path) -> None:
    package = popularity_package(block_interactions)
    package.save(tmp_path)
    loaded = ModelPackage.load(tmp_path)
    assert loaded.items["item_id"].tolist() == [f"i{i}" for i in range(N_ITEMS)]
    np.testing.assert_array_equal(loaded.in_stock_mask, np.ones(N_ITEMS, dtype=bool))
