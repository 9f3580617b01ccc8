"""``recops publish BATCH_DIR...``: validate batches, then publish it into ``data/`` and push it with DVC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops publish``."""
    app.command("publish")(publish)


def publish(
    batch_dirs: Annotated[
        list[Path],
        typer.Argument(help="Batch folder(s) (events + catalog); each folder name is the batch id."),
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a published batch whose content differs.")
    ] = False,
    no_push: Annotated[bool, typer.Option("--no-push", help="Update data.dvc but do not push.")] = False,
    remote: Annotated[
        str | None, typer.Option("--remote", help="DVC remote (default: RECOPS_DVC_REMOTE).")
    ] = None,
) -> None:
    """Validate each BATCH_DIR, publish it as data/<batch_id>/ (atomically), `dvc add data`, verified push.

    Batches go in batch-id order, each validated against the history published before it, and are
    recorded with one `dvc add` + push at the end. Exit 0: published, replaced or unchanged. Exit 1: a
    batch failed validation (it is quarantined; it and the batches after it are not published).
    Exit 2: bad input or a refused operation (raw user ids, different content under a
    published id without --replace, DVC failure).
    """
    from pipelines.cli.context import step_context
    from pipelines.publish import PublishResult
    from pipelines.publish_step import run_publish
    from pipelines.validate import ValidationReport

    ctx = step_context()

    def show_failures(report: ValidationReport) -> None:
        if not report.success:
            for line in report.failure_lines():
                typer.echo(line, err=True)
            typer.echo(f"{report.summary()}; result: {report.result_path}", err=True)

    def show(result: PublishResult) -> None:
        typer.echo(f"{result.status}: batch {result.batch_id} ({result.events} events, {result.items} items)")

    step = run_publish(
        ctx,
        batch_dirs,
        replace=replace,
        push=not no_push,
        remote=remote,
        on_report=show_failures,
        on_result=show,
    )
    where = f"pushed to DVC remote {step.info['remote']}" if step.info["pushed"] else "not pushed (--no-push)"
    dvc_file = Path(step.outputs.get("dvc_file", "data.dvc")).name
    typer.echo(
        f"{int(step.metrics['batches'])} batch(es) in {ctx.settings.data_dir}; {dvc_file} updated, {where}"
    )
