"""The scale-out path, quickly: ``RECOPS_STACK_EXECUTOR=celery infra/scripts/stack.sh up`` runs our DAGs'
tasks on a separate ``airflow celery worker`` process, and each task instance records that worker's name.

A project copy with small generated data, fresh PostgreSQL databases, free ports, the local Redis as broker
(the tests' db, every broker key under the test's own prefix, a queue of its own) and a worker named for
this test. A ``recops_ingest`` run is triggered through the REST API (``stack_check.py --ingest-only
--ingest-tasks fetch --expect-worker``); its first task, ``fetch`` (the batch of the day from the
generator), must succeed on the worker, which Airflow records as the task instance's ``hostname``. The whole
stack (api-server, scheduler, dag-processor, triggerer, the worker, MLflow) is then stopped and no process
is left. Waiting for one task keeps this under 90 s on a busy two-core machine; every task of the full
workflow on Celery (ingest, Asset-triggered training, promotion) is checked by the slow
``test_stack.py::test_celery_stack_runs_the_workflow_on_the_named_worker``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RedisEndpoint
from tests.dags.airflow_env import VENV_BIN
from tests.dags.project import make_dag_project
from tests.dags.test_stack import CHECK, STACK, free_port, processes_with, run

pytestmark = [pytest.mark.integration]

PARAMS = {
    "generate.days": 10,
    "generate.users": 100,
    "generate.items": 60,
    "features.valid_days": 3,
    "features.test_days": 4,
}
DAY = "2026-01-01"


def in_groups(groups: set[int]) -> set[int]:
    """Every process in one of these process groups (a stack component and all it started)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.getpgid(int(proc.name)) in groups:
                pids.add(int(proc.name))
        except ProcessLookupError:
            continue
    return pids


def listening(pids: set[int]) -> set[str]:
    """``address:port`` of every listening socket these processes hold."""
    import psutil  # type: ignore[import-untyped]  # no stubs installed

    return {
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in psutil.net_connections(kind="inet")
        if c.pid in pids and c.status == psutil.CONN_LISTEN
    }


