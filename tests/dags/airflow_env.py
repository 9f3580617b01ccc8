"""The Airflow configuration the DAG tests (and their subprocesses) run with.

Airflow reads its configuration from the environment when it is first imported, so
``tests/dags/conftest.py`` applies :func:`airflow_env` when it is loaded, before any test imports Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO_ROOT / "dags"
VENV_BIN = Path(sys.executable).parent
DAG_IDS = ("recops_ingest", "recops_train", "recops_monitor", "recops_feedback")
DVC_POOL = "recops_dvc"


def airflow_env(home: Path, sql_alchemy_conn: str) -> dict[str, str]:
    """Variables for an Airflow that keeps its state under ``home`` and parses this repository's dags/."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }


def migrate(env: dict[str, str], timeout_s: int = 300) -> None:
    """``airflow db migrate`` with ``env`` (on top of this process's environment); fail with its output."""
    proc = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise AssertionError(f"airflow db migrate failed ({proc.returncode}):\n{output}")
