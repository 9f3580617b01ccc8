"""``recops serve``: start the scoring service (``python -m service``) in place of this process.

``pipelines`` never imports ``service`` (the layers are independent), so this command validates its
arguments and replaces itself with ``<this python> -m service --host H --port P --workers N``
(:func:`os.execv`): signals, the exit status and the process id are the service's own.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Annotated

import typer

from core.errors import RecopsError

MAX_WORKERS = 64


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops serve``."""
    app.command("serve")(serve)


def service_command(host: str, port: int, workers: int) -> list[str]:
    """The argv that starts the service, after checking the arguments.

    Raises:
        RecopsError: the host is not an IP address or ``localhost``, the port is outside 1-65535, or the
            worker count is outside 1-:data:`MAX_WORKERS`.
    """
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError as exc:
            raise RecopsError(f"--host {host!r} is not an IP address (e.g. 127.0.0.1) or localhost") from exc
    if not 1 <= port <= 65535:
        raise RecopsError(f"--port {port} is outside 1-65535")
    if not 1 <= workers <= MAX_WORKERS:
        raise RecopsError(f"--workers {workers} is outside 1-{MAX_WORKERS}")
    return [sys.executable, "-m", "service", "--host", host, "--port", str(port), "--workers", str(workers)]


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (0.0.0.0 only inside a container).")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", help="uvicorn worker processes.")] = 1,
) -> None:
    """Start the scoring service (FastAPI) on HOST:PORT with N workers; it replaces this process."""
    argv = service_command(host, port, workers)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
