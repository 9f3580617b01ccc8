"""Orchestration overhead of ``recops_train`` on LocalExecutor: the run's wall time over its tasks' own time.

    .venv/bin/python bench/bench_orchestration.py                  # the default data (params.yaml generate:)
    .venv/bin/python bench/bench_orchestration.py --set generate.days=21 --set generate.users=600 \
        --set generate.items=300 --set features.valid_days=3 --set features.test_days=4   # small, quicker
    .venv/bin/python bench/bench_orchestration.py \
        --set 'train.families=[popularity, recent_popularity, itemknn, als]'   # default data, 4 families

1. copies the working tree into a scratch folder (as the DAG tests do: ``tests/dags/project.py``) with the
   ``--set`` params, and publishes the generated history but its last day in one go
   (``pipelines.orchestration.tasks.ingest_history``);
2. starts the real local stack there (``infra/scripts/stack.sh up``: api-server, scheduler, dag-processor,
   triggerer, LocalExecutor, and an MLflow server) on two fresh PostgreSQL databases and free ports, all on
   127.0.0.1;
3. runs ``infra/scripts/stack_check.py --dates <last day>``: the ingest run of the last day is triggered
   through the REST API, its Asset event starts ``recops_train`` (pull_data, plan, features, train x
   families, evaluate, register, promote), a champion is promoted;
4. prints the train run's wall time (start to end of the DAG run), the sum of its task instances' durations
   and their ratio (the overhead: scheduling, queueing and task start-up between the steps), then stops the
   stack and drops the databases.

Needs the local PostgreSQL (``RECOPS_TEST_PG_ADMIN_URL``, default
``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``). Results: docs/benchmarks.md, "Orchestration".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VENV_BIN = Path(sys.executable).parent
STACK = REPO / "infra" / "scripts" / "stack.sh"
CHECK = REPO / "infra" / "scripts" / "stack_check.py"
PG_ADMIN = os.environ.get(
    "RECOPS_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_admin(statement: str) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN).set(drivername="postgresql")
    conn = psycopg2.connect(url.render_as_string(hide_password=False), connect_timeout=5)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN).set(drivername="postgresql+psycopg2", database=name)
    return url.render_as_string(hide_password=False)


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not value:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def publish_history(root: Path) -> tuple[str, int]:
    """Publish every generated day but the last; return the last day and how many were published."""
    from core.settings import get_settings
    from pipelines.orchestration import tasks
    from pipelines.orchestration.sources import generator_period
    from pipelines.params import load_params

    params = load_params(get_settings().params_file)
    first, last = generator_period(params.generate)
    started = time.perf_counter()
    history = tasks.ingest_history(
        first_day=first.isoformat(), last_day=(last - timedelta(days=1)).isoformat()
    )
    batches = len(history["info"]["batches"])
    print(f"history: {batches} days published in {time.perf_counter() - started:.1f} s ({root})")
    return last.isoformat(), batches


def gap(start: str | None, end: str | None) -> float:
    """Seconds from one ISO 8601 instant to another (0 when one is missing)."""
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", action="append", default=[], help="params.yaml KEY=VALUE (dotted key)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch project (and print where)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds for the stack check")
    args = parser.parse_args()

    from tests.dags.project import make_dag_project, project_environment

    scratch = Path(tempfile.mkdtemp(prefix="bench-orchestration-"))
    databases = [f"recops_bench_{secrets.token_hex(5)}" for _ in range(2)]
    env: dict[str, str] = {}
    try:
        project = make_dag_project(scratch / "project", parse_sets(args.set))
        with project_environment(project):
            last_day, history_days = publish_history(project.root)
        for name in databases:
            pg_admin(f'CREATE DATABASE "{name}"')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOPS_", "AIRFLOW", "MLFLOW_"))}
        env.update(
            {
                "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                "RECOPS_PROJECT_DIR": str(project.root),
                "RECOPS_RUNTIME_DIR": str(project.root / "runtime"),
                "RECOPS_AIRFLOW_DB_URL": database_url(databases[0]),
                "RECOPS_MLFLOW_BACKEND_URI": database_url(databases[1]),
                "RECOPS_AIRFLOW_PORT": str(free_port()),
                "RECOPS_MLFLOW_PORT": str(free_port()),
                "RECOPS_INGEST_START": last_day,
                "RECOPS_INGEST_END": last_day,
            }
        )
        started = time.perf_counter()
        up = run(["bash", str(STACK), "up"], env, timeout=400)
        if up.returncode != 0:
            sys.stderr.write(up.stdout[-3000:] + up.stderr[-3000:])
            return 1
        print(f"stack up in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        command = [str(VENV_BIN / "python"), str(CHECK), "--dates", last_day, "--timeout", str(args.timeout)]
        check = run(command, env, timeout=args.timeout + 120)
        if check.returncode != 0:
            sys.stderr.write(check.stdout[-4000:] + check.stderr[-4000:])
            return 1
        summary = json.loads(check.stdout)
        print(f"ingest of {last_day} + Asset-triggered training in {time.perf_counter() - started:.1f} s")
    finally:
        if env:
            run(["bash", str(STACK), "down"], env, timeout=120)
        for name in databases:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # the database may never have been created
                print(f"(could not drop {name}: {exc})")
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {os.getloadavg()[0]:.1f}, python {platform.python_version()}")  # fmt: skip
    print(
        f"data: {history_days + 1} days ({history_days} published up front, the last through recops_ingest)"
    )
    print(f"recops_train {summary['train_run']} ({summary['train_triggered_by']}): {summary['train_state']}, "
          f"champion v{summary['champion_version']}")  # fmt: skip
    # Where the time between the steps goes: from the moment a task could start (the run's start, or the
    # end of the task before it; the DVC pool and the dependencies make the chain sequential) to scheduled,
    # queued, and started (the executor and the task process starting up).
    header = ("task", "state", "seconds", "waited", "->sched", "->queued", "->start")
    print("{:<28} {:<10} {:>8} {:>7} {:>8} {:>8} {:>8}".format(*header))
    order = ["pull_data", "plan", "features", "train", "evaluate", "register", "promote"]
    tasks = sorted(summary["train_tasks"], key=lambda t: (t["start_date"] or "", order.index(t["task_id"])))
    ready = summary["train_start"]
    waits = 0.0
    for task in tasks:
        name = task["task_id"] + (f"[{task['rendered_map_index']}]" if task["map_index"] >= 0 else "")
        if (task.get("try_number") or 1) > 1:
            name += f" (try {task['try_number']})"
        waited = gap(ready, task["start_date"])
        waits += waited
        scheduled, queued, start = task["scheduled_when"], task["queued_when"], task["start_date"]
        print(
            f"{name:<28} {task['state']:<10} {float(task['duration_s'] or 0):>8.1f} {waited:>7.1f} "
            f"{gap(ready, scheduled):>8.1f} {gap(scheduled, queued):>8.1f} {gap(queued, start):>8.1f}"
        )
        ready = max(ready, task["end_date"] or ready)
    print(
        f"waits between the steps {waits:.1f} s; after the last one {gap(ready, summary['train_end']):.1f} s"
    )
    print(
        f"wall {summary['train_wall_s']:.1f} s / tasks {summary['train_task_seconds']:.1f} s = "
        f"orchestration overhead {summary['orchestration_overhead']:.3f}x"
    )
    return 0 if summary["train_state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
