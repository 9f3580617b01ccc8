"""The ``recops`` command: the one entry point that people, DVC stages and Airflow tasks call.

Sub-commands live in small modules next to this one, each exposing ``register(app, data_app)``; their heavy
imports (pandas, MLflow, GX, torch) happen inside the command functions so ``recops --help`` stays fast.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import typer

from core.errors import RecopsError
from pipelines.cli import gate, generate, info, load, online, privacy, publish, registry, serve, stages

app = typer.Typer(
    name="recops",
    help="recops: orchestrated MLOps workflow for real-time e-commerce recommendations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Generate, load and manage shoppers' data batches.", no_args_is_help=True)
app.add_typer(data_app, name="data")


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


for _module in (info, generate, load, privacy, gate, publish, stages, registry, online, serve):
    _module.register(app, data_app)


def service_error(exc: BaseException) -> str | None:
    """One line for an error of a service the command talks to (MLflow, the metadata database), or None."""
    from registry.client import describe_mlflow_error

    message = describe_mlflow_error(exc)
    if message is not None:
        return message
    module = type(exc).__module__
    if module.startswith("sqlalchemy") and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        detail = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        return f"cannot reach the metadata database (RECOPS_METADATA_DB_URL): {detail}"
    return None


def main() -> None:
    """Console-script entry point: known errors print one clear line, never a traceback."""
    try:
        app()  # standalone mode: usage errors are handled (exit 2) and other exceptions propagate
    except RecopsError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except Exception as exc:
        message = service_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
        sys.exit(2)
