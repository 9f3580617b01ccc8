"""``recops online seed``, ``recops feedback export`` and ``recops serve`` as a person or a DAG runs them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from core.errors import RecopsError
from core.privacy import pseudonymize
from pipelines.cli.serve import MAX_WORKERS, service_command
from tests.factories import make_catalog, make_events, write_batch
from tests.pipelines.cli.test_cli import run


def publish_two_days(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for n, day in enumerate((date(2026, 1, 1), date(2026, 1, 2))):
        events = make_events(day, n=100, n_users=10, seed=n)
        events["user_id"] = pseudonymize(events["user_id"], "k")
        write_batch(data, day, events=events, catalog=make_catalog())
    return data


def test_online_seed_writes_the_seed_and_says_so(tmp_path: Path) -> None:
    data = publish_two_days(tmp_path)
    result = run(tmp_path, "online", "seed", RECOPS_DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    assert "online seed written: 10 shoppers from 200 events" in result.stdout
    assert (tmp_path / "runtime" / "online" / "seed.parquet").is_file()
    again = run(tmp_path, "online", "seed", RECOPS_DATA_DIR=str(data))
    assert again.returncode == 0 and "online seed unchanged" in again.stdout


def test_online_seed_without_data_is_one_clear_line(tmp_path: Path) -> None:
    result = run(tmp_path, "online", "seed", RECOPS_DATA_DIR=str(tmp_path / "nothing"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no published batches") and "Traceback" not in result.stderr


def test_feedback_export_without_feedback_writes_no_batch(tmp_path: Path) -> None:
    data = publish_two_days(tmp_path)
    result = run(tmp_path, "feedback", "export", RECOPS_DATA_DIR=str(data))
    assert result.returncode == 0, result.stderr
    assert '"exported": 0.0' in result.stdout and '"batch_id": null' in result.stdout
    assert not (tmp_path / "runtime" / "landing" / "feedback").exists()


def test_service_command_checks_its_arguments() -> None:
    argv = service_command("127.0.0.1", 8080, 4)
    assert argv == [
        sys.executable,
        "-m",
        "service",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "--workers",
        "4",
    ]
    assert service_command("::1", 1, 1)[4] == "::1" and service_command("localhost", 65535, 1)[6] == "65535"
    for host, port, workers, message in [
        ("example.com", 8080, 1, "not an IP address"),
        ("127.0.0.1", 0, 1, "outside 1-65535"),
        ("127.0.0.1", 70000, 1, "outside 1-65535"),
        ("127.0.0.1", 8080, 0, "outside 1-"),
        ("127.0.0.1", 8080, MAX_WORKERS + 1, "outside 1-"),
    ]:
        with pytest.raises(RecopsError, match=message):
            service_command(host, port, workers)


def test_serve_refuses_bad_arguments_with_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", "70000")
    assert result.returncode == 2 and result.stderr.strip() == "error: --port 70000 is outside 1-65535"
    result = run(tmp_path, "serve", "--workers", "abc")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_serve_replaces_itself_with_the_service(tmp_path: Path) -> None:
    """The recops process becomes ``python -m service`` (same pid) and answers /healthz on 127.0.0.1."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"), RECOPS_DATA_DIR=str(tmp_path / "data"))
    recops = Path(sys.executable).parent / "recops"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(recops), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    status = response.status
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        assert status == 200, log.read_text(encoding="utf-8", errors="replace")[-2000:] or "no answer in 60 s"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-m", b"service", b"--host"]  # the same process now runs the service
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
