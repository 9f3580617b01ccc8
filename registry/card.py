"""The model card written into a registered version's description (markdown)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.tags import TAG_FAMILY

if TYPE_CHECKING:
    from mlflow.entities import Run

#: Model-version descriptions are stored in a 5000-character column by MLflow's SQL stores.
MAX_DESCRIPTION = 4900


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def model_card(run: Run, parent: Run | None, lineage: Mapping[str, str], primary_metric: str) -> str:
    """A markdown model card for the version description: data, metrics with CIs, slices, limitations."""
    tags, params = run.data.tags, run.data.params
    metrics = {k: float(v) for k, v in run.data.metrics.items() if finite(v)}
    family = tags.get(TAG_FAMILY, params.get("family", "unknown"))
    lines = [
        f"# {family} recommender",
        "",
        f"Trained by pipeline run `{lineage.get('pipeline_run_id', '')}`, child run `{run.info.run_id}`. "
        f"Selected as the best family on `{primary_metric}`.",
        "",
        "## Data",
        "",
        f"- data version (data.dvc md5): `{lineage.get('data_md5', '')}`",
        f"- dvc.lock hash: `{lineage.get('dvc_lock_hash', '')}`",
        f"- params hash: `{lineage.get('params_hash', '')}`",
        f"- code: `{lineage.get('git_commit', '')}`",
    ]
    for key in ("train_interactions", "n_items", "n_users", "test_users"):
        if key in params:
            lines.append(f"- {key.replace('_', ' ')}: {params[key]}")
    for key in ("n_test_users", "n_cold_users", "n_warm_users"):
        if key in metrics:
            lines.append(f"- {key.removeprefix('n_').replace('_', ' ')}: {int(metrics[key])}")
    hyper = {k.removeprefix("hp."): v for k, v in params.items() if k.startswith("hp.")}
    if hyper:
        lines.append("- hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(hyper.items())))
    lines += [
        "",
        "## Offline metrics (test period, full ranking)",
        "",
        "| metric | value | CI |",
        "|---|---|---|",
    ]
    slices = ("_cold", "_warm")
    for name in sorted(metrics):
        if (
            name.endswith(("_ci_low", "_ci_high"))
            or name.endswith(slices)
            or name.startswith(("train_", "n_"))
        ):
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        ci = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(f"| {name} | {metrics[name]:.4f} | {ci} |")
    sliced = sorted(n for n in metrics if n.endswith(slices))
    if sliced:
        lines += ["", "## Cold and warm users", "", "| metric | value |", "|---|---|"]
        lines += [f"| {n} | {metrics[n]:.4f} |" for n in sliced]
    lines += [
        "",
        "## Limitations",
        "",
        "- Offline metrics replay one temporal split of logged events; they ignore position bias and the "
        "feedback loop of the live system, so online results can differ.",
        "- Users without history get popularity-based lists; items absent from the training catalogue "
        "cannot be recommended until the next retraining.",
        "- Promotion re-scores this version against the champion on the current test data; the numbers "
        "above are those of its own pipeline run.",
    ]
    if parent is not None and parent.data.tags.get("orchestrator_run_id"):
        lines.append(f"- Orchestrator run: `{parent.data.tags['orchestrator_run_id']}`.")
    card = "\n".join(lines) + "\n"
    return card if len(card) <= MAX_DESCRIPTION else card[: MAX_DESCRIPTION - 20] + "\n\n(truncated)\n"
