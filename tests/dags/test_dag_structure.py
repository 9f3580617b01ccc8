"""The DAG files as designed: they parse, import fast and light, and have the tags, retries, pools,
schedules and task graphs the docs describe (docs/operations.md, "Airflow")."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from tests.dags.airflow_env import DAG_IDS, DAGS_DIR, DVC_POOL, REPO_ROOT

DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if p.name != "recops_common.py")
#: Modules a DAG file must not import at parse time (the work is imported inside the task bodies).
HEAVY = ("pandas", "numpy", "mlflow", "great_expectations", "dvc", "torch", "sklearn", "scipy", "implicit",
         "pyarrow", "matplotlib", "core", "models", "registry", "pipelines")  # fmt: skip
IMPORT_BUDGET_S = 1.0

_PROBE = """
import importlib.util, json, sys, time
sys.path.insert(0, sys.argv[1])
# What the DAG processor has loaded before it parses a file: the Task SDK names every DAG file uses.
from airflow.sdk import DAG, Asset, Param, dag, task  # noqa: F401
before = set(sys.modules)
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "modules": sorted(set(sys.modules) - before)}))
"""


def test_dagbag_has_every_dag_and_no_import_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors
    assert sorted(dagbag.dag_ids) == sorted(DAG_IDS)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_fast_without_heavy_modules(path: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(DAGS_DIR), str(path)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    heavy = sorted({m for m in probe["modules"] if m.split(".")[0] in HEAVY})
    assert heavy == [], f"{path.name} imports {heavy} at parse time: import them inside the task bodies"
    assert probe["seconds"] < IMPORT_BUDGET_S, f"{path.name} took {probe['seconds']:.2f} s to import"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_tags_retries_and_docs(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert {"recops", dag_id.removeprefix("recops_")} <= set(dag.tags)
    assert dag.doc_md and dag_id in dag.doc_md
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"
        assert task.retry_exponential_backoff > 0, f"{dag_id}.{task.task_id} has no backoff"
        assert task.execution_timeout is not None and task.execution_timeout <= timedelta(hours=2)


def graph(dag: Any) -> dict[str, set[str]]:
    return {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}


def pools(dag: Any) -> dict[str, str]:
    return {task.task_id: task.pool for task in dag.tasks}


def test_ingest_is_daily_with_catchup_and_a_linear_gate(dagbag: Any) -> None:
    dag = dagbag.dags["recops_ingest"]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 0 * * *", "UTC")
    assert dag.catchup is True and dag.max_active_runs == 1
    assert graph(dag) == {
        "fetch": set(),
        "validate": {"fetch"},
        "publish": {"validate"},
        "announce": {"publish"},
        "online_seed": {"publish"},
    }
    assert pools(dag) == {"fetch": "default_pool", "validate": "default_pool", "publish": DVC_POOL,
                          "announce": "default_pool", "online_seed": DVC_POOL}  # fmt: skip
    outlets = {t.task_id: [a.name for a in t.outlets] for t in dag.tasks}
    assert outlets == {"fetch": [], "validate": [], "publish": [], "announce": ["recops_published_data"],
                       "online_seed": []}  # fmt: skip
    assert dict(dag.params) == {"source": "generator", "landing": "", "replace": False}


def test_train_runs_on_the_assets_maps_families_and_serialises_dvc(dagbag: Any) -> None:
    dag = dagbag.dags["recops_train"]
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    scheduled_on = sorted(a.name for a in dag.timetable.asset_condition.objects)
    assert scheduled_on == ["recops_published_data", "recops_retrain_request"]
    assert dag.catchup is False and dag.max_active_runs == 1
    assert graph(dag) == {
        "pull_data": set(),
        "plan": {"pull_data"},
        "features": {"plan"},
        "train": {"plan", "features"},
        "evaluate": {"train"},
        "register": {"evaluate"},
        "promote": {"register"},
        "online_seed": {"promote"},
    }
    dvc_tasks = {t for t, pool in pools(dag).items() if pool == DVC_POOL}
    assert dvc_tasks == {"pull_data", "features", "train", "evaluate", "online_seed"}
    train = dag.get_task("train")
    assert type(train).__name__ == "DecoratedMappedOperator", "train must be mapped over the families"
    assert dict(dag.params) == {"families": []}


def test_monitor_is_daily_and_requests_retraining_through_the_asset(dagbag: Any) -> None:
    dag = dagbag.dags["recops_monitor"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 0 * * *", "UTC")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert graph(dag) == {"measure": set(), "request_retrain": {"measure"}}
    outlets = {t.task_id: [a.name for a in t.outlets] for t in dag.tasks}
    assert outlets == {"measure": [], "request_retrain": ["recops_retrain_request"]}


def test_feedback_is_daily_and_goes_through_the_gate_into_the_published_data(dagbag: Any) -> None:
    dag = dagbag.dags["recops_feedback"]
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 0 * * *", "UTC")
    assert dag.catchup is False and dag.max_active_runs == 1
    assert graph(dag) == {
        "export": set(),
        "validate": {"export"},
        "publish": {"validate"},
        "announce": {"publish"},
        "online_seed": {"publish"},
    }
    assert pools(dag) == {"export": "default_pool", "validate": "default_pool", "publish": DVC_POOL,
                          "announce": "default_pool", "online_seed": DVC_POOL}  # fmt: skip
    outlets = {t.task_id: [a.name for a in t.outlets] for t in dag.tasks}
    assert outlets == {"export": [], "validate": [], "publish": [], "announce": ["recops_published_data"],
                       "online_seed": []}  # fmt: skip
    assert dict(dag.params) == {"lag_minutes": 10}


def test_the_assets_connect_the_dags(dagbag: Any) -> None:
    """What ingest, feedback and monitor update is exactly what train is scheduled on."""
    producers = ("recops_ingest", "recops_feedback", "recops_monitor")
    produced = {a.name for d in producers for t in dagbag.dags[d].tasks for a in t.outlets}
    consumed = {a.name for a in dagbag.dags["recops_train"].timetable.asset_condition.objects}
    assert produced == consumed == {"recops_published_data", "recops_retrain_request"}


ALLOWED_IMPORTS = {
    *("__future__", "typing", "os", "datetime", "pendulum"),
    *("airflow.sdk", "airflow.sdk.exceptions", "recops_common", "pipelines.orchestration"),
}


@pytest.mark.parametrize("path", sorted(DAGS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_dag_files_only_wire(path: Any) -> None:
    """DAG files import the Task SDK and the orchestration functions, nothing else of the project."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported <= ALLOWED_IMPORTS, f"{path.name} imports {sorted(imported - ALLOWED_IMPORTS)}"
