"""Figures and DVC plot data comparing evaluated model families.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas, no pyplot state), so callers can
log them with ``mlflow.log_figure`` or save them; plot data are small CSV files for ``dvc plots``:

* ``by_k/<name>.csv``: one row per cut-off ``k`` with every metric at that ``k`` (one file per model, so
  ``dvc plots show`` draws one line per family, e.g. x=k, y=ndcg); both ``recall`` (standard) and
  ``recall_trunc`` (over ``min(k, |relevant|)``) are columns.
* ``comparison.csv``: one row per model: primary metric with its bootstrap interval, coverage and
  popularity bias at the primary cut-off, users evaluated.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.evaluate import EvaluationResult
from pipelines.metrics import LIST_METRICS, RANKING_METRICS, bootstrap_ci, metric_name, parse_metric_name
from pipelines.params import EvaluateParams

#: Names of the standard figures (PNG files are ``<name>.png``).
FIGURES = ("metric_comparison", "coverage_vs_popularity", "ndcg_curve")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _check(results: Mapping[str, EvaluationResult]) -> None:
    if not results:
        raise ValueError("no evaluation results to plot")


def metric_comparison_figure(
    results: Mapping[str, EvaluationResult],
    metric: str | None = None,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Any:
    """Bar chart of one metric (default: the primary) per model, with bootstrap error bars.

    Error bars come from each model's per-user values; list-level metrics (coverage...) have none.
    """
    _check(results)
    first = next(iter(results.values()))
    key = metric or first.primary_metric
    names = list(results)
    values = np.array([results[n].metrics.get(key, np.nan) for n in names], dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot()
    errors = None
    if all(key in results[n].per_user for n in names) and samples > 0:
        bounds = [bootstrap_ci(results[n].per_user[key], samples, confidence, seed) for n in names]
        lows = np.array([b[0] for b in bounds])
        highs = np.array([b[1] for b in bounds])
        errors = np.vstack([np.maximum(values - lows, 0), np.maximum(highs - values, 0)])
    ax.bar(names, values, yerr=errors, capsize=4, color="tab:blue")
    ax.set_ylabel(key)
    title = f"{key} ({first.target} period, {first.protocol} split, {first.n_users:,} users)"
    ax.set_title(title + (f", {confidence:.0%} bootstrap CI" if errors is not None else ""))
    ax.tick_params(axis="x", labelrotation=20)
    return fig


def coverage_popularity_figure(results: Mapping[str, EvaluationResult], k: int | None = None) -> Any:
    """Scatter of catalogue coverage@k against popularity bias@k (default k: the primary metric's)."""
    _check(results)
    first = next(iter(results.values()))
    cut = k or parse_metric_name(first.primary_metric)[1]
    fig = _figure()
    ax = fig.add_subplot()
    for name, res in results.items():
        x = res.metrics[metric_name("popularity_bias", cut)]
        y = res.metrics[metric_name("coverage", cut)]
        ax.scatter([x], [y], s=40)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel(f"popularity bias@{cut} (mean popularity percentile)")
    ax.set_ylabel(f"catalogue coverage@{cut}")
    ax.set_title("Coverage vs popularity bias")
    return fig


def metric_curve_figure(results: Mapping[str, EvaluationResult], metric: str = "ndcg") -> Any:
    """Line chart of ``metric@k`` over the evaluated cut-offs, one line per model."""
    _check(results)
    fig = _figure()
    ax = fig.add_subplot()
    for name, res in results.items():
        ks = list(res.ks)
        ax.plot(ks, [res.metrics[metric_name(metric, k)] for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel(f"{metric}@k")
    ax.set_title(f"{metric}@k by model")
    ax.legend()
    return fig


def figures(
    results: Mapping[str, EvaluationResult], samples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """The standard figures by name (:data:`FIGURES`), e.g. for ``mlflow.log_figure(fig, f"{name}.png")``."""
    return {
        FIGURES[0]: metric_comparison_figure(results, None, samples, confidence, seed),
        FIGURES[1]: coverage_popularity_figure(results),
        FIGURES[2]: metric_curve_figure(results, "ndcg"),
    }


def comparison_figures(
    results: Mapping[str, EvaluationResult], params: EvaluateParams, seed: int = 0
) -> dict[str, Any]:
    """:func:`figures` with the bootstrap settings of the ``evaluate`` params section."""
    return figures(results, params.bootstrap_samples, params.confidence, seed)


def save_figures(
    results: Mapping[str, EvaluationResult],
    out_dir: Path,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the standard figures as ``<name>.png`` into ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, fig in figures(results, samples, confidence, seed).items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        paths[name] = path
    return paths


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.10g}"
    return str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])


def safe_file_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_``."""
    return _SAFE.sub("_", name) or "_"


def write_plot_data(results: Mapping[str, EvaluationResult], out_dir: Path) -> list[Path]:
    """Write ``by_k/<name>.csv`` per model and ``comparison.csv`` into ``out_dir``; returns the paths."""
    _check(results)
    paths: list[Path] = []
    metrics = (*RANKING_METRICS, *LIST_METRICS)
    for name, res in results.items():
        path = out_dir / "by_k" / f"{safe_file_name(name)}.csv"
        by_k = [[k, *(res.metrics.get(metric_name(m, k), float("nan")) for m in metrics)] for k in res.ks]
        _write_csv(path, ["k", *metrics], by_k)
        paths.append(path)
    first = next(iter(results.values()))
    primary = first.primary_metric
    cut = parse_metric_name(primary)[1]
    columns = [
        "name",
        primary,
        "ci_low",
        "ci_high",
        f"coverage_at_{cut}",
        f"popularity_bias_at_{cut}",
        "n_users",
    ]
    rows: list[list[Any]] = [
        [
            name,
            res.metrics[primary],
            res.metrics.get(f"{primary}_ci_low", float("nan")),
            res.metrics.get(f"{primary}_ci_high", float("nan")),
            res.metrics[metric_name("coverage", cut)],
            res.metrics[metric_name("popularity_bias", cut)],
            res.n_users,
        ]
        for name, res in results.items()
    ]
    path = out_dir / "comparison.csv"
    _write_csv(path, columns, rows)
    paths.append(path)
    return paths
