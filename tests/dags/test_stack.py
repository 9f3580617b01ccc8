"""``make stack-up`` for real: Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor) and
an MLflow server on PostgreSQL, three ingest runs triggered through the REST API, the Asset starts training,
a champion is promoted; ``airflow backfill create`` over the same days changes nothing; ``stack-down``
leaves no process behind.

Runs in a project copy with 18 days already published (what a running system has), fresh PostgreSQL
databases and free ports, so it never touches the repository's own runtime/ or a stack already running.

The scale-out path: the same workflow on CeleryExecutor (``RECOPS_STACK_EXECUTOR=celery``) with the local
Redis as broker (the tests' db, every key under the test's prefix, a queue of its own) and a separate
``airflow celery worker`` process named through ``RECOPS_WORKER_NAME``: every task instance of the ingest
runs and of the Asset-triggered training must have run on that worker. The quick version (one task) is
``tests/dags/test_celery.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisEndpoint
from tests.dags.airflow_env import REPO_ROOT, VENV_BIN
from tests.dags.project import make_dag_project, project_environment

pytestmark = [pytest.mark.slow, pytest.mark.integration]

STACK = REPO_ROOT / "infra" / "scripts" / "stack.sh"
CHECK = REPO_ROOT / "infra" / "scripts" / "stack_check.py"
PARAMS = {
    "generate.days": 21,
    "generate.users": 600,
    "generate.items": 300,
    "features.valid_days": 3,
    "features.test_days": 4,
    # the four quick families (the asserted map indices), whatever else params.yaml lists
    "train.families": ["popularity", "recent_popularity", "itemknn", "als"],
}
HISTORY_DAYS = 18
DATES = ["2026-01-19", "2026-01-20", "2026-01-21"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def processes_with(marker: str) -> list[str]:
    """``pid: command`` of every process whose environment holds ``marker`` (what the stack started)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {command}")
        except OSError:
            continue
    return found


@pytest.fixture
def stack_env(tmp_path: Path, make_pg_database: Callable[[], str]) -> Iterator[dict[str, str]]:
    project = make_dag_project(tmp_path / "project", PARAMS)
    with project_environment(project):
        from core.settings import get_settings
        from pipelines.orchestration import tasks
        from pipelines.publish import publish_batches

        first = tasks.fetch_batch(logical_date="2026-01-01")
        cache = (project.root / first["outputs"]["batch"]).parent
        settings = get_settings()
        publish_batches(sorted(cache.iterdir())[:HISTORY_DAYS], data_dir=settings.data_dir,
                        repo_root=settings.project_dir, remote="local")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOPS_", "AIRFLOW", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "RECOPS_PROJECT_DIR": str(project.root),
            "RECOPS_RUNTIME_DIR": str(project.root / "runtime"),
            "RECOPS_AIRFLOW_DB_URL": make_pg_database(),
            "RECOPS_MLFLOW_BACKEND_URI": make_pg_database(),
            "RECOPS_AIRFLOW_PORT": str(free_port()),
            "RECOPS_MLFLOW_PORT": str(free_port()),
            "RECOPS_INGEST_START": DATES[0],
            "RECOPS_INGEST_END": DATES[-1],
        }
    )
    yield env
    subprocess.run(["bash", str(STACK), "down"], env=env, capture_output=True, timeout=120, check=False)


