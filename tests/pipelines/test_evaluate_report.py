"""The evaluate stage's pure core: selection on validation, report on test, reproducible payloads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from core.errors import RecopsError
from models.base import FloatArray, IntArray, Recommender
from pipelines.evaluate_report import (
    StageEvaluation,
    details_payload,
    evaluate_stage,
    metrics_payload,
    plot_payloads,
    select_family,
)
from pipelines.features import FeatureSet, build_features
from pipelines.params import EvaluateParams
from tests.factories import make_catalog
from tests.registry_helpers import FEATURE_PARAMS, clustered_events

PARAMS = EvaluateParams(ks=[5, 10], primary_metric="ndcg_at_10", bootstrap_samples=100)


class SplitOracle(Recommender):
    """Knows the relevant items of ONE evaluation target (looked up by the user's history) and ranks them
    first; for any other history it has no idea (all scores 0)."""

    family = "split_oracle"

    def __init__(self, targets: dict[bytes, IntArray] | None = None, n_items: int = 0) -> None:
        super().__init__()
        self.targets = targets or {}
        self.n_items = n_items
        self.item_popularity = np.zeros(n_items, dtype=np.float32)

    def _fit(self, train: Any, valid: Any, ctx: Any, on_epoch: Any) -> None:
        """Nothing to learn."""

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        scores = np.zeros((len(histories), self.n_items), dtype=np.float32)
        for row, history in enumerate(histories):
            known = self.targets.get(np.asarray(history, dtype=np.int64).tobytes())
            if known is not None:
                scores[row, known] = 1.0
        return scores

    def cold_scores(self) -> FloatArray:
        return np.zeros(self.n_items, dtype=np.float32)

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        """Nothing to restore."""


def _oracle(fs: FeatureSet, target: str) -> SplitOracle:
    from pipelines.evaluate import build_task

    task = build_task(fs, target=target)  # type: ignore[arg-type]
    keyed = {h.tobytes(): task.relevance.row(r) for r, h in enumerate(task.histories) if len(h)}
    return SplitOracle(keyed, fs.n_items)


@pytest.fixture(scope="module")
def fs() -> FeatureSet:
    return build_features(clustered_events(), make_catalog(40), FEATURE_PARAMS)


def test_a_family_that_wins_on_test_but_loses_on_validation_is_not_selected(fs: FeatureSet) -> None:
    # "valid_fan" knows the validation period's answers, "test_fan" the test period's
    models: dict[str, Recommender] = {"valid_fan": _oracle(fs, "valid"), "test_fan": _oracle(fs, "test")}
    evaluation = evaluate_stage(fs, models, models, PARAMS, seed=1, progress=False)
    metrics = evaluation.metrics()
    assert metrics["test_fan"]["ndcg_at_10"] > metrics["valid_fan"]["ndcg_at_10"]  # test winner...
    assert metrics["valid_fan"]["valid_ndcg_at_10"] > metrics["test_fan"]["valid_ndcg_at_10"]
    assert evaluation.selected() == "valid_fan"  # ...is not the one selected
    assert evaluation.n_valid_users == metrics["valid_fan"]["valid_n_users"]
    assert evaluation.n_test_users == metrics["valid_fan"]["n_users"] == len(fs.test_users())
    comparison = plot_payloads(evaluation, PARAMS.ks)["comparison.json"]
    assert [row["selected"] for row in comparison] == [True, False]


def test_select_family_reads_only_validation_metrics() -> None:
    metrics = {
        "a": {"ndcg_at_10": 0.9, "valid_ndcg_at_10": 0.1},
        "b": {"ndcg_at_10": 0.1, "valid_ndcg_at_10": 0.2},
        "c": {"ndcg_at_10": 0.5, "valid_ndcg_at_10": 0.2},  # tie with b: the first wins
    }
    assert select_family(metrics, "ndcg_at_10") == "b"
    with pytest.raises(RecopsError, match="valid_ndcg_at_10"):
        select_family({"a": {"ndcg_at_10": 0.9}}, "ndcg_at_10")


def _payload_bytes(evaluation: StageEvaluation) -> list[bytes]:
    payloads: list[Any] = [metrics_payload(evaluation), details_payload(evaluation)]
    payloads += list(plot_payloads(evaluation, PARAMS.ks).values())
    return [json.dumps(p, indent=2, sort_keys=True, allow_nan=False).encode() for p in payloads]


def test_payloads_are_strict_json_and_identical_on_a_rerun(fs: FeatureSet) -> None:
    from models import create_model

    def models() -> dict[str, Recommender]:
        train, train_valid = fs.interactions("train"), fs.interactions("train_valid")
        return {
            "popularity": create_model("popularity", {}).fit(train),
            "itemknn": create_model("itemknn", {"neighbours": 20}).fit(train),
        }, {
            "popularity": create_model("popularity", {}).fit(train_valid),
            "itemknn": create_model("itemknn", {"neighbours": 20}).fit(train_valid),
        }  # type: ignore[return-value]

    first = evaluate_stage(fs, *models(), PARAMS, seed=7, progress=False)  # type: ignore[misc]
    second = evaluate_stage(fs, *models(), PARAMS, seed=7, progress=False)  # type: ignore[misc]
    assert _payload_bytes(first) == _payload_bytes(second)
    details = details_payload(first)["itemknn"]
    assert details["selection"]["target"] == "valid" and details["report"]["target"] == "test"
    assert "seconds" not in details["report"]
    metrics = metrics_payload(first)["itemknn"]
    for name in (
        "ndcg_at_10",
        "recall_at_10",
        "recall_trunc_at_10",
        "valid_ndcg_at_10",
        "valid_recall_at_10",
    ):
        assert 0.0 <= metrics[name] <= 1.0, name
    curve = plot_payloads(first, PARAMS.ks)["ndcg_at_k.json"]
    assert {(row["family"], row["k"]) for row in curve} == {
        (f, k) for f in ("popularity", "itemknn") for k in (5, 10)
    }
    assert all(row["recall"] <= row["recall_trunc"] + 1e-12 for row in curve)


def test_mismatched_families_and_missing_validation_are_refused(fs: FeatureSet) -> None:
    model = SplitOracle({}, fs.n_items)
    with pytest.raises(RecopsError, match="each family needs both"):
        evaluate_stage(fs, {"a": model}, {"b": model}, PARAMS, progress=False)
    no_valid = build_features(
        clustered_events(), make_catalog(40), FEATURE_PARAMS.model_copy(update={"valid_days": 0})
    )
    with pytest.raises(RecopsError, match="model selection needs validation users"):
        evaluate_stage(no_valid, {"a": model}, {"a": model}, PARAMS, progress=False)
