"""The model card written into a registered version's description (markdown).

It states how the version was chosen (on the validation split, never on test), what it was trained on,
how many users each figure rests on, and the test metrics (reported once) with their intervals.
"""

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


VALID_PREFIX = "valid_"
#: Tag the train step sets on the child run (``pipelines.train.TAG_TRAINING_CUTOFF``).
TAG_TRAINING_CUTOFF = "recops.training_cutoff"


def model_card(run: Run, parent: Run | None, lineage: Mapping[str, str], primary_metric: str) -> str:
    """A markdown model card for the version description: selection, data, metrics with CIs, slices,
    limitations."""
    tags, params = run.data.tags, run.data.params
    logged = {k: float(v) for k, v in run.data.metrics.items() if finite(v)}
    valid = {k.removeprefix(VALID_PREFIX): v for k, v in logged.items() if k.startswith(VALID_PREFIX)}
    metrics = {k: v for k, v in logged.items() if not k.startswith(VALID_PREFIX)}
    family = tags.get(TAG_FAMILY, params.get("family", "unknown"))
    selected_on = f"{VALID_PREFIX}{primary_metric}"
    chosen = f" ({valid[primary_metric]:.4f})" if primary_metric in valid else ""
    lines = [
        f"# {family} recommender",
        "",
        f"Trained by pipeline run `{lineage.get('pipeline_run_id', '')}`, child run `{run.info.run_id}`. "
        f"Selected as the best family on `{selected_on}`{chosen}: each family's model fitted on the train "
        "split was scored on the validation period, and the winner refitted on train + valid. The test "
        "period was read once, for the figures below; it chose nothing.",
        "",
        "## Data",
        "",
        f"- data version (data.dvc md5): `{lineage.get('data_md5', '')}`",
        f"- dvc.lock hash: `{lineage.get('dvc_lock_hash', '')}`",
        f"- params hash: `{lineage.get('params_hash', '')}`",
        f"- code: `{lineage.get('git_commit', '')}`",
    ]
    for key in ("train_interactions", "n_items", "n_users", "training_cutoff"):
        if key in params:
            lines.append(f"- {key.replace('_', ' ')}: {params[key]}")
    cutoff = tags.get(TAG_TRAINING_CUTOFF, "")
    if cutoff:
        lines.append(f"- training cut-off: {cutoff} (every event it learned from is earlier)")
    if "n_users" in metrics:
        cold, warm = int(metrics.get("n_users_cold", 0)), int(metrics.get("n_users_warm", 0))
        lines.append(f"- test users scored: {int(metrics['n_users'])} ({cold} cold, {warm} warm)")
    if "n_users" in valid:
        lines.append(f"- validation users scored: {int(valid['n_users'])}")
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
            or "_at_" not in name
        ):
            continue
        low, high = metrics.get(f"{name}_ci_low"), metrics.get(f"{name}_ci_high")
        ci = f"[{low:.4f}, {high:.4f}]" if low is not None and high is not None else ""
        lines.append(f"| {name} | {metrics[name]:.4f} | {ci} |")
    if any(n.startswith("recall") for n in metrics):
        lines += [
            "",
            "`recall_at_k` = relevant items in the top k / relevant items (standard); `recall_trunc_at_k` = "
            "the same over min(k, relevant items).",
        ]
    cut = primary_metric.rsplit("_at_", 1)[-1]
    selection_rows = sorted(n for n in valid if n.endswith(f"_at_{cut}") and not n.startswith("n_"))
    if selection_rows:
        lines += ["", "## Validation metrics (selection)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {VALID_PREFIX}{n} | {valid[n]:.4f} |" for n in selection_rows]
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