def run(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_stack_runs_the_workflow_through_the_rest_api_and_stops_cleanly(stack_env: dict[str, str]) -> None:
    runtime = Path(stack_env["RECOPS_RUNTIME_DIR"])
    up = run(["bash", str(STACK), "up"], stack_env, timeout=400)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "Airflow admin password (shown once" in up.stdout
    passwords = runtime / "airflow" / "passwords.json"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    password = json.loads(passwords.read_text())["admin"]
    again = run(["bash", str(STACK), "up"], stack_env, timeout=400)
    assert again.returncode == 0 and "already running" in again.stdout
    assert password not in again.stdout + again.stderr, "the password is printed once only"
    status = run(["bash", str(STACK), "status"], stack_env, timeout=60)
    assert status.returncode == 0, status.stdout

    check = run(
        [str(VENV_BIN / "python"), str(CHECK), "--dates", *DATES, "--timeout", "1500"], stack_env, 1600
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    summary = json.loads(check.stdout)
    assert list(summary["ingest"].values()) == ["success"] * 3, summary["ingest"]
    assert summary["train_state"] == "success" and summary["train_triggered_by"] == "asset_triggered"
    trained = [t for t in summary["train_tasks"] if t["task_id"] == "train"]
    assert [t["rendered_map_index"] for t in trained] == ["popularity", "recent_popularity", "itemknn", "als"]
    assert summary["champion_version"] is not None and summary["champion_version"] >= 1
    print(json.dumps({k: v for k, v in summary.items() if k != "train_tasks"}, indent=2))

    command = [str(VENV_BIN / "python"), str(CHECK), "--backfill", DATES[0], DATES[-1], "--timeout", "900"]
    backfill = run(command, stack_env, timeout=1000)
    assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]
    again = json.loads(backfill.stdout)
    assert sorted(again["runs"]) == DATES
    assert {
        day: (s["run"], s["publish"], s["announce"]) for day, s in again["runs"].items()
    } == dict.fromkeys(DATES, ("success", "success", "skipped"))
    assert again["published_events_after"] == again["published_events_before"] == 3
    assert again["train_runs_after"] == again["train_runs_before"]

    down = run(["bash", str(STACK), "down"], stack_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert processes_with(f"RECOPS_PROJECT_DIR={stack_env['RECOPS_PROJECT_DIR']}") == []
    assert run(["bash", str(STACK), "status"], stack_env, timeout=60).returncode == 3


@pytest.fixture
def celery_stack_env(stack_env: dict[str, str], redis_url: RedisEndpoint) -> dict[str, str]:
    """The stack's environment on CeleryExecutor with the local Redis as broker and a worker of its own."""
    return {
        **stack_env,
        "RECOPS_STACK_EXECUTOR": "celery",
        "RECOPS_CELERY_BROKER_URL": redis_url.url,
        "RECOPS_CELERY_QUEUE": f"recops-test-{secrets.token_hex(4)}",
        "RECOPS_WORKER_NAME": f"recops-celery-test-{secrets.token_hex(3)}",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": redis_url.prefix,
    }


def test_celery_stack_runs_the_workflow_on_the_named_worker(celery_stack_env: dict[str, str]) -> None:
    worker = celery_stack_env["RECOPS_WORKER_NAME"]
    up = run(["bash", str(STACK), "up"], celery_stack_env, timeout=400)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "CeleryExecutor" in up.stdout
    status = run(["bash", str(STACK), "status"], celery_stack_env, timeout=60)
    assert status.returncode == 0 and "celery-worker: running" in status.stdout, status.stdout

    command = [str(VENV_BIN / "python"), str(CHECK), "--dates", *DATES, "--expect-worker", worker,
               "--timeout", "1500"]  # fmt: skip
    check = run(command, celery_stack_env, 1600)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    summary = json.loads(check.stdout)
    assert list(summary["ingest"].values()) == ["success"] * 3, summary["ingest"]
    assert summary["train_state"] == "success" and summary["train_triggered_by"] == "asset_triggered"
    assert summary["champion_version"] is not None
    ran = [t for rows in summary["ingest_tasks"].values() for t in rows] + summary["train_tasks"]
    assert len(ran) == 3 * 4 + 10
    assert {t["hostname"] for t in ran if t["state"] == "success"} == {worker}
    assert summary["not_on_expected_worker"] == []
    print(json.dumps({k: v for k, v in summary.items() if not k.endswith("_tasks")}, indent=2))

    down = run(["bash", str(STACK), "down"], celery_stack_env, timeout=120)
    assert down.returncode == 0 and "stopped celery-worker" in down.stdout, down.stdout + down.stderr
    assert processes_with(f"RECOPS_PROJECT_DIR={celery_stack_env['RECOPS_PROJECT_DIR']}") == []
