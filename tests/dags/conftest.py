"""Airflow for the DAG tests: a throw-away ``AIRFLOW_HOME`` with SQLite metadata, parsing this repo's dags/.

The environment is set when this file is loaded (Airflow reads its configuration on first import), and the
folder is deleted at the end of the session. Fixtures:

* ``airflow_db``: the metadata database, migrated once per session (``airflow db migrate``);
* ``dagbag``: every DAG file parsed as the DAG processor does (the dags folder on ``sys.path``, the
  ``recops_dvc`` pool known).

Ordered-step modules (``STEPS = True``) skip their later tests once one fails, like tests/e2e.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.dags.airflow_env import DAGS_DIR, DVC_POOL, airflow_env, migrate

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="recops-airflow-"))
SQLITE_URL = f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}"
os.environ.update(airflow_env(AIRFLOW_HOME, SQLITE_URL))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Remember the first failed step of an ordered module so its later steps are skipped."""
    module = item.getparent(pytest.Module)
    if module is None or not getattr(module.obj, "STEPS", False):
        return
    failed = call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception)
    if failed and not hasattr(module, "_dag_failed_step"):
        module._dag_failed_step = item.name  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    module = item.getparent(pytest.Module)
    failed = getattr(module, "_dag_failed_step", None)
    if failed is not None:
        pytest.skip(f"an earlier step of this flow failed: {failed}")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The session's Airflow home with a migrated SQLite metadata database."""
    migrate(airflow_env(AIRFLOW_HOME, SQLITE_URL))
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag() -> Any:
    """The DAG files parsed like the DAG processor parses them (unknown pools are import errors)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(
        dag_folder=DAGS_DIR,
        bundle_path=DAGS_DIR,
        bundle_name="dags-folder",
        known_pools={"default_pool", DVC_POOL},
    )
