"""`recops register | promote | rollback | audit | recommend`: the model registry by alias."""

from __future__ import annotations

from typing import Any

import typer

from pipelines.cli.context import command_context


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add the registry commands to the main app (none under `recops data`)."""
    del data_app
    app.command("register")(register_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("audit")(audit_cmd)
    app.command("recommend")(recommend_cmd)


def _default_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (containers)
        return "cli:unknown"


ActorOption = typer.Option(None, "--actor", help="Who is acting (audit trail); default cli:<login name>.")


def register_cmd(
    pipeline_run: str | None = typer.Option(
        None,
        "--pipeline-run",
        help="MLflow parent run id or orchestrator run id; default: RECOPS_PIPELINE_RUN_ID when set, "
        "else the latest pipeline run.",
    ),
    actor: str | None = ActorOption,
) -> None:
    """Register the family that is best on the validation split and point the `challenger` alias at it."""
    from pipelines.cli.context import step_context
    from pipelines.register_step import run_register

    result = run_register(step_context(actor or _default_actor()), pipeline_run)
    info = result.info
    primary, selected_on = info["primary_metric"], info["selected_on"]
    valid = result.metrics.get(selected_on, float("nan"))
    test = result.metrics.get(primary, float("nan"))
    figures = f"selected on {selected_on}={valid:.4f}; test {primary}={test:.4f}"
    model, version, run = f"{info['model_name']} v{info['version']}", info["version"], result.run_ids["model"]
    if info["created"]:
        what = f"registered new {model} ({info['family']}, run {run}, {figures})"
    else:
        what = (
            f"reused existing {model} ({info['family']}): run {info['candidate_run_id']} has the same "
            f"lineage and package; figures of v{version}'s own run {run}: {figures}"
        )
    typer.echo(f"{what}; challenger: {_v(info['previous_challenger'])} -> v{info['version']}")


def promote_cmd(
    actor: str | None = ActorOption,
    fail_on_block: bool = typer.Option(False, "--fail-on-block", help="Exit 1 when the gate blocks."),
) -> None:
    """Compare `challenger` with `champion` on the current test data and promote it if the gate passes."""
    from rich.console import Console

    from pipelines.cli.context import step_context
    from pipelines.promote import run_promote

    info = run_promote(step_context(actor or _default_actor())).info
    console = Console()
    if info["table"]:
        console.print(_comparison_table(tuple(info["table"])))
    for check in info["checks"]:
        mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
        console.print(f"  {mark} {check['name']}: {check['detail']}", highlight=False)
    promoted = info["outcome"] == "promoted"
    colour = "green" if promoted else "yellow"
    console.print(
        f"[{colour}]{info['outcome']}[/{colour}]: champion {_v(info['champion_before'])} -> "
        f"{_v(info['champion_after'])} (challenger v{info['challenger_version']}, "
        f"compared with the {info['compared_with']}; promotion run {info['promotion_run_id'] or '-'})",
        highlight=False,
    )
    for reason in info["reasons"]:
        console.print(f"  reason: {reason}", highlight=False)
    if fail_on_block and info["outcome"] in ("blocked", "lost_race"):
        raise typer.Exit(1)


def _v(version: int | None) -> str:
    return "none" if version is None else f"v{version}"


def _comparison_table(rows: tuple[dict[str, Any], ...]) -> Any:
    from rich.table import Table

    table = Table(title="promotion gate (current test data)")
    columns = list(rows[0])
    for column in columns:
        table.add_column(column, justify="left" if column in ("role", "model") else "right")
    for row in rows:
        table.add_row(*(_cell(row[c]) for c in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.4f}"
    return str(value)


def rollback_cmd(
    to: int | None = typer.Option(
        None, "--to", help="Version to serve again; default: the `previous` alias."
    ),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the audit trail)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Allow a target that was never champion (e.g. blocked by the gate); needs --reason, audited.",
    ),
    actor: str | None = ActorOption,
) -> None:
    """Point `champion` back at `previous` (or --to VERSION); `previous` becomes the old champion.

    Only versions that were champion before (per the audit trail) are accepted, unless --force --reason."""
    from registry.rollback import rollback

    settings, _ = command_context()
    result = rollback(
        to_version=to, settings=settings, actor=actor or _default_actor(), reason=reason, force=force
    )
    forced = " (FORCED: it was never champion; recorded in the audit trail)" if result.forced else ""
    typer.echo(
        f"rolled back {result.model_name}: champion v{result.from_version} -> v{result.to_version}{forced}; "
        f"previous -> v{result.previous}"
    )


def audit_cmd(
    at: str | None = typer.Option(
        None, "--at", help="ISO timestamp (UTC unless it has an offset): which version was champion then."
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="Show the latest N alias moves."),
) -> None:
    """Show the alias audit trail, or which version was champion at a point in time."""
    from rich.console import Console
    from rich.table import Table

    from core.errors import RecopsError
    from registry.audit import audit_log, to_utc

    settings, _ = command_context()
    log = audit_log(settings)
    _reconcile(settings, log)
    if at is not None:
        from datetime import datetime

        try:
            when = to_utc(datetime.fromisoformat(at))
        except ValueError as exc:
            raise RecopsError(f"--at {at!r} is not an ISO timestamp such as 2026-03-01T12:00:00Z") from exc
        version = log.champion_at(when, settings.model_name)
        shown = "no champion" if version is None else f"v{version}"
        typer.echo(f"{settings.model_name} champion at {when.isoformat()}: {shown}")
        return
    rows = log.history(settings.model_name, limit=limit)
    table = Table(title=f"alias moves of {settings.model_name} (oldest first)")
    for column in ("at (UTC)", "actor", "action", "alias", "from", "to", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.at.strftime("%Y-%m-%d %H:%M:%S"),
            row.actor,
            row.action if row.state == "done" else f"{row.action} ({row.state})",
            row.alias,
            "" if row.from_version is None else f"v{row.from_version}",
            "" if row.to_version is None else f"v{row.to_version}",
            row.reason,
        )
    Console().print(table)
    if not rows:
        typer.echo("no alias moves recorded yet")


def _reconcile(settings: Any, log: Any) -> None:
    """Settle intents a killed command left pending, against MLflow's aliases (a warning if it is down)."""
    from registry.aliases import settle_pending
    from registry.client import mlflow_client

    if not log.pending(settings.model_name):
        return
    try:
        settled = settle_pending(mlflow_client(settings), log, settings.model_name)
    except Exception as exc:  # registry down: show the table with the pending rows marked
        from pipelines.cli import service_error

        why = service_error(exc) or str(exc)
        typer.secho(f"warning: interrupted alias moves stay pending ({why})", err=True, fg="yellow")
        return
    for row in settled:
        typer.echo(
            f"reconciled an interrupted {row.action} of {row.alias} -> v{row.to_version} "
            f"(audit row {row.id}): {row.state}"
        )


