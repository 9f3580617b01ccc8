"""evaluate_model / evaluate_models with toy models whose rankings are known."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from core.errors import RecopsError
from models.base import EpochCallback, FitContext, FloatArray, IntArray, Interactions, Recommender
from pipelines.evaluate import build_task, evaluate_model, evaluate_models
from pipelines.evaluate_report import paired_difference, results_table
from pipelines.features import FeatureSet, build_features
from pipelines.params import EvaluateParams, FeatureParams
from tests.factories import make_catalog, make_events
from tests.pipelines.features.frames import DAY, catalog, events_frame

LOG2_3, LOG2_5 = math.log2(3), math.log2(5)


class FixedScores(Recommender):
    """Scores every item by a fixed vector for every user (cold users too)."""

    family = "fixed"

    def __init__(self, scores: Sequence[float] = ()) -> None:
        super().__init__()
        self.fixed = np.asarray(scores, dtype=np.float32)

    def _fit(
        self, data: Interactions, valid: Interactions | None, ctx: FitContext, on_epoch: EpochCallback | None
    ) -> None:
        self.item_popularity = np.zeros(data.n_items, dtype=np.float32)  # no popularity tie-breaking

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        return np.tile(self.fixed, (len(histories), 1))

    def cold_scores(self) -> FloatArray:
        return self.fixed

    def hyperparameters(self) -> dict[str, Any]:
        return {"scores": self.fixed.tolist()}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        pass


class Oracle(Recommender):
    """Knows each user's test items (looked up by their history): ``sign`` 1 ranks them first, -1 last."""

    family = "oracle"

    def __init__(self, targets: dict[bytes, IntArray] | None = None, sign: float = 1.0) -> None:
        super().__init__()
        self.targets = targets or {}
        self.sign = sign

    def _fit(
        self, data: Interactions, valid: Interactions | None, ctx: FitContext, on_epoch: EpochCallback | None
    ) -> None:
        pass

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        for row, hist in enumerate(histories):
            out[row, self.targets[np.asarray(hist, dtype=np.int64).tobytes()]] = self.sign * 1000.0
        return out

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        pass


# ------------------------------------------------------------------------------------------ hand-made case
# Items i00000..i00019 (category = index % 5). Jan 1 train, Jan 2 valid, Jan 3 test.
ROWS = [
    ("u1", "i00005", "view", 0),
    ("u1", "i00000", "view", 2 * DAY + 1),
    ("u1", "i00003", "view", 2 * DAY + 2),
    ("u1", "i00005", "view", 2 * DAY + 3),  # seen before: not relevant when exclude_seen
    ("u2", "i00001", "view", 10),
    ("u2", "i00002", "view", DAY + 10),
    ("u2", "i00010", "view", 2 * DAY + 10),
    ("u3", "i00001", "view", 2 * DAY + 20),  # cold user
    ("u4", "i00007", "view", 30),
    ("u4", "i00007", "view", 2 * DAY + 30),  # only a seen item: u4 drops out when exclude_seen
]
PARAMS = EvaluateParams(ks=[2, 5], primary_metric="ndcg_at_5", bootstrap_samples=200)


@pytest.fixture(scope="module")
def small_fs() -> FeatureSet:
    return build_features(events_frame(ROWS), catalog(), FeatureParams(test_days=1, valid_days=1))


def _fixed(fs: FeatureSet) -> FixedScores:
    # score = -index: every list is [0, 1, 2, 3, ...] minus exclusions
    return FixedScores(-np.arange(fs.n_items, dtype=np.float32)).fit(fs.interactions("train"))


def test_task_histories_and_relevance(small_fs: FeatureSet) -> None:
    task = build_task(small_fs, "temporal", exclude_seen=False)
    assert task.users.tolist() == [0, 1, 2, 3]
    assert [h.tolist() for h in task.histories] == [[5], [1, 2], [], [7]]
    assert [task.relevance.row(r).tolist() for r in range(4)] == [[0, 3, 5], [10], [1], [7]]
    assert task.cold.tolist() == [False, False, True, False]
    seen = build_task(small_fs, "temporal", exclude_seen=True)
    assert seen.users.tolist() == [0, 1, 2]  # u4's only test item was seen
    assert seen.relevance.row(0).tolist() == [0, 3]


