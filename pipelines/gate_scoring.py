"""Scoring for the promotion gate: registered packages, measured on the *current* test data.

Logged metrics from older pipeline runs are never trusted: challenger, champion and a freshly fitted
``recent_popularity`` baseline are all scored here, on the same users, exactly like the evaluate stage. A
package trained on an older catalogue is evaluated through item ids: items it does not know are dropped
from its histories and cannot be recommended by it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from core.errors import RecopsError
from models.base import FloatArray, IntArray, Recommender
from pipelines.params import EvaluateParams, Params
from registry.gate import ModelScores, Role

if TYPE_CHECKING:
    from models.package import ModelPackage
    from pipelines.evaluate import EvaluationTask
    from pipelines.features import FeatureSet

LATENCY_CALLS = 7


class PackageInFeatureSpace(Recommender):
    """A model package seen through the current feature set's item index (for evaluation only).

    Histories, exclusions and masks arrive as current item indices; they are translated to the package's
    own index through item ids (unknown items dropped), the package's model ranks, and the result comes
    back as current indices (items the current catalogue lacks become -1 padding, i.e. misses). This is
    what the scorer does with raw item ids, so the gate measures what would serve.
    """

    family = "package"

    def __init__(self, package: ModelPackage, item_ids: Sequence[str]) -> None:
        super().__init__()
        self.package = package
        self.n_items = len(item_ids)
        self.to_package: IntArray = np.array(
            [package.item_index.get(str(i), -1) for i in item_ids], dtype=np.int64
        )
        self.known = self.to_package >= 0
        self.from_package: IntArray = np.full(package.model.n_items, -1, dtype=np.int64)
        self.from_package[self.to_package[self.known]] = np.flatnonzero(self.known)
        self.item_popularity = np.zeros(self.n_items, dtype=np.float32)
        self.item_popularity[self.known] = package.model.item_popularity[self.to_package[self.known]]

    def _translate(self, items: IntArray) -> IntArray:
        mapped = self.to_package[np.asarray(items, dtype=np.int64)]
        return mapped[mapped >= 0]

    def recommend(
        self,
        histories: Sequence[IntArray],
        k: int,
        exclude: Sequence[IntArray] | None = None,
        item_mask: NDArray[np.bool_] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        inner_mask = None
        if item_mask is not None:
            inner_mask = np.ones(self.package.model.n_items, dtype=bool)
            inner_mask[self.to_package[self.known]] = item_mask[self.known]
        ids, scores = self.package.model.recommend(
            [self._translate(h) for h in histories],
            k,
            exclude=None if exclude is None else [self._translate(e) for e in exclude],
            item_mask=inner_mask,
        )
        mapped = np.where(ids >= 0, self.from_package[np.maximum(ids, 0)], -1)
        return mapped.astype(np.int64), scores

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        inner = self.package.model.score([self._translate(h) for h in histories])
        out = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.known] = inner[:, self.to_package[self.known]]
        return out

    def _fit(self, train: Any, valid: Any, ctx: Any, on_epoch: Any) -> None:
        raise RecopsError("a registered package is not re-trained by the promotion gate")

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        raise RecopsError("not loadable")


def metric_cutoff(primary_metric: str) -> tuple[str, int]:
    """``ndcg_at_10`` -> ``("ndcg", 10)`` (clear error for other shapes)."""
    from pipelines.metrics import RANKING_METRICS, parse_metric_name

    try:
        metric, k = parse_metric_name(primary_metric)
    except ValueError as exc:
        raise RecopsError(f"promote.primary_metric: {exc}") from exc
    if metric not in RANKING_METRICS:
        raise RecopsError(
            f"promote.primary_metric {primary_metric!r}: use one of {RANKING_METRICS} at some k"
        )
    return metric, k


def gate_evaluate_params(params: Params) -> EvaluateParams:
    """The ``evaluate`` settings with the gate's primary metric (and its cut-off) as primary."""
    _, k = metric_cutoff(params.promote.primary_metric)
    return params.evaluate.model_copy(
        update={"primary_metric": params.promote.primary_metric, "ks": sorted({*params.evaluate.ks, k})}
    )


def score_model(
    model: Recommender,
    fs: FeatureSet,
    task: EvaluationTask,
    *,
    role: Role,
    label: str,
    version: int | None,
    evaluate: EvaluateParams,
    seed: int = 0,
) -> ModelScores:
    """Evaluate ``model`` on the shared task exactly like the evaluate stage, and keep the gate's numbers."""
    from pipelines.evaluate import evaluate_model

    result = evaluate_model(model, fs, evaluate, name=label, seed=seed, task=task, progress=False)
    _, k = metric_cutoff(evaluate.primary_metric)
    primary = evaluate.primary_metric
    return ModelScores(
        role=role,
        label=label,
        version=version,
        primary=result.primary,
        coverage=float(result.metrics[f"coverage_at_{k}"]),
        cold=float(result.metrics.get(f"{primary}_cold", math.nan)),
        warm=float(result.metrics.get(f"{primary}_warm", math.nan)),
        per_user=np.asarray(result.primary_values, dtype=np.float64),
        metrics=dict(result.metrics),
    )


def smoke_latency_ms(
    package: ModelPackage, task: EvaluationTask, item_ids: Sequence[str], calls: int = LATENCY_CALLS
) -> float:
    """p50 wall time of single-user ``recommend_ids`` calls on real test histories (after one warm-up)."""
    picks = np.linspace(0, task.n_users - 1, num=min(calls, task.n_users)).astype(np.int64)
    histories = [[str(item_ids[int(j)]) for j in task.histories[i][-50:]] for i in picks]
    package.recommend_ids([histories[0]], k=10)
    times = []
    for history in (histories * calls)[:calls]:
        started = time.perf_counter()
        package.recommend_ids([history], k=10)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(statistics.median(times))


def fit_baseline(fs: FeatureSet, params: Params) -> Recommender:
    """The recent-popularity baseline fitted on the current train + valid events."""
    from models import create_model

    hyper = params.train.family_params("recent_popularity")
    return create_model("recent_popularity", hyper).fit(fs.interactions("train_valid"))