def recommend_cmd(
    user: str = typer.Option(..., "--user", help="The shopper's id (raw unless --pseudonym)."),
    k: int = typer.Option(10, "--k", min=1, max=1000, help="How many items."),
    raw_id: bool = typer.Option(
        True, "--raw-id/--pseudonym", help="Whether --user is a raw id (pseudonymised here) or a pseudonym."
    ),
    alias: str = typer.Option("champion", "--alias", help="Registry alias to load."),
) -> None:
    """Top-K in-stock items for one shopper from the champion, with catalogue attributes."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.recommend import recommend_for_user

    settings, params = command_context()
    rec = recommend_for_user(
        user,
        settings=settings,
        k=k,
        raw_id=raw_id,
        max_history=params.features.max_sequence_length,
        alias=alias,
    )
    title = f"{rec.model_name} v{rec.version} ({rec.family}) for {rec.user_id}"
    table = Table(title=title)
    for column in ("rank", "item_id", "category", "brand", "price", "in_stock", "score"):
        table.add_column(column, justify="right" if column in ("rank", "price", "score") else "left")
    for row in rec.rows:
        price = "" if row["price"] is None else f"{row['price']:.2f}"
        table.add_row(
            str(row["rank"]), row["item_id"], row["category"], row["brand"], price,
            "yes" if row["in_stock"] else "no", f"{row['score']:.4f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    if rec.cold:
        what = "no published history" if rec.history_length == 0 else "no history the model knows"
        console.print(f"note: {what} for this shopper: popularity fallback", highlight=False)
    else:
        console.print(f"history: {rec.history_length} events, {rec.known_history} on items the model knows")
    if rec.stale_model:
        console.print(
            f"warning: served the last good cached {alias} v{rec.version} ({rec.stale_reason})",
            style="yellow",
            highlight=False,
        )
