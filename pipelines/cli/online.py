"""``recops online seed`` and ``recops feedback export``: the batch side of the scoring service.

* ``online seed`` writes the online-store seed the service loads at start-up (:mod:`pipelines.online.seed`);
* ``feedback export`` turns the service's feedback into a landing batch that goes through the same gate as
  any other batch (:mod:`pipelines.feedback.export`): the feedback loop.
"""

from __future__ import annotations

import json

import typer

from pipelines.cli.context import step_context

online_app = typer.Typer(help="Feed the scoring service's online store.", no_args_is_help=True)
feedback_app = typer.Typer(
    help="The scoring service's feedback: the loop back into training.", no_args_is_help=True
)


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops online …`` and ``recops feedback …``."""
    online_app.command("seed")(seed)
    feedback_app.command("export")(export)
    app.add_typer(online_app, name="online")
    app.add_typer(feedback_app, name="feedback")


def seed() -> None:
    """Write runtime/online/seed.parquet (+ seed.json): each shopper's recent items and bought set."""
    from pipelines.online.seed import run_online_seed

    result = run_online_seed(step_context())
    note = "written" if result.info["changed"] else "unchanged"
    typer.echo(
        f"online seed {note}: {int(result.metrics['users'])} shoppers from {int(result.metrics['events'])} "
        f"events -> {result.outputs['seed']} (digest {str(result.info['digest'])[:12]})"
    )


def export() -> None:
    """Write the feedback since the last export as a landing batch (then `recops validate` / `publish` it)."""
    from pipelines.feedback.export import run_feedback_export

    result = run_feedback_export(step_context())
    typer.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
