"""``python -m service --host H --port P --workers N``: run the scorer under uvicorn (``recops serve``).

With several workers, their Prometheus metrics are shared through a fresh folder
``<runtime>/serve-metrics/<pid of this process>/`` named by ``PROMETHEUS_MULTIPROC_DIR`` (see
:mod:`service.metrics`): created empty at start (folders left by starts that no longer run are removed) and
removed when the server stops. One worker keeps its metrics in memory and never reads that variable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

#: Where the per-start metric folders live, under the runtime folder.
METRICS_DIR = "serve-metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # = service.metrics.MULTIPROC_ENV, which main must not import


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m service", description="recops scoring service")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def prepare_metrics_dir(runtime_dir: Path, pid: int) -> Path:
    """A fresh, empty ``<runtime>/serve-metrics/<pid>/`` for the workers of this start.

    Folders of earlier starts whose process no longer runs (killed before it could clean up) are removed;
    those of starts still running (another port, same runtime folder) are left alone.
    """
    from service.metrics import pid_running  # imports prometheus_client: harmless here, workers are spawned

    parent = runtime_dir / METRICS_DIR
    parent.mkdir(parents=True, exist_ok=True)
    for old in parent.iterdir():
        if old.is_dir() and old.name.isdigit() and (int(old.name) == pid or not pid_running(int(old.name))):
            shutil.rmtree(old, ignore_errors=True)
    shared = parent / str(pid)
    shared.mkdir()
    return shared


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Nothing here imports prometheus_client: it reads PROMETHEUS_MULTIPROC_DIR once, at import (in a worker).
    from core.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.workers > 1 and settings.redis_url is None:
        sys.stderr.write(
            "warning: several workers without RECOPS_REDIS_URL each keep their own in-memory online store, "
            "so an event may not be seen by the next request; set RECOPS_REDIS_URL\n"
        )
    shared: Path | None = None
    if args.workers > 1:
        try:
            shared = prepare_metrics_dir(settings.runtime_dir, os.getpid())
        except OSError as exc:
            sys.stderr.write(f"error: cannot create the metrics folder under {settings.runtime_dir}: {exc}\n")
            return 2
        os.environ[MULTIPROC_ENV] = str(shared)  # inherited by the workers uvicorn spawns
    else:
        os.environ.pop(MULTIPROC_ENV, None)  # one worker: in-memory metrics, never a stale shared folder

    import uvicorn

    try:
        uvicorn.run(
            "service.app:app_factory",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=settings.log_level.lower(),
            access_log=False,  # service.observe writes a structured line without personal data
            limit_concurrency=2048,
            timeout_keep_alive=30,
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