def clean_env() -> dict[str, str]:
    """This process's environment without the recops, Airflow and MLflow settings the test session set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOPS_", "AIRFLOW", "MLFLOW_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture
def celery_env(
    tmp_path: Path, make_pg_database: Callable[[], str], redis_url: RedisEndpoint
) -> Iterator[dict[str, str]]:
    project = make_dag_project(tmp_path / "project", PARAMS)
    env = clean_env()
    env.update(
        {
            "RECOPS_PROJECT_DIR": str(project.root),
            "RECOPS_RUNTIME_DIR": str(project.root / "runtime"),
            "RECOPS_AIRFLOW_DB_URL": make_pg_database(),
            "RECOPS_MLFLOW_BACKEND_URI": make_pg_database(),
            "RECOPS_AIRFLOW_PORT": str(free_port()),
            "RECOPS_MLFLOW_PORT": str(free_port()),
            "RECOPS_INGEST_START": DAY,
            "RECOPS_INGEST_END": DAY,
            "RECOPS_STACK_EXECUTOR": "celery",
            "RECOPS_CELERY_BROKER_URL": redis_url.url,
            "RECOPS_CELERY_QUEUE": f"recops-test-{secrets.token_hex(4)}",
            "RECOPS_WORKER_NAME": f"recops-celery-test-{secrets.token_hex(3)}",
            # the worker is stopped mid-task (validate runs on): a short warm shutdown
            "RECOPS_STACK_STOP_TIMEOUT_S": "3",
            # every key the broker writes starts with the test's prefix (the fixture deletes them)
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": redis_url.prefix,
        }
    )
    yield env
    subprocess.run(["bash", str(STACK), "down"], env=env, capture_output=True, timeout=120, check=False)


def test_an_ingest_run_executes_on_the_named_celery_worker(celery_env: dict[str, str]) -> None:
    worker = celery_env["RECOPS_WORKER_NAME"]
    pids = Path(celery_env["RECOPS_RUNTIME_DIR"]) / "stack" / "pids"
    started = time.monotonic()
    up = run(["bash", str(STACK), "up"], celery_env, timeout=300)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    assert "CeleryExecutor" in up.stdout
    status = run(["bash", str(STACK), "status"], celery_env, timeout=60)
    assert status.returncode == 0 and "celery-worker: running" in status.stdout, status.stdout

    # the worker is a process group of its own, not a child of the scheduler
    groups = {path.stem: os.getpgid(int(path.read_text())) for path in pids.glob("*.pid")}
    assert groups["celery-worker"] != groups["scheduler"]
    # every server of the stack listens on 127.0.0.1 only (no log servers: --skip-serve-logs)
    sockets = listening(in_groups(set(groups.values())))
    ports = {f"127.0.0.1:{celery_env[f'RECOPS_{name}_PORT']}" for name in ("AIRFLOW", "MLFLOW")}
    assert ports <= sockets and {s.rsplit(":", 1)[0] for s in sockets} == {"127.0.0.1"}, sockets

    stack_up_s = time.monotonic() - started

    command = [str(VENV_BIN / "python"), str(CHECK), "--dates", DAY, "--ingest-only",
               "--ingest-tasks", "fetch", "--expect-worker", worker, "--timeout", "240"]  # fmt: skip
    check = run(command, celery_env, timeout=300)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    summary = json.loads(check.stdout)
    (tasks,) = summary["ingest_tasks"].values()
    fetch = next(t for t in tasks if t["task_id"] == "fetch")
    assert (fetch["state"], fetch["hostname"], fetch["try_number"]) == ("success", worker, 1)
    assert summary["not_on_expected_worker"] == []
    checked_s = time.monotonic() - started

    down = run(["bash", str(STACK), "down"], celery_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert "stopped celery-worker" in down.stdout
    assert processes_with(f"RECOPS_PROJECT_DIR={celery_env['RECOPS_PROJECT_DIR']}") == []
    assert in_groups(set(groups.values())) == set(), "a process of the stack outlived stack-down"
    assert run(["bash", str(STACK), "status"], celery_env, timeout=60).returncode == 3
    print(f"stack up {stack_up_s:.1f} s, fetch on {worker} done at {checked_s:.1f} s, "
          f"down at {time.monotonic() - started:.1f} s")  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("RECOPS_STACK_EXECUTOR", "kubernetes", "RECOPS_STACK_EXECUTOR must be local or celery"),
        ("RECOPS_WORKER_NAME", "worker one", "RECOPS_WORKER_NAME must be letters, digits"),
        ("RECOPS_CELERY_QUEUE", "-q", "RECOPS_CELERY_QUEUE must be letters, digits"),
    ],
)
def test_stack_refuses_a_bad_setting(tmp_path: Path, variable: str, value: str, message: str) -> None:
    env = {**clean_env(), "RECOPS_RUNTIME_DIR": str(tmp_path / "runtime"), variable: value}
    proc = run(["bash", str(STACK), "up"], env, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "runtime").exists(), "nothing is started or written for a bad setting"


def test_stack_env_names_the_celery_broker_and_queue(tmp_path: Path) -> None:
    env = {
        **clean_env(),
        "RECOPS_RUNTIME_DIR": str(tmp_path / "runtime"),
        "RECOPS_STACK_EXECUTOR": "celery",
        "RECOPS_CELERY_QUEUE": "q1",
    }
    celery = run(["bash", str(STACK), "env"], env, timeout=60).stdout
    assert "export AIRFLOW__CORE__EXECUTOR=CeleryExecutor" in celery
    assert 'export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:6379/9"' in celery
    assert "export AIRFLOW__OPERATORS__DEFAULT_QUEUE=q1" in celery
    env.pop("RECOPS_STACK_EXECUTOR")
    local = run(["bash", str(STACK), "env"], env, timeout=60).stdout
    assert "export AIRFLOW__CORE__EXECUTOR=LocalExecutor" in local
    assert "CELERY" not in local