def test_fixed_ranking_against_hand_computed_metrics(small_fs: FeatureSet) -> None:
    res = evaluate_model(_fixed(small_fs), small_fs, PARAMS, progress=False)
    # lists are [0, 1, 2, 3, 4] for everybody
    u1 = (1 + 1 / LOG2_5) / (1 + 1 / LOG2_3 + 1 / 2)  # hits at ranks 1 and 4 of rel {0, 3, 5}
    u3 = 1 / LOG2_3  # rel {1} at rank 2
    assert res.per_user["ndcg_at_5"].tolist() == pytest.approx([u1, 0.0, u3, 0.0])
    assert res.metrics["ndcg_at_5"] == pytest.approx((u1 + u3) / 4)
    assert res.metrics["recall_at_5"] == pytest.approx((2 / 3 + 0 + 1 + 0) / 4)
    assert res.metrics["recall_at_2"] == pytest.approx((1 / 3 + 0 + 1 + 0) / 4)  # standard: hits / |rel|
    assert res.metrics["recall_trunc_at_2"] == pytest.approx((1 / 2 + 0 + 1 + 0) / 4)  # hits / min(k, |rel|)
    assert res.metrics["hr_at_2"] == pytest.approx(2 / 4)  # u1 (rank 1) and u3 (rank 2)
    assert res.metrics["mrr_at_5"] == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert res.metrics["coverage_at_5"] == pytest.approx(5 / 20)
    assert res.metrics["diversity_at_5"] == pytest.approx(1.0)  # items 0..4 have 5 different categories
    assert res.metrics["n_users"] == 4 and res.n_users == 4
    assert res.metrics["ndcg_at_5_cold"] == pytest.approx(u3) and res.metrics["n_users_cold"] == 1
    assert res.metrics["ndcg_at_5_warm"] == pytest.approx(u1 / 3)
    # category slices: (u1, cat0) rel {0, 5}; (u1, cat3) rel {3}; (u2, cat0) rel {10}; (u3, cat1); (u4, cat2)
    assert res.by_category["cat0"]["n_users"] == 2
    assert res.by_category["cat0"]["ndcg_at_5"] == pytest.approx((1 / (1 + 1 / LOG2_3) + 0) / 2)
    assert res.by_category["cat1"]["ndcg_at_5"] == pytest.approx(1 / LOG2_3)
    assert res.by_category["cat2"]["ndcg_at_5"] == 0.0
    assert res.by_category["cat3"]["ndcg_at_5"] == pytest.approx(1 / LOG2_5)
    low, high = res.metrics["ndcg_at_5_ci_low"], res.metrics["ndcg_at_5_ci_high"]
    assert low <= res.primary <= high


def test_exclude_seen_and_item_mask(small_fs: FeatureSet) -> None:
    params = PARAMS.model_copy(update={"exclude_seen": True})
    res = evaluate_model(_fixed(small_fs), small_fs, params, progress=False)
    assert res.n_users == 3
    # u2 saw items 1 and 2: its list skips them
    assert res.top_k[1].tolist() == [0, 3, 4, 5, 6]
    assert res.per_user["ndcg_at_5"][0] == pytest.approx((1 + 1 / LOG2_5) / (1 + 1 / LOG2_3))
    mask = np.ones(small_fs.n_items, dtype=bool)
    mask[0] = False
    masked = evaluate_model(_fixed(small_fs), small_fs, PARAMS, item_mask=mask, progress=False)
    assert not (masked.top_k == 0).any()
    # u1: list [1, 2, 3, 4, 5] hits rel {0, 3, 5} at ranks 3 and 5
    expected = (1 / 2 + 1 / math.log2(6)) / (1 + 1 / LOG2_3 + 1 / 2)
    assert masked.per_user["ndcg_at_5"][0] == pytest.approx(expected)


