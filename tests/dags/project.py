"""A throw-away project copy for the DAG tests, plus helpers to run a DAG and read what it did.

Like ``tests/e2e`` (whose :class:`~tests.e2e.conftest.E2EProject` it reuses), but the copy also takes the
files git does not ignore that are not committed yet, so the DAG tests see the working tree as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.e2e.conftest import E2EProject, copy_tracked, git, project_env

REPO_ROOT = Path(__file__).resolve().parents[2]


def untracked_files(repo: Path) -> list[Path]:
    """Files git neither tracks nor ignores (new modules not committed yet)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, check=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    return [Path(p) for p in out.split("\0") if p and (repo / p).is_file()]


def make_dag_project(dest: Path, params: Mapping[str, Any]) -> E2EProject:
    """A committed copy of the working tree in ``dest`` with ``params`` (dotted keys) set."""
    dest.mkdir(parents=True, exist_ok=True)
    copy_tracked(REPO_ROOT, dest)
    for rel in untracked_files(REPO_ROOT):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, dest / rel)
    project = E2EProject(root=dest.resolve(), env=project_env(dest.resolve()))
    project.set_params(params)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "copy of recops for the DAG tests")
    return project


@contextmanager
def project_environment(project: E2EProject) -> Iterator[None]:
    """Point this process (the tasks ``dag.test()`` runs in-process) at the project copy."""
    from core.settings import get_settings

    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("RECOPS_")]:
        del os.environ[key]
    os.environ.update(project.env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def parse_dags() -> dict[str, Any]:
    """dag id -> DAG, parsed from dags/ as the DAG processor does (fails on import errors)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    from tests.dags.airflow_env import DAGS_DIR

    bag = BundleDagBag(dag_folder=DAGS_DIR, bundle_path=DAGS_DIR, bundle_name="dags-folder")
    assert bag.import_errors == {}, bag.import_errors
    return dict(bag.dags)


def run_dag(dag: Any, logical_date: datetime, conf: Mapping[str, Any] | None = None) -> Any:
    """``dag.test()`` of the DAG run ``manual__<logical_date>``.

    The same logical date again replaces that DAG run's state and runs it again under the same run id:
    for the tasks (keyed on the run id) that is a cleared and re-run DAG run.
    """
    return dag.test(logical_date=logical_date, run_after=logical_date, run_conf=dict(conf or {}))


def task_states(dag_run: Any) -> dict[str, list[str]]:
    """task id -> the states of its task instances (one per map index), from the metadata database."""
    from airflow.utils.session import create_session

    out: dict[str, list[str]] = {}
    with create_session() as session:
        for ti in sorted(dag_run.get_task_instances(session=session), key=lambda t: (t.task_id, t.map_index)):
            out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def task_instances(dag_run: Any, task_id: str) -> list[dict[str, Any]]:
    """The task instances of one task: map index, state, pool, try number, rendered map index."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = [t for t in dag_run.get_task_instances(session=session) if t.task_id == task_id]
        return [
            {"map_index": t.map_index, "state": str(t.state), "pool": t.pool, "try_number": t.try_number,
             "rendered_map_index": t.rendered_map_index}
            for t in sorted(tis, key=lambda t: t.map_index)
        ]  # fmt: skip


def xcom(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task pushed in this DAG run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == dag_run.dag_id,
                XComModel.run_id == dag_run.run_id,
                XComModel.task_id == task_id,
                XComModel.map_index == map_index,
                XComModel.key == "return_value",
            )
        ).first()
        if row is None:
            return None
        return XComModel.deserialize_value(row)


def asset_events(name: str) -> list[dict[str, Any]]:
    """Every event of the Asset ``name``: source DAG, run and task, and its extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
        return [
            {"dag_id": e.source_dag_id, "run_id": e.source_run_id, "task_id": e.source_task_id,
             "extra": dict(e.extra or {})}
            for e in rows
        ]  # fmt: skip
