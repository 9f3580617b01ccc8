"""``recops data forget --user ID``: delete one shopper's events from the published data (new DVC version),
their feedback and served lists from the metadata database, and their row of the online-store seed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from pipelines.forget import ForgetResult, ServedForgetResult


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops data forget``."""
    data_app.command("forget")(forget)


def forget(
    user: Annotated[
        str, typer.Option("--user", help="The user's raw id (or, with --pseudonym, the stored id).")
    ],
    raw: Annotated[
        bool, typer.Option("--raw/--pseudonym", help="--user is the raw id (default) or the pseudonym.")
    ] = True,
    no_push: Annotated[bool, typer.Option("--no-push", help="Update data.dvc but do not push.")] = False,
    remote: Annotated[
        str | None, typer.Option("--remote", help="DVC remote (default: RECOPS_DVC_REMOTE).")
    ] = None,
) -> None:
    """Remove every published event of one user and record the result as a new version of data/.

    The pseudonym goes on the deny-list (data/_forgotten.txt), so publish and the loaders drop the user's
    events from later batches too. The scoring service's feedback rows and served lists of the user are
    deleted from the metadata database and the online-store seed is rebuilt without them (the running
    service's live state: DELETE /users/{id}). Exit 0 also when the user has no published event ("nothing to
    forget"). Exit 3: recorded in data.dvc but the push failed (`recops data push` completes it). Old
    versions stay in the DVC cache and remote until purged: see docs/operations.md, "Forgetting a user".
    Only the pseudonym is printed, never the raw id. An interrupted forget is finished by running it again.
    """
    from core.settings import get_settings
    from pipelines.dvc_ops import PushFailed, prepare_remote
    from pipelines.forget import forget_served, forget_user, resolve_pseudonym

    settings = get_settings()
    remote = remote or settings.dvc_remote
    prepare_remote(
        settings.project_dir, remote, endpoint_url=settings.s3_endpoint_url, bucket=settings.s3_bucket
    )
    key = settings.pseudonymization_key.get_secret_value()
    pseudonym = resolve_pseudonym(user, key, is_pseudonym=not raw)
    try:
        result = forget_user(
            pseudonym,
            data_dir=settings.data_dir,
            repo_root=settings.project_dir,
            key=key,
            is_pseudonym=True,
            push=not no_push,
            remote=remote,
        )
    except PushFailed:  # recorded locally: the served side is forgotten all the same, then exit 3
        _report_served(forget_served(settings, pseudonym), pseudonym)
        raise
    _report(result, remote)
    _report_served(forget_served(settings, pseudonym), pseudonym)


def _report(result: ForgetResult, remote: str) -> None:
    denied = " (added to the deny-list: publish and the loaders drop their future events)"
    if not result.found:
        note = denied if result.denied else ""
        typer.echo(f"nothing to forget: no published event of user {result.pseudonym}{note}")
        return
    where = f"pushed to DVC remote {remote}" if result.pushed else "not pushed (--no-push)"
    batches = ", ".join(result.batches_changed)
    typer.echo(
        f"forgot user {result.pseudonym}: {result.events_removed} event(s) removed from "
        f"{len(result.batches_changed)} batch(es) ({batches}); data.dvc updated, {where}"
    )
    if result.denied:
        typer.echo(f"user {result.pseudonym}{denied}")
    typer.echo(
        "older DVC versions still hold these events in the cache and on the remote (objects "
        + ", ".join(result.stale_objects)
        + "): see docs/operations.md, 'Forgetting a user'"
    )


def _report_served(served: ServedForgetResult, pseudonym: str) -> None:
    if served.feedback_rows is None:
        typer.echo("no feedback store in the metadata database: no feedback or served list to forget")
    else:
        typer.echo(
            f"deleted {served.feedback_rows} feedback row(s) and served list(s) of user {pseudonym} "
            "from the metadata database"
        )
    if served.seed_rewritten is not None:
        what = "rebuilt without the user" if served.seed_rewritten else "unchanged (it did not hold the user)"
        typer.echo(f"online-store seed {what}")