def test_to_dict_is_strict_json(small_fs: FeatureSet) -> None:
    res = evaluate_model(_fixed(small_fs), small_fs, PARAMS.model_copy(update={"bootstrap_samples": 0}))
    data = res.to_dict(include_per_user=True)
    text = json.dumps(data, allow_nan=False)  # NaN (no bootstrap) became null
    assert data["metrics"]["ndcg_at_5_ci_low"] is None
    assert json.loads(text)["per_user"]["user_idx"] == [0, 1, 2, 3]
    assert data["by_category"]["cat0"]["n_users"] == 2
    assert data["target"] == "test" and "seconds" not in data  # no wall time: the same inputs, the same bytes
    table = results_table({"f": res})
    assert table[0]["name"] == "f" and table[0]["ndcg_at_5_ci_low"] is None


def test_bad_params_and_models_are_refused(small_fs: FeatureSet) -> None:
    with pytest.raises(RecopsError, match="primary_metric"):
        evaluate_model(_fixed(small_fs), small_fs, EvaluateParams(primary_metric="coverage_at_10"))
    with pytest.raises(RecopsError, match="cut-off"):
        evaluate_model(_fixed(small_fs), small_fs, EvaluateParams(ks=[5], primary_metric="ndcg_at_10"))
    zeros = np.zeros(1, np.int64)
    other = FixedScores(np.zeros(3)).fit(
        Interactions(zeros, zeros, np.ones(1, np.float32), zeros, zeros, 1, 3)
    )
    with pytest.raises(RecopsError, match="items"):
        evaluate_model(other, small_fs, PARAMS)


def test_valid_task_uses_train_history_and_never_sees_the_test_period(small_fs: FeatureSet) -> None:
    task = build_task(small_fs, "temporal", target="valid")
    # only u2 has a validation event (item 2 on Jan 2); its history is its train events only
    assert task.target == "valid" and task.users.tolist() == [1]
    assert [h.tolist() for h in task.histories] == [[1]]
    assert task.relevance.row(0).tolist() == [2]
    assert task.cold.tolist() == [False]
    # popularity for novelty counts train events only: the test items 0, 3 and 10 have none
    assert task.item_popularity[[0, 3, 10]].tolist() == [0.0, 0.0, 0.0] and task.item_popularity[5] == 1.0
    res = evaluate_model(_fixed(small_fs), small_fs, PARAMS, progress=False, target="valid", task=task)
    assert res.target == "valid" and res.n_users == 1
    assert res.per_user["ndcg_at_5"].tolist() == [0.5]  # list [0, 1, 2, ...]: item 2 at rank 3
    with pytest.raises(RecopsError, match="target"):
        evaluate_model(_fixed(small_fs), small_fs, PARAMS, progress=False, task=task)  # a valid task for test
    with pytest.raises(RecopsError, match="unknown evaluation target"):
        build_task(small_fs, target="train")  # type: ignore[arg-type]


def test_valid_targets_under_leave_last_out(factory_fs: FeatureSet) -> None:
    valid, test = build_task(factory_fs, "loo", target="valid"), build_task(factory_fs, "loo")
    assert (valid.relevance.sizes == 1).all() and valid.users.tolist() == test.users.tolist()
    # each history for valid is the test history minus its last item (the validation event itself)
    for r in range(valid.n_users):
        assert test.histories[r][:-1].tolist() == valid.histories[r].tolist()
        assert test.histories[r][-1] == valid.relevance.row(r)[0]


# ------------------------------------------------------------------------------------------ oracle
@pytest.fixture(scope="module")
def factory_fs() -> FeatureSet:
    days = [date(2026, 1, 1) + timedelta(days=d) for d in range(21)]
    ev = pd.concat([make_events(d, n=150, n_users=40, n_items=200, seed=i) for i, d in enumerate(days)])
    return build_features(ev, make_catalog(n_items=200), FeatureParams(test_days=5, valid_days=3))


def _oracle(fs: FeatureSet, protocol: str, sign: float) -> Oracle:
    task = build_task(fs, protocol)  # type: ignore[arg-type]
    targets = {h.tobytes(): task.relevance.row(r) for r, h in enumerate(task.histories)}
    assert len(targets) == task.n_users  # histories are unique in this data
    return Oracle(targets, sign).fit(fs.interactions("train"))


