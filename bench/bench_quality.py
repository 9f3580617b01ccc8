"""Recommendation quality of the model families on public data, with the project's own pipeline code.

Loads a dataset (a public one from the shared raw-data folder, or the generator's default shop), builds the
features with the ``params.yaml`` feature settings, fits every family on the fit split (temporal: train +
valid; leave-last-out: everything but each user's held-out last event), ranks the whole catalogue for each
test user through ``pipelines.evaluate`` and prints a markdown table with the ratios against the two
popularity baselines. Everything is seeded, so a rerun gives the same figures (timings aside).

    .venv/bin/python bench/bench_quality.py --dataset generated
    .venv/bin/python bench/bench_quality.py --dataset completejourney --test-days 14
    .venv/bin/python bench/bench_quality.py --dataset beauty --protocol loo
    .venv/bin/python bench/bench_quality.py --dataset movielens100k --protocol loo --exclude-seen
    .venv/bin/python bench/bench_quality.py --dataset completejourney --families als --hp als.alpha=0.1
    .venv/bin/python bench/bench_quality.py --dataset yoochoose --protocol loo --test-days 1 --valid-days 1

The temporal boundaries are computed for every protocol, so short datasets (Yoochoose: 8 days) need small
``--test-days`` / ``--valid-days`` even for ``--protocol loo``. ``--repeat-baseline`` adds a bench-only
reference row (the user's own past items first); see docs/benchmarks.md for the recorded figures.

The shared data folder is ``<repo>/../shared/data/raw`` unless ``RECOPS_SHARED_DATA`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from models import create_model
from models.base import EpochCallback, FloatArray, IntArray, Interactions, Recommender, history_matrix
from pipelines.evaluate import EvaluationResult, EvaluationTask, build_task, evaluate_model
from pipelines.features import FeatureSet, Protocol, build_features
from pipelines.params import ModelFamily, Params, load_params
from pipelines.train import model_hyperparameters

REPO = Path(__file__).resolve().parents[1]

DATASETS = (
    "generated",
    "completejourney",
    "beauty",
    "movielens100k",
    "movielens-small",
    "yoochoose",
    "instacart",
)
FAMILIES: tuple[ModelFamily, ...] = ("popularity", "recent_popularity", "itemknn", "als")
BASELINES = ("popularity", "recent_popularity")


class RepeatHistoryRecommender(Recommender):
    """Bench-only reference, not a project family: items ranked by how often the user had them before.

    Score = the item's count in the history (all of it, no decay) plus a tiny all-time popularity term
    (added by the base class) that orders the rest of the catalogue; users without history get the base
    class's cold fallback. It measures how much of the test period is repeat behaviour.
    """

    family = "repeat_history"

    def _fit(self, data: Interactions, on_epoch: EpochCallback | None) -> None:
        """Nothing beyond the popularity the base class keeps."""

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        return np.asarray(history_matrix(histories, self.n_items).toarray(), dtype=np.float32)

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        """Nothing to restore."""


def load_dataset(name: str, params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(events, catalog)`` of ``name`` in the recops schema."""
    if name == "generated":
        from core.settings import DEV_PSEUDONYMIZATION_KEY
        from pipelines.datasets.generator import GeneratorConfig, generate_dataset
        from pipelines.datastore import read_published

        with tempfile.TemporaryDirectory(prefix="recops-bench-") as tmp:
            generate_dataset(
                GeneratorConfig.from_params(params.generate), Path(tmp), DEV_PSEUDONYMIZATION_KEY
            )
            return read_published(Path(tmp))
    from pipelines.datasets.loaders import get_source

    source = get_source(name)
    return source.load(source.default_path())


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["als.alpha=1", "itemknn.neighbours=50"]`` -> ``{"als": {"alpha": 1}, "itemknn": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        family, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"error: --hp takes family.name=value, got {item!r}")
        out.setdefault(family, {})[name] = json.loads(value)
    return out


def subsample(task: EvaluationTask, max_users: int | None, seed: int) -> EvaluationTask:
    """At most ``max_users`` evaluated users, drawn without replacement (ascending order kept)."""
    if max_users is None or task.n_users <= max_users:
        return task
    rows = np.sort(np.random.default_rng(seed).choice(task.n_users, max_users, replace=False))
    return replace(
        task,
        users=task.users[rows],
        histories=[task.histories[r] for r in rows],
        relevance=task.relevance.take(rows),
        cold=task.cold[rows],
    )


def dataset_stats(fs: FeatureSet, task: EvaluationTask, protocol: Protocol) -> dict[str, Any]:
    """Sizes of the data and of the evaluation task."""
    fit = fs.split_mask("train_valid", protocol)
    rel_sizes = task.relevance.sizes
    return {
        "events": len(fs.events),
        "users": fs.n_users,
        "items": fs.n_items,
        "fit_events": int(fit.sum()),
        "test_events": int(fs.split_mask("test", protocol).sum()),
        "test_users": task.n_users,
        "cold_test_users": int(task.cold.sum()),
        "mean_relevant_items": float(rel_sizes.mean()),
    }


