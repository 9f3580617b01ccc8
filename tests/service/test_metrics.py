"""Single-process metrics stay per app; in a shared folder, live gauges of workers that died are dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from service.metrics import (
    MULTIPROC_ENV,
    ServiceMetrics,
    forget_dead_workers,
    pid_running,
    shared_metrics_dir,
)

# A worker: sets the model-version gauge and a counter in the shared folder, then waits for a line on stdin.
WORKER = """
import sys
from service.metrics import ServiceMetrics
m = ServiceMetrics()
m.model_version.labels(alias="champion").set(int(sys.argv[1]))
m.recommendations.labels(variant="champion").inc()
print("ready", flush=True)
sys.stdin.readline()
"""
SCRAPE = """
from prometheus_client import generate_latest
from service.metrics import ServiceMetrics
print(generate_latest(ServiceMetrics().registry).decode())
"""


def test_two_apps_in_one_process_keep_their_own_figures() -> None:
    assert shared_metrics_dir() is None  # pytest never sets the variable
    a, b = ServiceMetrics(), ServiceMetrics()
    a.recommendations.labels(variant="champion").inc(3)
    b.model_version.labels(alias="champion").set(7)
    text_a, text_b = generate_latest(a.registry).decode(), generate_latest(b.registry).decode()
    assert 'recops_recommendations_total{variant="champion"} 3.0' in text_a
    assert (
        "recops_recommendations_total{" not in text_b
        and 'recops_model_version{alias="champion"} 7.0' in text_b
    )
    a.close()  # nothing shared: a no-op


def test_a_variable_set_after_import_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert shared_metrics_dir() is None  # prometheus_client was imported without it: in-memory values


def _worker(shared: Path, version: int) -> subprocess.Popen[str]:
    env = {**os.environ, MULTIPROC_ENV: str(shared)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(version)], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen[str]) -> int:
    proc.kill()  # no shutdown: its live gauge file stays behind
    proc.wait()
    return proc.pid


def test_the_live_gauge_forgets_dead_workers_but_counters_keep_their_counts(tmp_path: Path) -> None:
    first = _kill(_worker(tmp_path, 9))
    assert not pid_running(first) and (tmp_path / f"gauge_livemax_{first}.db").exists()
    running = _worker(tmp_path, 4)  # a worker's start-up sweeps the dead ones
    try:
        assert pid_running(running.pid) and not (tmp_path / f"gauge_livemax_{first}.db").exists()
        assert (tmp_path / f"counter_{first}.db").exists()  # its requests still count
        second = _kill(_worker(tmp_path, 11))
        assert forget_dead_workers(tmp_path) == [second]
        assert forget_dead_workers(tmp_path) == []
        assert (tmp_path / f"gauge_livemax_{running.pid}.db").exists()
        env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
        text = subprocess.run(
            [sys.executable, "-c", SCRAPE], env=env, text=True, capture_output=True, check=True
        ).stdout
        assert 'recops_model_version{alias="champion"} 4.0' in text  # livemax of the running worker only
        assert 'recops_recommendations_total{variant="champion"} 3.0' in text  # all three workers' counts
    finally:
        running.communicate("\n", timeout=30)
    assert running.returncode == 0
