#!/usr/bin/env python3
"""Drive the running local stack through the Airflow REST API and check the workflow end to end.

    infra/scripts/stack_check.py --dates 2026-01-19 2026-01-20 2026-01-21
    infra/scripts/stack_check.py --backfill 2026-01-19 2026-01-21
    infra/scripts/stack_check.py --dates 2026-01-01 --ingest-only --expect-worker recops-worker-1

1. gets a JWT (``POST /auth/token``) as ``admin`` with the password ``stack.sh up`` generated;
2. waits until the DAG processor has parsed the recops DAGs, unpauses ``recops_train``;
3. triggers ``recops_ingest`` once per date (``POST /api/v2/dags/recops_ingest/dagRuns`` with that logical
   date) while the DAG is still paused, then unpauses it (catch-up finds those dates taken);
4. waits for the ingest runs, then for the training the ``recops_published_data`` Asset started;
5. checks that the registry has a ``champion`` (MLflow REST API) and prints a JSON summary: the runs, the
   mapped training tasks (with the host that ran them), and the orchestration overhead of the last train
   run (its wall time divided by the sum of its tasks' own durations).

Exit 0 when every ingest run and the last train run succeeded and a champion exists; 1 otherwise.

``--ingest-only`` stops after step 4's ingest runs (the summary lists their task instances; training is left
paused); with ``--ingest-tasks fetch`` it waits only until those tasks of each ingest run are done (the
quick check of ``tests/dags/test_celery.py``; the rest of the run goes on). ``--expect-worker NAME`` (the
CeleryExecutor stack, ``RECOPS_STACK_EXECUTOR=celery``) also fails unless every task instance of the checked
runs that started ran on the worker named NAME (``RECOPS_WORKER_NAME``): the ``hostname`` Airflow records on
each task instance.

With ``--backfill FROM TO`` it instead runs ``airflow backfill create --reprocess-behavior completed`` over
days already published (in the stack's environment, ``<runtime>/stack/env.sh``) and checks that the backfill
is idempotent: every run succeeds, publishes ``unchanged``, announces nothing, and no training starts.
Standard library only, so it runs with any Python 3.11. Reads ``<runtime>/airflow/passwords.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

FINISHED = {"success", "failed"}
#: Task instance states past the start of the task (a host ran it).
RAN = {"running", "success", "failed", "up_for_retry", "up_for_reschedule", "deferred", "restarting"}
TI_DONE = {"success", "failed", "skipped", "upstream_failed", "removed"}


class Api:
    """A tiny JSON client with a bearer token."""

    def __init__(self, base: str, token: str = "") -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None


def log(message: str) -> None:
    sys.stderr.write(f"[{datetime.now().strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def wait(what: str, probe: Any, timeout_s: float, every_s: float = 3.0) -> Any:
    """Call ``probe`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            found = probe()
        except urllib.error.HTTPError as exc:
            if exc.code not in (404, 409):
                raise
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def stack_environment(runtime: Path) -> dict[str, str]:
    """The stack's environment (``<runtime>/stack/env.sh``, written by ``stack.sh up``) over this one."""
    env = dict(os.environ)
    for line in (runtime / "stack" / "env.sh").read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value.strip('"').replace("${PATH}", os.environ.get("PATH", ""))
    return env


def task_rows(api: Api, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The task instances of one DAG run: ids, state, tries, the host (worker) that ran it and its timings."""
    quoted = urllib.parse.quote(run_id, safe="")
    tis = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=100")["task_instances"]
    rows = [
        {
            "task_id": t["task_id"],
            "map_index": t["map_index"],
            "rendered_map_index": t.get("rendered_map_index"),
            "state": t["state"],
            "try_number": t.get("try_number"),
            "hostname": t.get("hostname"),
            "duration_s": t.get("duration"),
            "scheduled_when": t.get("scheduled_when"),
            "queued_when": t.get("queued_when"),
            "start_date": t.get("start_date"),
            "end_date": t.get("end_date"),
        }
        for t in tis
    ]
    return sorted(rows, key=lambda t: (t["task_id"], t["map_index"]))


def other_hosts(rows: list[dict[str, Any]], worker: str | None) -> list[str]:
    """``task_id[map_index]@host`` of every task instance that ran but not on ``worker`` (none when unset)."""
    if not worker:
        return []
    ran = [t for t in rows if t["state"] in RAN]
    return [f"{t['task_id']}[{t['map_index']}]@{t['hostname']}" for t in ran if t["hostname"] != worker]


def published_events(api: Api) -> int:
    events = api.call("GET", "/api/v2/assets/events?limit=1000")["asset_events"]
    return sum(1 for e in events if e.get("source_dag_id") == "recops_ingest")


def runs_between(api: Api, dag_id: str, first: str, last: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode(
        {"logical_date_gte": f"{first}T00:00:00Z", "logical_date_lte": f"{last}T00:00:00Z", "limit": 100}
    )
    return list(api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"])


def backfill_check(api: Api, runtime: Path, first: str, last: str, left: Any) -> int:
    """Run ``airflow backfill create --reprocess-behavior completed`` over published days and check that
    every run succeeded, published ``unchanged`` (``announce`` skipped), sent no Asset event and started no
    training."""
    import subprocess

    events_before = published_events(api)
    trains_before = api.call("GET", "/api/v2/dags/recops_train/dagRuns?limit=1")["total_entries"]
    api.call("PATCH", "/api/v2/dags/recops_ingest", {"is_paused": False})
    command = ["airflow", "backfill", "create", "--dag-id", "recops_ingest", "--from-date", first,
               "--to-date", last, "--reprocess-behavior", "completed"]  # fmt: skip
    log("$ " + " ".join(command))
    proc = subprocess.run(
        command, env=stack_environment(runtime), capture_output=True, text=True, timeout=300, check=False
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        return 1

    def finished() -> Any:
        backfills = api.call("GET", "/api/v2/backfills?dag_id=recops_ingest&limit=100")["backfills"]
        newest = max(backfills, key=lambda b: b["id"]) if backfills else None
        return newest if newest and newest.get("completed_at") else None

    backfill = wait("the backfill", finished, left(), every_s=5.0)
    runs = runs_between(api, "recops_ingest", first, last)
    states = {}
    for run in runs:
        quoted = urllib.parse.quote(run["dag_run_id"], safe="")
        tis = api.call("GET", f"/api/v2/dags/recops_ingest/dagRuns/{quoted}/taskInstances")["task_instances"]
        states[run["logical_date"][:10]] = {"run": run["state"], **{t["task_id"]: t["state"] for t in tis}}
    time.sleep(15)  # give the scheduler the time to (wrongly) start a training run
    summary = {
        "backfill_id": backfill["id"],
        "runs": states,
        "published_events_before": events_before,
        "published_events_after": published_events(api),
        "train_runs_before": trains_before,
        "train_runs_after": api.call("GET", "/api/v2/dags/recops_train/dagRuns?limit=1")["total_entries"],
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    ok = (
        len(states) > 0
        and all(s["run"] == "success" and s.get("announce") == "skipped" for s in states.values())
        and summary["published_events_after"] == events_before
        and summary["train_runs_after"] == trains_before
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dates", nargs="+", help="logical dates to ingest (YYYY-MM-DD)")
    parser.add_argument(
        "--backfill",
        nargs=2,
        metavar=("FROM", "TO"),
        help="instead: `airflow backfill create` over FROM..TO again and check it changed nothing",
    )
    parser.add_argument(
        "--airflow", default=f"http://127.0.0.1:{os.environ.get('RECOPS_AIRFLOW_PORT', '8080')}"
    )
    parser.add_argument(
        "--mlflow", default=f"http://127.0.0.1:{os.environ.get('RECOPS_MLFLOW_PORT', '5000')}"
    )
    parser.add_argument("--runtime", default=os.environ.get("RECOPS_RUNTIME_DIR", "runtime"))
    parser.add_argument("--model", default=os.environ.get("RECOPS_MODEL_NAME", "recops-recommender"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole check")
    parser.add_argument(
        "--ingest-only", action="store_true", help="check the ingest runs only (training stays paused)"
    )
    parser.add_argument(
        "--ingest-tasks", nargs="+", metavar="TASK", help="with --ingest-only: wait only for these tasks"
    )
    parser.add_argument(
        "--expect-worker", metavar="NAME", help="every task instance must have run on this worker (Celery)"
    )
    args = parser.parse_args()
    if args.ingest_tasks and not args.ingest_only:
        parser.error("--ingest-tasks goes with --ingest-only")
    started = time.monotonic()

    def left() -> float:
        return max(float(args.timeout) - (time.monotonic() - started), 1.0)

    password = json.loads((Path(args.runtime) / "airflow" / "passwords.json").read_text())["admin"]
    token = Api(args.airflow).call("POST", "/auth/token", {"username": "admin", "password": password})
    api = Api(args.airflow, token["access_token"])

    for dag_id in ("recops_ingest", "recops_train"):
        wait(f"{dag_id} to be parsed", lambda d=dag_id: api.call("GET", f"/api/v2/dags/{d}"), left(), 1.0)
    if args.backfill:
        return backfill_check(api, Path(args.runtime), args.backfill[0], args.backfill[1], left)
    if not args.dates:
        parser.error("give --dates or --backfill")
    if not args.ingest_only:
        api.call("PATCH", "/api/v2/dags/recops_train", {"is_paused": False})

    run_ids = []
    for day in sorted(args.dates):
        body = {"logical_date": f"{day}T00:00:00Z", "conf": {}, "note": "stack_check.py"}
        try:
            run = api.call("POST", "/api/v2/dags/recops_ingest/dagRuns", body)
            run_ids.append(run["dag_run_id"])
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: a run for that logical date exists (a second check): wait for it
                raise
            runs = api.call("GET", f"/api/v2/dags/recops_ingest/dagRuns?logical_date_gte={day}T00:00:00Z"
                                   f"&logical_date_lte={day}T00:00:00Z")["dag_runs"]  # fmt: skip
            run_ids.append(runs[0]["dag_run_id"])
        log(f"recops_ingest {day}: {run_ids[-1]}")
    api.call("PATCH", "/api/v2/dags/recops_ingest", {"is_paused": False})

    def tasks_done(run_id: str) -> bool:
        states = {t["task_id"]: t["state"] for t in task_rows(api, "recops_ingest", run_id)}
        return all(states.get(task) in TI_DONE for task in args.ingest_tasks)

    ingest_runs = []
    for run_id in run_ids:
        path = f"/api/v2/dags/recops_ingest/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        if args.ingest_tasks:
            wait(f"{args.ingest_tasks} of {run_id}", lambda r=run_id: tasks_done(r), left(), 1.0)
            run = api.call("GET", path)
        else:
            run = wait(
                f"ingest run {run_id}",
                lambda p=path: (r := api.call("GET", p))["state"] in FINISHED and r,
                left(),
            )
        log(f"recops_ingest {run_id}: {run['state']}")
        ingest_runs.append(run)
    ingest_tasks = {r["dag_run_id"]: task_rows(api, "recops_ingest", r["dag_run_id"]) for r in ingest_runs}
    elsewhere = [host for rows in ingest_tasks.values() for host in other_hosts(rows, args.expect_worker)]
    if args.ingest_only:
        if args.ingest_tasks:
            ok = all(t["state"] == "success" for rows in ingest_tasks.values() for t in rows
                     if t["task_id"] in args.ingest_tasks)  # fmt: skip
        else:
            ok = all(r["state"] == "success" for r in ingest_runs)
        summary = {
            "ingest": {r["dag_run_id"]: r["state"] for r in ingest_runs},
            "ingest_tasks": ingest_tasks,
            "expected_worker": args.expect_worker,
            "not_on_expected_worker": elsewhere,
        }
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return 0 if ok and not elsewhere else 1

    def train_done() -> Any:
        runs = api.call("GET", "/api/v2/dags/recops_train/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
        if not runs or any(r["state"] not in FINISHED for r in runs):
            return None  # a run is queued or running: wait for the last one
        return runs[0] if runs[0]["run_after"] >= ingest_runs[0]["start_date"] else None

    last_ingest_end = max(r["end_date"] for r in ingest_runs)
    train = wait("the Asset-triggered training", train_done, left(), every_s=5.0)
    log(f"recops_train {train['dag_run_id']}: {train['state']}")
    train_tasks = task_rows(api, "recops_train", train["dag_run_id"])
    elsewhere += other_hosts(train_tasks, args.expect_worker)
    own = sum(float(t["duration_s"] or 0.0) for t in train_tasks)
    wall = seconds(train["start_date"], train["end_date"])

    mlflow = Api(args.mlflow)
    query = urllib.parse.urlencode({"name": args.model, "alias": "champion"})
    try:
        champion = mlflow.call("GET", f"/api/2.0/mlflow/registered-models/alias?{query}")["model_version"]
    except urllib.error.HTTPError:
        champion = None

    summary = {
        "ingest": {r["dag_run_id"]: r["state"] for r in ingest_runs},
        "last_ingest_end": last_ingest_end,
        "train_run": train["dag_run_id"],
        "train_state": train["state"],
        "train_triggered_by": train.get("run_type"),
        "ingest_tasks": ingest_tasks,
        "train_tasks": train_tasks,
        "train_start": train["start_date"],
        "train_end": train["end_date"],
        "train_wall_s": round(wall, 1),
        "train_task_seconds": round(own, 1),
        "orchestration_overhead": round(wall / own, 3) if own else None,
        "champion_version": int(champion["version"]) if champion else None,
        "champion_run_id": champion.get("run_id") if champion else None,
        "expected_worker": args.expect_worker,
        "not_on_expected_worker": elsewhere,
    }
    sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    ok = (
        all(r["state"] == "success" for r in ingest_runs)
        and train["state"] == "success"
        and champion is not None
        and not elsewhere
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
