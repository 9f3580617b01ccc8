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
    typer.echo(f"trained {family} -> {result.outputs['model']} (run {result.run_ids['model']})")


def evaluate() -> None:
    """Evaluate every trained family on the same test set (DVC stage `evaluate`)."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.stages import run_evaluate

    result = run_evaluate(step_context())
    metrics: dict[str, dict[str, float]] = {}
    for key, value in result.metrics.items():
        family, name = key.split(".", 1)
        metrics.setdefault(family, {})[name] = value
    names = ["ndcg_at_10", "recall_at_10", "mrr_at_10", "map_at_10", "coverage_at_10", "ndcg_at_10_cold"]
    table = Table(title="evaluation (full ranking, test period)")
    table.add_column("family")
    for name in names:
        table.add_column(name.replace("_at_", "@").replace("_cold", " cold"), justify="right")
    for family, values in metrics.items():
        table.add_row(family, *(f"{values.get(n, float('nan')):.4f}" for n in names))
    Console(width=max(Console().width, 100)).print(table)
