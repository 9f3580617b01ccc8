"""Recommendation quality of the model families on public data, with the project's own pipeline code.

Loads a dataset (a public one from the shared raw-data folder, or the generator's default shop), builds the
features with the ``params.yaml`` feature settings, and for every family:

1. **selects on validation**: fits each candidate hyper-parameter setting on the **train** split (the
   validation split is passed for early stopping) and scores it on the **valid** split (histories = train
   events). Without ``--tune`` there is one candidate, the ``params.yaml`` (+ ``--hp``) setting;
2. **reports on test once**: the chosen setting, refitted on ``--fit-on`` (default ``train_valid``: the
   pipeline's refit; ``train``: the published leave-one-out protocol, where the train-fitted model is
   reported as is and the held-out validation item only joins the test user's history), ranks the whole
   catalogue for each test user through ``pipelines.evaluate``.

It prints a markdown table (validation NDCG@10 next to the test metrics, ratios against the two popularity
baselines) and the family the validation split selects. Everything is seeded, so a rerun gives the same
figures (timings aside). The test split never chooses anything.

    .venv/bin/python bench/bench_quality.py --dataset generated
    .venv/bin/python bench/bench_quality.py --dataset completejourney --test-days 14
    .venv/bin/python bench/bench_quality.py --dataset beauty --protocol loo --fit-on train --exclude-seen
    .venv/bin/python bench/bench_quality.py --dataset completejourney --families als \
        --tune 'als.alpha=[0.03,0.1,1]' --tune 'als.regularization=[10,30]'
    .venv/bin/python bench/bench_quality.py --dataset yoochoose --protocol loo --test-days 1 --valid-days 1

The temporal boundaries are computed for every protocol, so short datasets (Yoochoose: 8 days) need small
``--test-days`` / ``--valid-days`` even for ``--protocol loo``. ``--repeat-baseline`` adds a bench-only
reference row (the user's own past items first); see docs/benchmarks.md for the recorded figures.

The shared data folder is ``<repo>/../shared/data/raw`` unless ``RECOPS_SHARED_DATA`` is set.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from models import create_model
from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    Recommender,
    history_matrix,
)
from models.threads import limit_threads
from pipelines.evaluate import EvaluationResult, EvaluationTask, build_task, evaluate_model
from pipelines.features import FeatureSet, Protocol, build_features
from pipelines.params import EvaluateParams, ModelFamily, Params, load_params
from pipelines.train import item_features, model_hyperparameters, training_device

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
FAMILIES: tuple[ModelFamily, ...] = ("popularity", "recent_popularity", "itemknn", "als", "sasrec")
BASELINES = ("popularity", "recent_popularity")


class RepeatHistoryRecommender(Recommender):
    """Bench-only reference, not a project family: items ranked by how often the user had them before.

    Score = the item's count in the history (all of it, no decay) plus a tiny all-time popularity term
    (added by the base class) that orders the rest of the catalogue; users without history get the base
    class's cold fallback. It measures how much of the test period is repeat behaviour.
    """

    family = "repeat_history"

    def _fit(
        self, data: Interactions, valid: Interactions | None, ctx: FitContext, on_epoch: EpochCallback | None
    ) -> None:
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


def parse_overrides(items: Sequence[str], option: str = "--hp") -> dict[str, dict[str, Any]]:
    """``["als.alpha=1", "itemknn.neighbours=50"]`` -> ``{"als": {"alpha": 1}, "itemknn": {...}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        family, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"error: {option} takes family.name=value, got {item!r}")
        try:
            out.setdefault(family, {})[name] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"error: {option} {item!r}: the value is not JSON ({exc})") from exc
    return out


