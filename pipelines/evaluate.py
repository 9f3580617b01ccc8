"""Offline evaluation: rank the full catalogue for every target user and score the lists.

Protocols (see :mod:`pipelines.features.split`):

* ``temporal`` (gated on): users with an event in the target period. History = their events before it
  (chronological item indices); relevant = the distinct items of their target-period events. Users without
  history are *cold*: models answer them through their cold-start fallback.
* ``loo`` (leave-last-out, for comparison with papers): users with at least three interactions (runs of
  consecutive events on one item, :func:`pipelines.features.split.interaction_runs`). History = every
  event before the held-out interaction; relevant = its one item (a view -> cart -> purchase funnel on that
  item is one target). No user is cold.

The protocol defaults to the one the feature set was built for (``features.protocol``), so the evaluate
stage, the train stage's fits and the promotion gate all follow params.yaml.

Targets: ``test`` (the report and the promotion gate: history = train + valid, the models refitted on
train + valid) and ``valid`` (model selection: history = train only, relevant = validation events, the
models fitted on train only; test events play no part). Selection never reads the test split.

Every model ranks the whole catalogue (no sampled negatives) through ``Recommender.recommend`` with
``k = max(ks)``. With ``exclude_seen`` the user's history items are excluded from the list *and* from the
relevant set (they could not be recommended); users left without relevant items are not evaluated.
All models of one :func:`evaluate_models` call are scored on the same users in the same order, so their
per-user values pair up for :func:`pipelines.evaluate_report.paired_difference`.

Metric names: ``<m>_at_<k>`` for ``m`` in ``ndcg, recall, recall_trunc, hr, mrr, map`` (per-user means;
see :mod:`pipelines.metrics` for the two recalls) and ``coverage, diversity, novelty, popularity_bias``
(list level) for each ``k``; ``<primary>_ci_low`` / ``<primary>_ci_high`` (bootstrap);
``<m>_at_<kp>_cold`` / ``_warm`` for the per-user metrics at the primary metric's cut-off ``kp`` (left out
when the slice is empty), ``n_users``, ``n_users_cold``, ``n_users_warm``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from core.errors import RecopsError
from models.base import Recommender
from pipelines.features import TEST, VALID, FeatureSet, Protocol
from pipelines.features.featureset import SPLIT_COLUMNS
from pipelines.metrics import (
    RANKING_METRICS,
    BoolArray,
    FloatArray,
    IntArray,
    Relevance,
    bootstrap_ci,
    exact_mean,
    list_metrics,
    mean_metrics,
    metric_name,
    parse_metric_name,
    per_user_metrics,
)
from pipelines.params import EvaluateParams

#: Score-matrix entries one ``recommend`` call may hold (users per batch = this / n_items, capped).
SCORE_BUDGET = 1 << 24
MAX_BATCH_USERS = 2048
UNKNOWN_CATEGORY = "(unknown)"

#: Which split holds the relevant items: ``valid`` for model selection, ``test`` for the report.
Target = Literal["valid", "test"]
TARGET_CODES: dict[str, int] = {"valid": VALID, "test": TEST}


@dataclass(frozen=True)
class EvaluationTask:
    """What every model is asked: the users, their histories and their relevant items.

    Attributes:
        protocol: ``temporal`` or ``loo``.
        target: ``test`` or ``valid`` (which split's events are relevant; history is every earlier split).
        users: evaluated user indices, ascending.
        histories: per evaluated user, their chronological history item indices.
        relevance: per evaluated user (same order), the relevant item indices.
        cold: per evaluated user, True when the history is empty.
        exclude_seen: whether history items are excluded from lists and relevant sets.
        item_popularity: events per item in the history split (for novelty and popularity bias).
        item_category: category code per item (-1 unknown), for diversity and the category slices.
        category_names: category code -> name.
        n_items: catalogue size.
    """

    protocol: Protocol
    target: Target
    users: IntArray
    histories: list[IntArray]
    relevance: Relevance
    cold: BoolArray
    exclude_seen: bool
    item_popularity: FloatArray
    item_category: NDArray[np.int32]
    category_names: list[str]
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.users)


def build_task(
    fs: FeatureSet, protocol: Protocol | None = None, exclude_seen: bool = False, target: Target = "test"
) -> EvaluationTask:
    """The evaluation task of ``fs`` under ``protocol`` (default: the one ``fs`` was built for, i.e.
    ``features.protocol``) for ``target`` (see the module docstring).

    Events after the target split are ignored: a ``valid`` task knows nothing of the test period.

    Raises:
        RecopsError: when no user is left to evaluate, or ``fs`` has no split for ``protocol``.
    """
    ev = fs.events
    protocol = fs.resolve_protocol(protocol)
    if target not in TARGET_CODES:
        raise RecopsError(f"unknown evaluation target {target!r}: use one of {sorted(TARGET_CODES)}")
    labels = ev[SPLIT_COLUMNS[protocol]].to_numpy()
    user = ev["user_idx"].to_numpy(dtype=np.int64)
    item = ev["item_idx"].to_numpy(dtype=np.int64)
    is_target = labels == TARGET_CODES[target]
    users = np.unique(user[is_target])

    past = labels < TARGET_CODES[target]
    past_user, past_item = user[past], item[past]
    in_task = np.isin(past_user, users)
    past_user, past_item = past_user[in_task], past_item[in_task]
    order = np.argsort(past_user, kind="stable")  # events are in time order: keeps each history chronological
    past_row = np.searchsorted(users, past_user[order])
    past_item = past_item[order]
    bounds = np.searchsorted(past_row, np.arange(len(users) + 1))

    target_row = np.searchsorted(users, user[is_target])
    target_item = item[is_target]
    if exclude_seen:
        seen = np.unique(past_row * fs.n_items + past_item)
        fresh = ~np.isin(target_row * fs.n_items + target_item, seen)
        target_row, target_item = target_row[fresh], target_item[fresh]
    relevance = Relevance.from_pairs(target_row, target_item, len(users))
    keep = np.flatnonzero(relevance.sizes > 0)
    if not len(keep):
        raise RecopsError(
            f"no user to evaluate under the {protocol} protocol (no {target} event left"
            + (" after removing seen items)" if exclude_seen else ")")
        )
    histories = [past_item[bounds[r] : bounds[r + 1]] for r in keep]
    popularity = np.bincount(item[past], minlength=fs.n_items).astype(np.float64)
    return EvaluationTask(
        protocol=protocol,
        target=target,
        users=users[keep],
        histories=histories,
        relevance=relevance.take(keep),
        cold=np.diff(bounds)[keep] == 0,
        exclude_seen=exclude_seen,
        item_popularity=popularity,
        item_category=fs.item_categories,
        category_names=fs.category_names,
        n_items=fs.n_items,
    )


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one model on one :class:`EvaluationTask`.

    Attributes:
        name: the model's name (its family unless given).
        protocol: ``temporal`` or ``loo``.
        target: ``test`` or ``valid``.
        ks: the cut-offs.
        primary_metric: e.g. ``ndcg_at_10``.
        n_users: evaluated users.
        metrics: every scalar metric by its stable name (see the module docstring).
        by_category: category name -> ``{"n_users": ..., <primary_metric>: ...}`` where each user counts
            in every category of their relevant items and is scored against that category's items only.
        user_idx: evaluated user indices (ascending; identical across models of one task).
        cold: per evaluated user, True for users without history.
        per_user: per-user values of every ranking metric at every ``k``, aligned with ``user_idx``.
        top_k: the recommended item indices, ``(n_users, max(ks))``, -1 padded.
        seconds: wall time of the ranking and scoring (never written into DVC outputs: not reproducible).
    """

    name: str
    protocol: str
    target: str
    ks: tuple[int, ...]
    primary_metric: str
    n_users: int
    metrics: dict[str, float]
    by_category: dict[str, dict[str, float | int]]
    user_idx: IntArray
    cold: BoolArray
    per_user: dict[str, FloatArray]
    top_k: IntArray
    seconds: float

    @property
    def primary(self) -> float:
        """The primary metric's mean."""
        return self.metrics[self.primary_metric]

    @property
    def primary_values(self) -> FloatArray:
        """Per-user values of the primary metric (for paired bootstraps against another model)."""
        return self.per_user[self.primary_metric]

    def to_dict(self, include_per_user: bool = False) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None); per-user arrays only when asked.

        A pure function of the rankings: the wall time (:attr:`seconds`) is left out, so the same inputs give
        the same bytes.
        """
        out: dict[str, Any] = {
            "name": self.name,
            "protocol": self.protocol,
            "target": self.target,
            "ks": list(self.ks),
            "primary_metric": self.primary_metric,
            "n_users": self.n_users,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "by_category": {
                c: {k: _json_number(v) for k, v in m.items()} for c, m in self.by_category.items()
            },
        }
        if include_per_user:
            out["per_user"] = {
                "user_idx": self.user_idx.tolist(),
                "cold": self.cold.tolist(),
                **{k: v.tolist() for k, v in self.per_user.items()},
            }
        return out


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _json_number(value: float | int) -> float | int | None:
    return value if isinstance(value, int) else _json_float(value)


def _check_params(params: EvaluateParams) -> tuple[tuple[int, ...], int]:
    ks = tuple(sorted(set(params.ks)))
    if not ks or ks[0] < 1:
        raise RecopsError(f"evaluate.ks must be positive cut-offs, got {params.ks}")
    try:
        metric, k = parse_metric_name(params.primary_metric)
    except ValueError as exc:
        raise RecopsError(f"evaluate.primary_metric: {exc}") from exc
    if metric not in RANKING_METRICS or k not in ks:
        raise RecopsError(
            f"evaluate.primary_metric {params.primary_metric!r} must be one of {list(RANKING_METRICS)} "
            f"at a cut-off in evaluate.ks {list(ks)}"
        )
    return ks, k


def batch_users(n_items: int) -> int:
    """Users per ``recommend`` call so that one score matrix stays near :data:`SCORE_BUDGET` entries."""
    return int(min(MAX_BATCH_USERS, max(16, SCORE_BUDGET // max(n_items, 1))))


def rank_task(
    model: Recommender,
    task: EvaluationTask,
    k: int,
    item_mask: NDArray[np.bool_] | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> IntArray:
    """Top-``k`` item indices for every user of ``task`` (``(n_users, k)``, -1 padded), in batches."""
    from tqdm import tqdm

    if model.n_items != task.n_items:
        raise RecopsError(f"model knows {model.n_items} items but the feature set has {task.n_items}")
    size = batch_size or batch_users(task.n_items)
    out = np.full((task.n_users, k), -1, dtype=np.int64)
    disable = None if progress is None else not progress  # None: tqdm shows it only on a terminal
    bar = tqdm(
        total=task.n_users, desc=f"rank {getattr(model, 'family', 'model')}", unit="user", disable=disable
    )
    for lo in range(0, task.n_users, size):
        hist = task.histories[lo : lo + size]
        ids, _ = model.recommend(hist, k, exclude=hist if task.exclude_seen else None, item_mask=item_mask)
        out[lo : lo + len(hist)] = ids
        bar.update(len(hist))
    bar.close()
    return out


def _category_slices(
    top: IntArray, task: EvaluationTask, metric: str, k: int
) -> dict[str, dict[str, float | int]]:
    rel = task.relevance
    rows = np.repeat(np.arange(task.n_users, dtype=np.int64), rel.sizes)
    cats = task.item_category[rel.items].astype(np.int64)
    n_cats = int(cats.max()) + 2 if len(cats) else 1
    pair = rows * n_cats + (cats + 1)  # (user, category) slice id; category -1 -> 0
    slice_ids, slice_of_entry = np.unique(pair, return_inverse=True)
    sliced = Relevance.from_pairs(slice_of_entry, rel.items, len(slice_ids))
    values = per_user_metrics(top[slice_ids // n_cats], sliced, (k,))[metric_name(metric, k)]
    slice_cat = slice_ids % n_cats - 1
    out: dict[str, dict[str, float | int]] = {}
    for code in np.unique(slice_cat):
        name = task.category_names[code] if code >= 0 else UNKNOWN_CATEGORY
        mask = slice_cat == code
        out[name] = {"n_users": int(mask.sum()), metric_name(metric, k): exact_mean(values[mask])}
    return dict(sorted(out.items()))


def score_rankings(
    top: IntArray, task: EvaluationTask, params: EvaluateParams, name: str, seed: int = 0
) -> EvaluationResult:
    """All metrics of ``top`` (rankings of the users of ``task``, in order) as an EvaluationResult."""
    ks, primary_k = _check_params(params)
    primary = params.primary_metric
    per_user = per_user_metrics(top, task.relevance, ks)
    metrics = mean_metrics(per_user)
    metrics.update(list_metrics(top, ks, task.n_items, task.item_category, task.item_popularity))
    low, high = bootstrap_ci(per_user[primary], params.bootstrap_samples, params.confidence, seed)
    metrics[f"{primary}_ci_low"], metrics[f"{primary}_ci_high"] = low, high
    metrics["n_users"] = float(task.n_users)
    for label, mask in (("cold", task.cold), ("warm", ~task.cold)):
        metrics[f"n_users_{label}"] = float(mask.sum())
        if mask.any():
            for metric in RANKING_METRICS:
                key = metric_name(metric, primary_k)
                metrics[f"{key}_{label}"] = exact_mean(per_user[key][mask])
    primary_family, _ = parse_metric_name(primary)
    return EvaluationResult(
        name=name,
        protocol=task.protocol,
        target=task.target,
        ks=ks,
        primary_metric=primary,
        n_users=task.n_users,
        metrics=metrics,
        by_category=_category_slices(top, task, primary_family, primary_k),
        user_idx=task.users,
        cold=task.cold,
        per_user=per_user,
        top_k=top,
        seconds=0.0,
    )


def evaluate_model(
    model: Recommender,
    fs: FeatureSet,
    params: EvaluateParams,
    protocol: Protocol | None = None,
    item_mask: NDArray[np.bool_] | None = None,
    *,
    name: str | None = None,
    seed: int = 0,
    task: EvaluationTask | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    target: Target = "test",
) -> EvaluationResult:
    """Evaluate one fitted model on the ``target`` users of ``fs`` (test: the report; valid: selection).

    Args:
        model: a fitted recommender over ``fs``'s item index.
        fs: the feature set.
        params: the ``evaluate`` section (ks, primary metric, exclude_seen, bootstrap settings).
        protocol: ``temporal`` (gated on) or ``loo``; default: the one ``fs`` was built for.
        item_mask: ``(n_items,)`` booleans; False items are never recommended (e.g. out of stock).
        name: label of the result (default: the model's family).
        seed: bootstrap seed.
        task: a prepared task (to share between models); built from ``fs`` when None.
        batch_size: users per ``recommend`` call (default: :func:`batch_users`).
        progress: show a progress bar (None: only on a terminal).
        target: ``test`` or ``valid`` (must match ``task`` when one is given).
    """
    _check_params(params)
    protocol = fs.resolve_protocol(protocol)
    task = task or build_task(fs, protocol, params.exclude_seen, target)
    if task.exclude_seen != params.exclude_seen or task.protocol != protocol or task.target != target:
        raise RecopsError(
            "the evaluation task was built for another protocol, target or exclude_seen setting"
        )
    started = time.perf_counter()
    top = rank_task(model, task, max(params.ks), item_mask, batch_size, progress)
    label = name or str(getattr(model, "family", type(model).__name__))
    result = score_rankings(top, task, params, label, seed)
    return replace(result, seconds=time.perf_counter() - started)


def evaluate_models(
    models: Mapping[str, Recommender],
    fs: FeatureSet,
    params: EvaluateParams,
    protocol: Protocol | None = None,
    item_mask: NDArray[np.bool_] | None = None,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool | None = None,
    target: Target = "test",
) -> dict[str, EvaluationResult]:
    """Evaluate several models on the same ``target`` users (one shared task); keys are the given names."""
    task = build_task(fs, protocol, params.exclude_seen, target)
    return {
        name: evaluate_model(
            model, fs, params, protocol, item_mask, name=name, seed=seed, task=task, batch_size=batch_size,
            progress=progress, target=target,
        )
        for name, model in models.items()
    }  # fmt: skip
