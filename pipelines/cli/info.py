"""``recops info``: the resolved settings (secrets redacted) and the params digest."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    app.command("info")(info)


def info(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show the resolved settings (secrets redacted), the params file and where state lives."""
    from core.settings import get_settings
    from pipelines.params import load_params

    settings = get_settings()
    values = settings.redacted()
    params = load_params(settings.params_file)
    values["params_hash"] = params.digest()
    values["model_families"] = list(params.train.families)
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="recops settings (env prefix RECOPS_)", show_lines=False)
    table.add_column("setting")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(key, str(value))
    Console().print(table)
