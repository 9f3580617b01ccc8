"""The MLflow pyfunc wrapper, loaded from a package folder without an MLflow server or pickle."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from models.base import Interactions
from models.package import ModelPackage
from models.pyfunc import RecopsRecommenderModel
from tests.models.conftest import MOST_POPULAR, new_model
from tests.models.test_package import CUTOFF, item_table


def loaded_wrapper(family: str, block_interactions: Interactions, folder: Path) -> RecopsRecommenderModel:
    model = new_model(family).fit(block_interactions)
    ModelPackage(model=model, items=item_table(), training_cutoff=CUTOFF).save(folder)
    wrapper = RecopsRecommenderModel()
    wrapper.load_context(SimpleNamespace(artifacts={"package": str(folder)}))  # type: ignore[arg-type]
    return wrapper


def test_predict_returns_k_ranked_ids_and_scores(block_interactions: Interactions, tmp_path: Path) -> None:
    wrapper = loaded_wrapper("itemknn", block_interactions, tmp_path / "package")
    frame = pd.DataFrame({"history": [["i0", "i1"], ["i5", "i6"], [], None]})
    out = wrapper.predict(None, frame, params={"k": 4})  # type: ignore[arg-type]
    assert list(out.columns) == ["item_ids", "scores"]
    assert len(out) == 4
    for ids, scores in zip(out["item_ids"], out["scores"], strict=True):
        assert len(ids) == len(scores) == 4
        assert all(a >= b for a, b in itertools.pairwise(scores)), "best first"
    assert set(out["item_ids"][0]) <= {f"i{i}" for i in range(5)}, "a group-A history gets group A"
    assert set(out["item_ids"][1]) <= {f"i{i}" for i in range(5, 10)}
    assert out["item_ids"][2] == out["item_ids"][3], "an empty and a missing history are both cold"
    assert out["item_ids"][2][0] == f"i{MOST_POPULAR}"


def test_predict_honours_exclude_seen_and_defaults(block_interactions: Interactions, tmp_path: Path) -> None:
    wrapper = loaded_wrapper("popularity", block_interactions, tmp_path / "package")
    seen = f"i{MOST_POPULAR}"
    frame = pd.DataFrame({"history": [[seen]]})
    default = wrapper.predict(None, frame)  # type: ignore[arg-type]
    assert len(default["item_ids"][0]) == 10, "k defaults to 10"
    assert default["item_ids"][0][0] == seen
    excluded = wrapper.predict(None, frame, params={"k": 3, "exclude_seen": True})  # type: ignore[arg-type]
    assert seen not in excluded["item_ids"][0]
    assert len(excluded["item_ids"][0]) == 3