def markdown_table(results: dict[str, EvaluationResult], timings: dict[str, tuple[float, float]]) -> str:
    """The results as a markdown table (ratios against whichever baselines were run)."""
    head = ["family", "NDCG@10", "Recall@10", "HR@10", "MRR@10", "coverage@10", "cold NDCG@10"]
    head += [f"x {b}" for b in BASELINES if b in results] + ["fit s", "eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        m = res.metrics
        cold = m.get("ndcg_at_10_cold")
        row = [
            name,
            f"{m['ndcg_at_10']:.4f} [{m['ndcg_at_10_ci_low']:.4f}, {m['ndcg_at_10_ci_high']:.4f}]",
            f"{m['recall_at_10']:.4f}",
            f"{m['hr_at_10']:.4f}",
            f"{m['mrr_at_10']:.4f}",
            f"{m['coverage_at_10']:.4f}",
            "-" if cold is None else f"{cold:.4f}",
        ]
        for base in BASELINES:
            if base in results:
                ref = results[base].metrics["ndcg_at_10"]
                row.append(f"{m['ndcg_at_10'] / ref:.2f}" if ref > 0 else "-")
        fit_s, eval_s = timings[name]
        row += [f"{fit_s:.1f}", f"{eval_s:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="generated")
    parser.add_argument("--protocol", choices=("temporal", "loo"), default="temporal")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--test-days", type=int, default=None, help="default: params.yaml features")
    parser.add_argument("--valid-days", type=int, default=None, help="default: params.yaml features")
    parser.add_argument("--max-users", type=int, default=None, help="evaluate a seeded sample of test users")
    parser.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=None,
                        help="default: params.yaml evaluate.exclude_seen")  # fmt: skip
    parser.add_argument("--hp", action="append", default=[], metavar="FAMILY.NAME=JSON",
                        help="override one hyper-parameter, e.g. als.alpha=1 (repeatable)")  # fmt: skip
    parser.add_argument("--repeat-baseline", action="store_true",
                        help="add the bench-only repeat_history row (own past items first)")  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap samples for the NDCG CI")
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    args = parser.parse_args(argv)

    params = load_params(REPO / "params.yaml")
    feature_updates = {
        k: v for k, v in (("test_days", args.test_days), ("valid_days", args.valid_days)) if v is not None
    }
    features = params.features.model_copy(update=feature_updates)
    eval_updates: dict[str, Any] = {
        "ks": [10],
        "primary_metric": "ndcg_at_10",
        "bootstrap_samples": args.bootstrap,
    }
    if args.exclude_seen is not None:
        eval_updates["exclude_seen"] = args.exclude_seen
    evaluate = params.evaluate.model_copy(update=eval_updates)
    overrides = parse_overrides(args.hp)
    protocol: Protocol = args.protocol

    t0 = time.perf_counter()
    events, catalog = load_dataset(args.dataset, params)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs = build_features(events, catalog, features)
    features_s = time.perf_counter() - t0
    del events, catalog
    task = subsample(build_task(fs, protocol, evaluate.exclude_seen), args.max_users, params.seed)
    stats = dataset_stats(fs, task, protocol)
    fit_data = fs.interactions("train_valid", protocol)

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    print(f"dataset={args.dataset} protocol={protocol} test_days={features.test_days} "
          f"valid_days={features.valid_days} exclude_seen={evaluate.exclude_seen} "
          f"nproc={os.cpu_count()} cpu={cpu!r} date={time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"load {load_s:.1f} s, features {features_s:.1f} s; " + ", ".join(f"{k}={v:,}" if isinstance(v, int)
          else f"{k}={v:.2f}" for k, v in stats.items()))  # fmt: skip

    results: dict[str, EvaluationResult] = {}
    timings: dict[str, tuple[float, float]] = {}
    families = list(args.families) + (["repeat_history"] if args.repeat_baseline else [])
    for family in families:
        hyper: dict[str, Any] = {}
        t0 = time.perf_counter()
        if family == "repeat_history":
            model: Recommender = RepeatHistoryRecommender().fit(fit_data)
        else:
            hyper = {**model_hyperparameters(family, params), **overrides.get(family, {})}
            model = create_model(family, hyper).fit(fit_data)
        fit_s = time.perf_counter() - t0
        res = evaluate_model(model, fs, evaluate, protocol, task=task, seed=params.seed)
        results[family] = res
        timings[family] = (fit_s, res.seconds)
        if overrides.get(family):
            print(f"{family} hyper-parameters: {hyper}")
    print()
    print(markdown_table(results, timings))
    if args.json is not None:
        payload = {
            "dataset": args.dataset,
            "protocol": protocol,
            "stats": stats,
            "results": {
                k: {"metrics": v.to_dict()["metrics"], "fit_s": timings[k][0]} for k, v in results.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    from core.errors import RecopsError

    try:
        main()
    except RecopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
