"""The ``publish`` step: the step-contract wrapper of :func:`pipelines.publish.publish_batches`.

Each batch is validated by the gate (:func:`pipelines.validate.validate_batch`, with ``ctx.logical_date``
as "now" when the context has one, so a rerun of the same orchestrated run judges the same way), published
into ``data/`` and recorded with one ``dvc add`` and a verified push. Publish is not a DVC stage: it writes
the stage's input (``data/``, tracked by ``data.dvc``), so an orchestrator calls this function directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.publish import PublishResult, publish_batches
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from pipelines.validate import ValidationReport


def run_publish(
    ctx: StepContext,
    batch_dirs: Sequence[Path],
    *,
    replace: bool = False,
    push: bool = True,
    remote: str | None = None,
    validate: bool = True,
    on_report: Callable[[ValidationReport], None] | None = None,
    on_result: Callable[[PublishResult], None] | None = None,
) -> StepResult:
    """Validate and publish ``batch_dirs`` into ``data/``; record and push the new ``data.dvc``.

    Args:
        ctx: the step context (settings for the folders and the remote, ``params.validation`` for the gate).
        batch_dirs: landed batch folders; they are published in batch-id order.
        replace: allow replacing a published batch whose content differs.
        push: push to the DVC remote and check ``dvc status -c``.
        remote: DVC remote name (default: ``settings.dvc_remote``).
        validate: run the gate on each batch first; False only when the caller has just run it on these
            very folders (e.g. an orchestrator's separate validate task).
        on_report: called with each gate report (e.g. to print failures as they happen).
        on_result: called after each batch is published.

    Returns:
        ``outputs``: ``data`` and ``dvc_file`` (project-relative); ``metrics``: batches and events published;
        ``info``: per batch its id, status (``published``, ``replaced``, ``unchanged``), rows, content
        hash and events of forgotten users left out, plus whether the push ran and to which remote.

    Raises:
        ValidationRefused: a batch failed the gate (it is quarantined; it and later batches are not
            published, earlier ones are recorded and pushed).
        PushFailed: published and recorded in ``data.dvc`` but not pushed (exit 3): a rerun of the push
            (``recops data push``) completes it.
        RecopsError: raw user ids, a content conflict without ``replace``, event ids published in another
            batch, ``data/`` changed outside these batches, an unknown remote, or a DVC failure.
    """
    from pipelines.dvc_ops import prepare_remote
    from pipelines.validate import validate_batch

    settings = ctx.settings
    settings.ensure_runtime_dirs()
    target = remote or settings.dvc_remote
    prepare_remote(
        settings.project_dir, target, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )

    def validator(path: Path) -> ValidationReport:
        report = validate_batch(
            path,
            data_dir=settings.data_dir,
            quarantine_dir=settings.quarantine_dir,
            params=ctx.params.validation,
            now=ctx.logical_date,
        )
        if on_report is not None:
            on_report(report)
        return report

    results = publish_batches(
        list(batch_dirs),
        data_dir=settings.data_dir,
        repo_root=settings.project_dir,
        replace=replace,
        push=push,
        remote=target,
        validator=validator if validate else None,
        on_result=on_result,
    )
    return publish_result(results, settings.data_dir, ctx)


def publish_result(results: Sequence[PublishResult], data_dir: Path, ctx: StepContext) -> StepResult:
    """The JSON-able step result of a publish run."""
    last = results[-1] if results else None
    outputs = {"data": project_relative(data_dir, ctx.settings)}
    if last is not None:
        outputs["dvc_file"] = project_relative(last.dvc_file, ctx.settings)
    return StepResult(
        step="publish",
        outputs=outputs,
        metrics={
            "batches": float(len(results)),
            "batches_changed": float(sum(r.status != "unchanged" for r in results)),
            "events": float(sum(r.events for r in results)),
        },
        info={
            "batches": [
                {
                    "batch_id": r.batch_id,
                    "status": r.status,
                    "events": r.events,
                    "items": r.items,
                    "content_hash": r.content_hash,
                    "dropped_forgotten": r.dropped_forgotten,
                }
                for r in results
            ],
            "pushed": bool(last.pushed) if last is not None else False,
            "remote": last.remote if last is not None else None,
        },
    )
