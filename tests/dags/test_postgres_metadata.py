"""One DAG run against a PostgreSQL metadata database (what ``make stack-up`` uses), in a subprocess:
Airflow binds its metadata database when it is imported, and this test process is bound to SQLite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.dags.airflow_env import REPO_ROOT, airflow_env, migrate
from tests.dags.project import make_dag_project

pytestmark = pytest.mark.integration

_SCRIPT = """
import json, sys
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[1])
from tests.dags.project import asset_events, parse_dags, run_dag, task_states, xcom
from airflow.settings import engine
run = run_dag(parse_dags()["recops_ingest"], datetime(2026, 1, 1, tzinfo=UTC))
print(json.dumps({"dialect": engine.dialect.name, "state": str(run.state), "tasks": task_states(run),
                  "published": xcom(run, "publish")["info"]["status"],
                  "events": len(asset_events("recops_published_data"))}))
"""


def test_an_ingest_run_on_postgresql_metadata(make_pg_database: Callable[[], str], tmp_path: Path) -> None:
    url = make_pg_database()
    project = make_dag_project(tmp_path / "project", {"generate.days": 3, "generate.users": 100,
                                                      "generate.items": 60})  # fmt: skip
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RECOPS_", "AIRFLOW"))},
        **project.env,
        **airflow_env(tmp_path / "airflow", url),
    }
    migrate(env)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(REPO_ROOT)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "dialect": "postgresql",
        "state": "success",
        "tasks": {
            "announce": ["success"],
            "fetch": ["success"],
            "online_seed": ["success"],
            "publish": ["success"],
            "validate": ["success"],
        },
        "published": "published",
        "events": 1,
    }
    assert (project.root / "data" / "2026-01-01" / "events.parquet").is_file()
