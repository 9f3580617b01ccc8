"""Figures and DVC plot data for evaluation results."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluate import EvaluationResult
from pipelines.params import EvaluateParams
from pipelines.plots import (
    FIGURES,
    comparison_figures,
    coverage_popularity_figure,
    figures,
    metric_comparison_figure,
    metric_curve_figure,
    safe_file_name,
    save_figures,
    write_plot_data,
)


def _result(name: str, level: float, seed: int) -> EvaluationResult:
    rng = np.random.default_rng(seed)
    ks = (5, 10)
    per_user = {f"{m}_at_{k}": np.clip(rng.normal(level, 0.1, 50), 0, 1) for m in ("ndcg", "hr") for k in ks}
    metrics = {key: float(v.mean()) for key, v in per_user.items()}
    for k in ks:
        metrics |= {
            f"coverage_at_{k}": level / 2,
            f"popularity_bias_at_{k}": 1 - level,
            f"diversity_at_{k}": 0.5,
        }
    metrics |= {
        "ndcg_at_10_ci_low": metrics["ndcg_at_10"] - 0.02,
        "ndcg_at_10_ci_high": metrics["ndcg_at_10"] + 0.02,
    }
    return EvaluationResult(
        name=name, protocol="temporal", target="test", ks=ks, primary_metric="ndcg_at_10", n_users=50,
        metrics=metrics,
        by_category={}, user_idx=np.arange(50), cold=np.zeros(50, bool), per_user=per_user,
        top_k=np.zeros((50, 10), np.int64), seconds=0.1,
    )  # fmt: skip


RESULTS = {"popularity": _result("popularity", 0.2, 0), "item knn": _result("item knn", 0.4, 1)}


def test_figures_have_one_mark_per_model() -> None:
    bars = metric_comparison_figure(RESULTS, samples=100)
    ax = bars.axes[0]
    assert ax.get_title().startswith("ndcg_at_10 (test period, temporal split, 50 users")
    assert [p.get_height() for p in ax.patches] == pytest.approx([RESULTS[n].primary for n in RESULTS])
    assert len(ax.lines) + len(ax.collections) > 0  # error bars drawn
    no_ci = metric_comparison_figure(RESULTS, metric="coverage_at_10")
    assert [p.get_height() for p in no_ci.axes[0].patches] == pytest.approx([0.1, 0.2])
    scatter = coverage_popularity_figure(RESULTS)
    assert len(scatter.axes[0].collections) == 2
    curve = metric_curve_figure(RESULTS)
    assert [line.get_xdata().tolist() for line in curve.axes[0].lines] == [[5, 10], [5, 10]]
    assert set(figures(RESULTS, samples=50)) == set(FIGURES)
    assert set(comparison_figures(RESULTS, EvaluateParams(bootstrap_samples=20))) == set(FIGURES)
    with pytest.raises(ValueError, match="no evaluation results"):
        metric_curve_figure({})


def test_save_figures_writes_pngs(tmp_path: Path) -> None:
    paths = save_figures(RESULTS, tmp_path, samples=50)
    assert sorted(paths) == sorted(FIGURES)
    assert paths["ndcg_curve"].name == "ndcg_curve.png"
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_data_files(tmp_path: Path) -> None:
    paths = write_plot_data(RESULTS, tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in paths} == {
        "by_k/popularity.csv",
        "by_k/item_knn.csv",
        "comparison.csv",
    }
    with (tmp_path / "by_k" / "popularity.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["k"] for r in rows] == ["5", "10"]
    assert {"recall", "recall_trunc"} <= set(rows[0])  # both definitions, under their own names
    assert float(rows[1]["ndcg"]) == pytest.approx(RESULTS["popularity"].metrics["ndcg_at_10"])
    assert rows[0]["mrr"] == ""  # not computed: empty cell, not "nan"
    with (tmp_path / "comparison.csv").open() as handle:
        comp = list(csv.DictReader(handle))
    assert [r["name"] for r in comp] == ["popularity", "item knn"]
    assert float(comp[1]["coverage_at_10"]) == pytest.approx(0.2)
    before = (tmp_path / "comparison.csv").read_bytes()
    write_plot_data({k: replace(v) for k, v in RESULTS.items()}, tmp_path)
    assert (tmp_path / "comparison.csv").read_bytes() == before


def test_safe_file_name() -> None:
    assert safe_file_name("als/64 factors") == "als_64_factors"
