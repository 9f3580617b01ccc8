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
    from core.settings import get_settings
    from pipelines.dvc_ops import prepare_remote
    from pipelines.params import load_params
    from pipelines.publish import PublishResult, publish_batches
    from pipelines.validate import ValidationReport, validate_batch

    settings = get_settings()
    settings.ensure_runtime_dirs()
    params = load_params(settings.params_file)

    def validator(path: Path) -> ValidationReport:
        report = validate_batch(
            path, data_dir=settings.data_dir, quarantine_dir=settings.quarantine_dir, params=params.validation
        )
        if not report.success:
            for line in report.failure_lines():
                typer.echo(line, err=True)
            typer.echo(f"{report.summary()}; result: {report.result_path}", err=True)
        return report

    target = remote or settings.dvc_remote
    prepare_remote(
        settings.project_dir, target, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )

    def show(result: PublishResult) -> None:
        typer.echo(f"{result.status}: batch {result.batch_id} ({result.events} events, {result.items} items)")

    results = publish_batches(
        batch_dirs,
        data_dir=settings.data_dir,
        repo_root=settings.project_dir,
        replace=replace,
        push=not no_push,
        remote=target,
        validator=validator,
        on_result=show,
    )
    last = results[-1]
    where = f"pushed to DVC remote {last.remote}" if last.pushed else "not pushed (--no-push)"
    typer.echo(f"{len(results)} batch(es) in {settings.data_dir}; {last.dvc_file.name} updated, {where}")
