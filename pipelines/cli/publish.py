"""``recops publish BATCH_DIR...`` and the other commands that keep ``data/`` whole: ``recops data push``
(complete a failed push), ``recops data unpublish BATCH`` and ``recops data verify`` (the scheduled check)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RemoteOption = Annotated[
    str | None, typer.Option("--remote", help="DVC remote (default: RECOPS_DVC_REMOTE).")
]


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops publish``, ``recops data push``, ``recops data unpublish`` and ``recops data verify``."""
    app.command("publish")(publish)
    data_app.command("push")(push)
    data_app.command("unpublish")(unpublish)
    data_app.command("verify")(verify)


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
    published id without --replace, event ids already published in another batch, data/ changed
    by hand outside these batches, an unknown remote, DVC failure). Exit 3: published and recorded in
    data.dvc, but the push failed; `recops data push` completes it.
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
        if result.dropped_forgotten:
            typer.echo(f"  {result.dropped_forgotten} event(s) of forgotten users left out (deny-list)")

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


def _settings_for(remote: str | None) -> tuple[Path, Path, str]:
    """(data folder, project folder, remote) with the S3 endpoint of the settings written for DVC."""
    from core.logs import setup_logging
    from core.settings import get_settings
    from pipelines.dvc_ops import prepare_remote

    settings = get_settings()
    setup_logging(settings.log_level)
    name = remote or settings.dvc_remote
    prepare_remote(
        settings.project_dir, name, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )
    return settings.data_dir, settings.project_dir, name


def push(remote: RemoteOption = None) -> None:
    """Push the version of data/ that data.dvc records (verified): completes a publish, forget or
    unpublish whose push failed (they exit 3). Exit 3 if it fails again."""
    from pipelines.unpublish import push_data

    data_dir, project_dir, name = _settings_for(remote)
    dvc_file = push_data(data_dir, project_dir, name)
    typer.echo(f"pushed: {dvc_file.name} is complete on DVC remote {name}")


def unpublish(
    batch_id: Annotated[str, typer.Argument(help="The published batch to take out of data/.")],
    no_push: Annotated[bool, typer.Option("--no-push", help="Update data.dvc but do not push.")] = False,
    remote: RemoteOption = None,
) -> None:
    """Remove data/BATCH_ID and record the new version of data/ (data.dvc; commit it), then push.

    Older versions keep the batch in the DVC cache and on the remote (docs/operations.md,
    "Unpublishing a batch"). Exit 2 when the batch is not published or data/ changed by hand elsewhere.
    """
    from pipelines.unpublish import unpublish_batch

    data_dir, project_dir, name = _settings_for(remote)
    result = unpublish_batch(
        batch_id, data_dir=data_dir, repo_root=project_dir, push=not no_push, remote=name
    )
    where = f"pushed to DVC remote {name}" if result.pushed else "not pushed (--no-push)"
    typer.echo(
        f"unpublished: batch {result.batch_id} ({len(result.files)} file(s)); "
        f"{result.dvc_file.name} updated, {where}"
    )
    typer.echo("older DVC versions still hold its files (objects " + ", ".join(result.stale_objects) + ")")


def verify(
    remote: RemoteOption = None,
    no_remote: Annotated[
        bool, typer.Option("--no-remote", help="Check data/ and the local DVC cache only.")
    ] = False,
) -> None:
    """Re-hash data/ and the DVC cache against data.dvc and list the remote's objects; nothing is changed.

    One `BAD ...` line per problem (damaged, missing or unrecorded files, cache objects that no longer
    match their MD5, objects not on the remote, events of forgotten users, interrupted writers).
    Exit 0: all well. Exit 1: problems found. Exit 2: the check could not run.
    """
    from pipelines.verify import verify_data

    data_dir, project_dir, name = _settings_for(remote)
    report = verify_data(data_dir, project_dir, remote=name, check_remote=not no_remote)
    for problem in report.problems:
        typer.echo(problem.line())
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)
