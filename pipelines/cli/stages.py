"""`recops features | train | evaluate`: the DVC stages (also what Airflow tasks call)."""

from __future__ import annotations

import json

import typer

from pipelines.cli.context import step_context


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add the stage commands to the main app."""
    app.command("features")(features)
    app.command("train")(train)
    app.command("evaluate")(evaluate)


def features() -> None:
    """Build features and the temporal split from the published data (DVC stage `features`)."""
    from pipelines.stages import run_features

    result = run_features(step_context())
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))


def train(
    family: str = typer.Option(..., "--family", "-f", help="Model family from params.yaml train.families."),
) -> None:
    """Train one model family and log it to MLflow (DVC stage `train@FAMILY`)."""
    from pipelines.train import run_train

    result = run_train(step_context(), family)
    typer.echo(f"trained {family} -> {result.outputs['package']} (run {result.run_ids['model']})")


def evaluate() -> None:
    """Select on validation, report on test: every trained family on the same users (DVC stage `evaluate`)."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.stages import run_evaluate

    result = run_evaluate(step_context())
    info = result.info
    metrics: dict[str, dict[str, float]] = {}
    for key, value in result.metrics.items():
        family, name = key.split(".", 1)
        metrics.setdefault(family, {})[name] = value
    selected_by = str(info["selected_by"])
    primary = selected_by.removeprefix("valid_")
    cut = primary.rsplit("_at_", 1)[-1]
    names = [selected_by, primary] + [
        f"{m}_at_{cut}" for m in ("recall", "recall_trunc", "mrr", "map", "coverage")
    ] + [f"{primary}_cold"]  # fmt: skip
    table = Table(title="evaluation (full ranking): 'valid' column = selection, the others = test period")
    table.add_column("family", no_wrap=True)
    for name in names:
        label = name.replace("_at_", "@").replace("_cold", " cold").replace("valid_", "valid ")
        table.add_column(label, justify="right", no_wrap=True)
    for family, values in metrics.items():
        mark = " *" if family == info["selected"] else ""
        table.add_row(family + mark, *(f"{values.get(n, float('nan')):.4f}" for n in names))
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print(
        f"* selected on {selected_by}: {info['selected']}. Scored {info['n_valid_users']} validation users "
        f"and {info['n_test_users']} test users (promote.min_test_users = {info['min_test_users']}"
        + ("" if info["enough_test_users"] else ": too few, the promotion gate will refuse")
        + ").",
        highlight=False,
    )
