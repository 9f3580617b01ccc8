"""``recops publish BATCH_DIR``: validate a batch, then publish it into ``data/`` and push it with DVC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:  # noqa: ARG001 (no `data` sub-command)
    """Add ``recops publish``."""
    app.command("publish")(publish)


def publish(
    batch_dir: Annotated[
        Path, typer.Argument(help="Batch folder (events + catalog); its name is the batch id.")
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a published batch whose content differs.")
    ] = False,
    no_push: Annotated[bool, typer.Option("--no-push", help="Update data.dvc but do not push.")] = False,
    remote: Annotated[
        str | None, typer.Option("--remote", help="DVC remote (default: RECOPS_DVC_REMOTE).")
    ] = None,
) -> None:
    """Validate BATCH_DIR, publish it as data/<batch_id>/ (atomically), `dvc add data`, verified push.

    Exit 0: published, replaced or unchanged. Exit 1: the batch failed validation (it is quarantined and
    nothing is published). Exit 2: bad input or a refused operation (raw user ids, different content under a
    published id without --replace, DVC failure).
    """
    from pipelines.dvc_ops import prepare_remote
    from pipelines.params import load_params
    from pipelines.publish import publish_batch
    from pipelines.settings import get_settings
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
    result = publish_batch(
        batch_dir,
        data_dir=settings.data_dir,
        repo_root=settings.project_dir,
        replace=replace,
        push=not no_push,
        remote=target,
        validator=validator,
    )
    where = f"pushed to DVC remote {result.remote}" if result.pushed else "not pushed (--no-push)"
    typer.echo(
        f"{result.status}: batch {result.batch_id} ({result.events} events, {result.items} items) at "
        f"{result.path}; {result.dvc_file.name} updated, {where}"
    )