def candidate_grid(base: dict[str, Any], tune: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the ``tune`` value lists applied to ``base`` (``[base]`` without ``tune``).

    Raises:
        SystemExit: a tuned value that is not a non-empty JSON list.
    """
    import itertools

    names = sorted(tune)
    for name in names:
        if not isinstance(tune[name], list) or not tune[name]:
            raise SystemExit(f"error: --tune {name} needs a non-empty JSON list, got {tune[name]!r}")
    combos = itertools.product(*(tune[n] for n in names))
    return [{**base, **dict(zip(names, combo, strict=True))} for combo in combos]


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


@dataclass(frozen=True)
class FamilyRun:
    """One bench row: the chosen setting, its validation score and its single test result."""

    label: str
    hyper: dict[str, Any]
    valid_ndcg: float
    test: EvaluationResult
    fit_s: float
    eval_s: float
    grid: list[tuple[dict[str, Any], float]]


def markdown_table(runs: dict[str, FamilyRun]) -> str:
    """The results as a markdown table (ratios against whichever baselines were run)."""
    head = ["family", "valid NDCG@10", "NDCG@10", "Recall@10", "Recall_trunc@10", "HR@10", "MRR@10"]
    head += ["coverage@10", "cold NDCG@10"]
    head += [f"x {b}" for b in BASELINES if b in runs] + ["fit s", "eval s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs.values():
        m = run.test.metrics
        cold = m.get("ndcg_at_10_cold")
        row = [
            run.label,
            f"{run.valid_ndcg:.4f}",
            f"{m['ndcg_at_10']:.4f} [{m['ndcg_at_10_ci_low']:.4f}, {m['ndcg_at_10_ci_high']:.4f}]",
            f"{m['recall_at_10']:.4f}",
            f"{m['recall_trunc_at_10']:.4f}",
            f"{m['hr_at_10']:.4f}",
            f"{m['mrr_at_10']:.4f}",
            f"{m['coverage_at_10']:.4f}",
            "-" if cold is None else f"{cold:.4f}",
        ]
        for base in BASELINES:
            if base in runs:
                ref = runs[base].test.metrics["ndcg_at_10"]
                row.append(f"{m['ndcg_at_10'] / ref:.2f}" if ref > 0 else "-")
        row += [f"{run.fit_s:.1f}", f"{run.eval_s:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def run_family(
    family: str,
    candidates: list[dict[str, Any]],
    fs: FeatureSet,
    protocol: Protocol,
    tasks: tuple[EvaluationTask, EvaluationTask],
    evaluate: EvaluateParams,
    fit_on: str,
    ctx: FitContext,
) -> FamilyRun:
    """Select ``family``'s setting on valid (fit on train), then report the chosen one on test once."""
    valid_task, test_task = tasks
    features = item_features(fs)  # category / brand / price codes for the families that embed them
    train = replace(fs.interactions("train", protocol), item_features=features)
    valid = fs.interactions("valid", protocol)

    def build(hyper: dict[str, Any]) -> Recommender:
        return RepeatHistoryRecommender() if family == "repeat_history" else create_model(family, hyper)

    grid: list[tuple[dict[str, Any], float]] = []
    fits: list[Recommender] = []
    t0 = time.perf_counter()
    for hyper in candidates:
        model = build(hyper).fit(train, valid, ctx)  # valid: early stopping only
        res = evaluate_model(model, fs, evaluate, protocol, task=valid_task, target="valid", progress=False)
        grid.append((hyper, res.metrics["ndcg_at_10"]))
        fits.append(model)
    best = max(range(len(grid)), key=lambda i: (grid[i][1], -i))  # ties: the first candidate
    hyper, valid_ndcg = grid[best]
    if fit_on == "train":
        chosen = fits[best]  # the published protocol: the train fit is the reported model
    else:
        train_valid = replace(fs.interactions("train_valid", protocol), item_features=features)
        # what validation chose for the selection fit (e.g. its best epoch as max_epochs), no validation now
        refit = (
            build(hyper) if family == "repeat_history" else create_model(family, fits[best].refit_config())
        )
        chosen = refit.fit(train_valid, None, ctx)
    fit_s = time.perf_counter() - t0
    test = evaluate_model(chosen, fs, evaluate, protocol, task=test_task, target="test", progress=False)
    tuned = [k for k in hyper if len({json.dumps(c.get(k)) for c in candidates}) > 1]
    label = family + (f" (valid-selected: {', '.join(f'{k}={hyper[k]}' for k in tuned)})" if tuned else "")
    return FamilyRun(label, hyper, valid_ndcg, test, fit_s, test.seconds, grid)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, default="generated")
    parser.add_argument("--protocol", choices=("temporal", "loo"), default="temporal")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where torch families train (auto: a GPU when torch sees one)")  # fmt: skip
    parser.add_argument("--test-days", type=int, default=None, help="default: params.yaml features")
    parser.add_argument("--valid-days", type=int, default=None, help="default: params.yaml features")
    parser.add_argument("--max-users", type=int, default=None,
                        help="evaluate a seeded sample of valid and test users")  # fmt: skip
    parser.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=None,
                        help="default: params.yaml evaluate.exclude_seen")  # fmt: skip
    parser.add_argument("--fit-on", choices=("train_valid", "train"), default="train_valid",
                        help="what the reported model is fitted on: train_valid (the pipeline's refit) or "
                        "train (published LOO protocol: the train fit, reported as is)")  # fmt: skip
    parser.add_argument("--hp", action="append", default=[], metavar="FAMILY.NAME=JSON",
                        help="fix one hyper-parameter, e.g. als.alpha=1 (repeatable)")  # fmt: skip
    parser.add_argument("--tune", action="append", default=[], metavar="FAMILY.NAME=JSON_LIST",
                        help="candidate values, e.g. 'als.alpha=[0.1,1]' (repeatable): every combination "
                        "is fitted on train and scored on valid; the best valid NDCG@10 is reported "
                        "on test")  # fmt: skip
    parser.add_argument("--repeat-baseline", action="store_true",
                        help="add the bench-only repeat_history row (own past items first)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed of every family (default: params.yaml's); the split, the "
                        "evaluation and any --max-users sample stay as they are")  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap samples for the NDCG CI")
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("models.sasrec").setLevel(logging.INFO)  # one line per training epoch

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
    tuning = parse_overrides(args.tune, "--tune")
    protocol: Protocol = args.protocol
    # threads limited once per process, as the train step does; early stopping filters as the evaluation
    seed = params.seed if args.seed is None else args.seed
    ctx = FitContext(seed=seed, threads=limit_threads(), exclude_seen=evaluate.exclude_seen)

    t0 = time.perf_counter()
    events, catalog = load_dataset(args.dataset, params)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs = build_features(events, catalog, features)
    features_s = time.perf_counter() - t0
    del events, catalog
    test_task = subsample(build_task(fs, protocol, evaluate.exclude_seen), args.max_users, params.seed)
    valid_task = subsample(
        build_task(fs, protocol, evaluate.exclude_seen, target="valid"), args.max_users, params.seed
    )
    stats = {**dataset_stats(fs, test_task, protocol), "valid_users": valid_task.n_users}

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    print(f"dataset={args.dataset} protocol={protocol} test_days={features.test_days} "
          f"valid_days={features.valid_days} exclude_seen={evaluate.exclude_seen} fit_on={args.fit_on} "
          f"seed={seed} nproc={os.cpu_count()} cpu={cpu!r} date={time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"load {load_s:.1f} s, features {features_s:.1f} s; " + ", ".join(f"{k}={v:,}" if isinstance(v, int)
          else f"{k}={v:.2f}" for k, v in stats.items()))  # fmt: skip

    runs: dict[str, FamilyRun] = {}
    families = list(args.families) + (["repeat_history"] if args.repeat_baseline else [])
    for family in families:
        base: dict[str, Any] = {}
        if family != "repeat_history":
            base = {**model_hyperparameters(family, params), **overrides.get(family, {})}
        candidates = candidate_grid(base, tuning.get(family, {}))
        device = training_device(family) if args.device == "auto" else args.device
        family_ctx = replace(ctx, device=device) if family != "repeat_history" else ctx
        run = run_family(
            family, candidates, fs, protocol, (valid_task, test_task), evaluate, args.fit_on, family_ctx
        )
        runs[family] = run
        if len(run.grid) > 1:
            print(f"{family}: valid NDCG@10 of {len(run.grid)} candidates (fit on train):")
            for hyper, score in run.grid:
                print(f"  {score:.4f}  " + ", ".join(f"{k}={hyper[k]}" for k in sorted(tuning[family])))
        if overrides.get(family) or tuning.get(family):
            print(f"{family} reported hyper-parameters: {run.hyper}")
    print()
    print(markdown_table(runs))
    project = [f for f in runs if f != "repeat_history"]
    if project:
        chosen = max(project, key=lambda f: (runs[f].valid_ndcg, -project.index(f)))
        test_ndcg = runs[chosen].test.metrics["ndcg_at_10"]
        print(f"\nselected on valid NDCG@10: {chosen} (its test NDCG@10: {test_ndcg:.4f})")
    if args.json is not None:
        payload = {
            "dataset": args.dataset,
            "protocol": protocol,
            "fit_on": args.fit_on,
            "stats": stats,
            "results": {
                k: {
                    "valid_ndcg_at_10": r.valid_ndcg,
                    "hyper": r.hyper,
                    "metrics": r.test.to_dict()["metrics"],
                    "fit_s": r.fit_s,
                }
                for k, r in runs.items()
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