@pytest.mark.parametrize("protocol", ["temporal", "loo"])
def test_oracle_scores_one_and_reverse_oracle_zero(factory_fs: FeatureSet, protocol: str) -> None:
    params = EvaluateParams(ks=[5, 10, 20], bootstrap_samples=100)
    assert len(factory_fs.cold_users(protocol)) == 0  # type: ignore[arg-type]
    best = evaluate_model(_oracle(factory_fs, protocol, 1.0), factory_fs, params, protocol, progress=False)  # type: ignore[arg-type]
    worst = evaluate_model(_oracle(factory_fs, protocol, -1.0), factory_fs, params, protocol, progress=False)  # type: ignore[arg-type]
    for metric in ("ndcg", "recall", "recall_trunc", "hr", "mrr", "map"):
        for k in (5, 10, 20):
            assert worst.metrics[f"{metric}_at_{k}"] == 0.0
            if metric != "recall":
                assert best.metrics[f"{metric}_at_{k}"] == pytest.approx(1.0)
    sizes = build_task(factory_fs, protocol).relevance.sizes  # type: ignore[arg-type]
    for k in (5, 10, 20):  # standard recall of a perfect list: min(k, |rel|) / |rel| per user
        assert best.metrics[f"recall_at_{k}"] == pytest.approx(float(np.mean(np.minimum(sizes, k) / sizes)))
    if protocol == "temporal":
        assert sizes.max() > 5 and best.metrics["recall_at_5"] < 1.0  # the two recalls differ here
    if protocol == "loo":
        task = build_task(factory_fs, "loo")
        assert (task.relevance.sizes == 1).all() and task.n_users == 40


def test_models_share_users_and_pair_up(factory_fs: FeatureSet) -> None:
    params = EvaluateParams(ks=[10], bootstrap_samples=300)
    from models.popularity import PopularityRecommender

    models: dict[str, Recommender] = {
        "oracle": _oracle(factory_fs, "temporal", 1.0),
        "popularity": PopularityRecommender().fit(factory_fs.interactions("train")),
    }
    results = evaluate_models(models, factory_fs, params, progress=False)
    assert list(results) == ["oracle", "popularity"]
    assert np.array_equal(results["oracle"].user_idx, results["popularity"].user_idx)
    diff, low, high = paired_difference(results["oracle"], results["popularity"], samples=300)
    assert diff == pytest.approx(results["oracle"].primary - results["popularity"].primary)
    assert 0 < low <= diff <= high
    assert 0 < results["popularity"].metrics["coverage_at_10"] <= 10 / 200 + 1e-9
    shuffled = replace(results["popularity"], user_idx=results["popularity"].user_idx[::-1])
    with pytest.raises(RecopsError, match="same users"):
        paired_difference(results["oracle"], shuffled)


def test_batches_do_not_change_results(factory_fs: FeatureSet) -> None:
    params = EvaluateParams(ks=[10], bootstrap_samples=50)
    from models.popularity import PopularityRecommender

    model = PopularityRecommender().fit(factory_fs.interactions("train"))
    a = evaluate_model(model, factory_fs, params, batch_size=3, progress=False)
    b = evaluate_model(model, factory_fs, params, progress=False)
    assert np.array_equal(a.top_k, b.top_k) and a.metrics == b.metrics


