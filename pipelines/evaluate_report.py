"""The evaluate stage's pure core: select on validation, report on test, and the DVC payloads.

Honest model selection (``docs/architecture.md``):

* each family's **selection** model (fitted on the train split only) is scored on the **valid** split
  (histories = train events, relevant = validation events); its metrics are named ``valid_<metric>`` and
  are the only numbers that choose a family (:func:`select_family`, and ``registry.register.pick_best``);
* each family's **package** (refitted on train + valid) is scored once on the **test** split (histories =
  train + valid events); those metrics keep their plain names and are the report.

Everything here is a pure function of the feature set, the models and the params: no files, no MLflow, no
clock, no run ids. The payloads (``metrics.json``, ``details.json``, the plot data) are therefore the same
bytes for the same inputs, which is what lets ``dvc repro --force`` leave ``dvc.lock`` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import RecopsError
from models.base import Recommender
from pipelines.evaluate import EvaluationResult, evaluate_models
from pipelines.features import FeatureSet
from pipelines.metrics import paired_bootstrap_diff, parse_metric_name
from pipelines.params import EvaluateParams

#: Prefix of the metrics measured on the validation split (model selection).
VALID_PREFIX = "valid_"


def valid_metric(name: str) -> str:
    """The name of ``name`` measured on the validation split, e.g. ``valid_ndcg_at_10``."""
    return f"{VALID_PREFIX}{name}"


@dataclass(frozen=True)
class StageEvaluation:
    """Every family scored twice: its selection model on valid, its package on test.

    Attributes:
        selection: family -> result of the train-fitted model on the validation users.
        report: family -> result of the train+valid refit on the test users.
        primary_metric: the metric that selects (``evaluate.primary_metric``).
    """

    selection: dict[str, EvaluationResult]
    report: dict[str, EvaluationResult]
    primary_metric: str

    @property
    def families(self) -> list[str]:
        return list(self.report)

    @property
    def n_test_users(self) -> int:
        """Users scored on the test split (the same for every family)."""
        return next(iter(self.report.values())).n_users

    @property
    def n_valid_users(self) -> int:
        """Users scored on the validation split (the same for every family)."""
        return next(iter(self.selection.values())).n_users

    def metrics(self) -> dict[str, dict[str, float]]:
        """family -> its test metrics plus its ``valid_`` metrics (finite values only)."""
        return {
            family: {
                **scalar_metrics(self.report[family]),
                **scalar_metrics(self.selection[family], VALID_PREFIX),
            }
            for family in self.families
        }

    def selected(self) -> str:
        """The family with the best validation primary metric (:func:`select_family`)."""
        return select_family(self.metrics(), self.primary_metric)


def evaluate_stage(
    fs: FeatureSet,
    selection_models: Mapping[str, Recommender],
    report_models: Mapping[str, Recommender],
    params: EvaluateParams,
    *,
    seed: int = 0,
    progress: bool | None = None,
) -> StageEvaluation:
    """Score the selection models on valid and the refitted models on test (all families on the same users).

    Args:
        fs: the feature set.
        selection_models: family -> model fitted on the train split only.
        report_models: family -> model refitted on train + valid (the package that is registered and served).
        params: the ``evaluate`` section.
        seed: bootstrap seed (fixed, so the intervals are reproducible).
        progress: show progress bars (None: only on a terminal).

    Raises:
        RecopsError: when the two sets of families differ or there is no validation user to select on.
    """
    if list(selection_models) != list(report_models):
        raise RecopsError(
            f"selection models {list(selection_models)} and packages {list(report_models)} differ: "
            "each family needs both (re-run its train stage)"
        )
    if not report_models:
        raise RecopsError("no model to evaluate: params.yaml train.families is empty")
    try:
        selection = evaluate_models(
            selection_models, fs, params, seed=seed, progress=progress, target="valid"
        )
    except RecopsError as exc:
        raise RecopsError(
            f"model selection needs validation users and found none ({exc}); raise features.valid_days"
        ) from exc
    report = evaluate_models(report_models, fs, params, seed=seed, progress=progress, target="test")
    return StageEvaluation(selection=selection, report=report, primary_metric=params.primary_metric)


def scalar_metrics(result: EvaluationResult, prefix: str = "") -> dict[str, float]:
    """The finite scalar metrics of ``result`` (what MLflow and ``dvc metrics`` show), names prefixed."""
    return {f"{prefix}{k}": float(v) for k, v in sorted(result.metrics.items()) if math.isfinite(v)}


def select_family(metrics: Mapping[str, Mapping[str, float]], primary_metric: str) -> str:
    """The family with the highest ``valid_<primary_metric>`` (ties: the first in ``metrics`` order).

    Test metrics are never read here.

    Raises:
        RecopsError: when no family has a finite validation value.
    """
    key = valid_metric(primary_metric)
    scored = [(family, m[key]) for family, m in metrics.items() if math.isfinite(m.get(key, math.nan))]
    if not scored:
        raise RecopsError(f"no family has a validation {primary_metric!r} ({key}) to select on")
    best = max(value for _, value in scored)
    return next(family for family, value in scored if value == best)


# ---------------------------------------------------------------------------------------------- payloads


def metrics_payload(evaluation: StageEvaluation) -> dict[str, dict[str, float]]:
    """``metrics.json``: family -> test metrics and ``valid_`` metrics."""
    return evaluation.metrics()


def details_payload(evaluation: StageEvaluation) -> dict[str, dict[str, Any]]:
    """``details.json``: family -> ``{"selection": <valid result>, "report": <test result>}`` (with the
    per-category slices; no wall times)."""
    return {
        family: {
            "selection": evaluation.selection[family].to_dict(),
            "report": evaluation.report[family].to_dict(),
        }
        for family in evaluation.families
    }


def plot_payloads(evaluation: StageEvaluation, ks: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """The DVC plot data by file name.

    * ``ndcg_at_k.json``: one row per (family, k) with test ``ndcg``, ``recall`` and ``recall_trunc``;
    * ``comparison.json``: one row per family with the validation and test primary metric, coverage and
      popularity bias at the primary cut-off, and whether the family is the one selected.
    """
    metrics = evaluation.metrics()
    primary = evaluation.primary_metric
    _, cut = parse_metric_name(primary)
    chosen = evaluation.selected()
    curve = [
        {
            "family": family,
            "k": k,
            "ndcg": metrics[family].get(f"ndcg_at_{k}", 0.0),
            "recall": metrics[family].get(f"recall_at_{k}", 0.0),
            "recall_trunc": metrics[family].get(f"recall_trunc_at_{k}", 0.0),
        }
        for family in evaluation.families
        for k in sorted(ks)
    ]
    comparison = [
        {
            "family": family,
            primary: metrics[family].get(primary, 0.0),
            valid_metric(primary): metrics[family].get(valid_metric(primary), 0.0),
            f"coverage_at_{cut}": metrics[family].get(f"coverage_at_{cut}", 0.0),
            f"popularity_bias_at_{cut}": metrics[family].get(f"popularity_bias_at_{cut}", 0.0),
            "selected": family == chosen,
        }
        for family in evaluation.families
    ]
    return {"ndcg_at_k.json": curve, "comparison.json": comparison}


# ---------------------------------------------------------------------------------------------- comparisons


def paired_difference(
    challenger: EvaluationResult,
    champion: EvaluationResult,
    metric: str | None = None,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(mean_diff, low, high)`` of challenger minus champion on a per-user metric (default: primary).

    Raises:
        RecopsError: when the two results were not computed on the same users.
    """
    key = metric or challenger.primary_metric
    if challenger.target != champion.target or not np.array_equal(challenger.user_idx, champion.user_idx):
        raise RecopsError("paired comparison needs both models evaluated on the same users (same task)")
    if key not in challenger.per_user or key not in champion.per_user:
        raise RecopsError(f"no per-user values of {key!r}: use one of {sorted(challenger.per_user)}")
    return paired_bootstrap_diff(challenger.per_user[key], champion.per_user[key], samples, confidence, seed)


def results_table(
    results: Mapping[str, EvaluationResult], names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One JSON-ready row of metrics per model (``name`` first; NaN becomes None)."""
    rows = []
    for key in names or list(results):
        res = results[key]
        metrics = {k: (float(v) if math.isfinite(v) else None) for k, v in res.metrics.items()}
        rows.append({"name": key, **metrics})
    return rows
