"""``python -m service --host H --port P --workers N`` (what ``recops serve`` runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from service.__main__ import parse_args
from tests.service.live_server import free_port


def test_flags_and_defaults() -> None:
    args = parse_args([])
    assert (args.host, args.port, args.workers) == ("127.0.0.1", 8080, 1)
    args = parse_args(["--host", "0.0.0.0", "--port", "9000", "--workers", "3"])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9000, 3)
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])


def test_the_module_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(
        RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"),
        RECOPS_SERVE_POLL_INTERVAL_S="60",
        RECOPS_MLFLOW_TRACKING_URI="http://127.0.0.1:9",  # no registry: not ready, but alive
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the service did not start"
                time.sleep(0.3)
        assert health.status_code == 200 and health.headers["x-model-version"] == "none"
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 503  # empty registry
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells how it ended
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert '"route":"/healthz"' in output  # the structured access log