# ------------------------------------------------------------------------------------------ loo protocol
def test_features_protocol_loo_drives_evaluation_and_the_promotion_gate() -> None:
    """With ``features.protocol: loo`` every default (fits, tasks, gate) follows leave-one-out."""
    from models import create_model
    from pipelines.gate_scoring import fit_baseline, gate_evaluate_params, score_model
    from pipelines.params import Params
    from pipelines.train import training_cutoff
    from registry.gate import GateContext, gate_checks, precondition_checks

    days = [date(2026, 1, 1) + timedelta(days=d) for d in range(12)]
    ev = pd.concat([make_events(d, n=200, n_users=60, n_items=120, seed=i) for i, d in enumerate(days)])
    params = Params(features=FeatureParams(protocol="loo"))
    fs = build_features(ev, make_catalog(n_items=120), params.features)
    task = build_task(fs)
    assert task.protocol == "loo" and (task.relevance.sizes == 1).all() and not task.cold.any()
    assert task.n_users == fs.split_info.counts["loo"]["test_users"] == len(fs.test_users())
    # the target is the item of each user's last interaction
    last = fs.events.groupby("user_idx")["item_idx"].last()
    assert [task.relevance.row(r)[0] for r in range(task.n_users)] == last.loc[task.users.tolist()].tolist()

    evaluate = gate_evaluate_params(params)
    popular = create_model("popularity", {}).fit(fs.interactions("train_valid"))
    results = evaluate_models({"popularity": popular}, fs, evaluate, progress=False)
    metrics = results["popularity"].metrics
    assert results["popularity"].protocol == "loo" and metrics["n_users_cold"] == 0
    assert metrics["ndcg_at_10_ci_low"] <= metrics["ndcg_at_10"] <= metrics["ndcg_at_10_ci_high"]
    assert "ndcg_at_10_cold" not in metrics

    baseline = score_model(
        fit_baseline(fs, params), fs, task, role="baseline", label="baseline", version=None, evaluate=evaluate
    )
    challenger = score_model(
        popular, fs, task, role="challenger", label="popularity", version=1, evaluate=evaluate
    )
    assert math.isnan(challenger.cold) and len(challenger.per_user) == task.n_users
    context = GateContext(
        n_test_users=task.n_users,
        test_start=training_cutoff(fs, "train_valid"),  # what promote reads from the same feature set
        challenger_cutoff=training_cutoff(fs, "train_valid"),
    )
    pre = {c.name: c for c in precondition_checks(params.promote, context)}
    assert pre["training_cutoff"].passed and pre["enough_test_users"].passed
    checks = {c.name: c for c in gate_checks(challenger, baseline, params.promote, (0.0, -0.1, 0.1))}
    assert checks["cold_user_guardrail"].passed and "no cold users" in checks["cold_user_guardrail"].detail


def test_train_evaluate_register_and_promote_follow_features_protocol_loo(recops_settings: Any) -> None:
    """The stages end to end on a loo feature set: fits, evaluate's users and the gate's test users."""
    from pipelines.features import write_features
    from pipelines.params import Params
    from pipelines.promote import promote
    from pipelines.register_step import run_register
    from pipelines.stages import run_evaluate
    from pipelines.steps import StepContext
    from pipelines.train import run_train
    from tests.registry_helpers import FEATURE_PARAMS, clustered_events

    features = FEATURE_PARAMS.model_copy(update={"protocol": "loo"})
    fs = build_features(clustered_events(n_items=40), make_catalog(40), features)
    write_features(fs, recops_settings.artifacts_dir / "features")
    families = ["popularity", "itemknn"]
    params = Params.model_validate(
        {
            "features": features.model_dump(),
            "train": {"families": families, "itemknn": {"neighbours": 20}},
            "evaluate": {"ks": [5, 10], "bootstrap_samples": 200},
        }
    )
    ctx = StepContext(recops_settings, params)
    for family in families:
        run_train(ctx, family)
    result = run_evaluate(ctx)
    loo = fs.split_info.counts["loo"]
    assert (
        result.info["n_test_users"] == loo["test_users"]
        and result.info["n_valid_users"] == loo["valid_users"]
    )
    metrics = json.loads((recops_settings.artifacts_dir / "metrics" / "metrics.json").read_text())
    for family in families:
        assert metrics[family]["n_users_cold"] == 0 and "ndcg_at_10_cold" not in metrics[family]
        assert metrics[family]["ndcg_at_10_ci_low"] <= metrics[family]["ndcg_at_10"]
    run_register(ctx)
    decision = promote(settings=recops_settings, params=params, actor="ci")
    checks = {c["name"]: c for c in decision.to_dict()["checks"]}
    assert checks["enough_test_users"]["passed"] and checks["training_cutoff"]["passed"], checks
    assert f"scored {loo['test_users']} test user(s)" in checks["enough_test_users"]["detail"]
    assert "no cold users" in checks["cold_user_guardrail"]["detail"]
