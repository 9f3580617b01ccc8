"""The ``recops`` command: the one entry point that people, DVC stages and Airflow tasks call.

Sub-commands live in small modules next to this one, each exposing ``register(app)``; their heavy imports
(pandas, MLflow, GX, torch) happen inside the command functions so ``recops --help`` stays fast.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import typer

from pipelines.cli import data, gate, info, registry, stages
from pipelines.errors import RecopsError

app = typer.Typer(
    name="recops",
    help="recops: orchestrated MLOps workflow for real-time e-commerce recommendations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def package_version() -> str:
    try:
        return version("recops")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"recops {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """recops: orchestrated MLOps workflow for real-time e-commerce recommendations."""


for _module in (info, data, gate, stages, registry):
    _module.register(app)


def main() -> None:
    """Console-script entry point: known errors print one clear line, never a traceback."""
    try:
        app(standalone_mode=False)
    except RecopsError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.secho("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
