#!/usr/bin/env python3
"""`make demo`, the Airflow part: the recops DAGs run with ``dag.test()`` on the embedded defaults.

    .venv/bin/python infra/scripts/demo_dags.py              # what `make demo` runs
    .venv/bin/python infra/scripts/demo_dags.py --dag-days 5 # more days through the ingest DAG

1. Airflow keeps its state under the runtime folder: ``AIRFLOW_HOME`` = ``RECOPS_AIRFLOW_HOME`` (default
   ``runtime/airflow``), metadata in ``RECOPS_AIRFLOW_DB_URL`` (default SQLite
   ``runtime/airflow/airflow.db``), migrated with ``airflow db migrate``; no example DAGs; the pool
   ``recops_dvc`` with one slot.
2. History: the generator's days before the last ``--dag-days`` go through the ingest steps in one go
   (:func:`pipelines.orchestration.tasks.ingest_history`: the same fetch, the same gate on every batch, one
   ``dvc add`` and one verified push), because a DAG run per day costs several seconds each.
3. ``recops_ingest`` runs for each of the last ``--dag-days`` days (``dag.test()`` of that logical date):
   fetch -> validate -> publish -> announce (an event of the Asset ``recops_published_data``).
4. A broken batch for the day after (negative prices, missing user ids) lands in a folder and goes through
   ``recops_ingest`` with ``source=landing``: the run must fail at ``validate`` (quarantined, no retry),
   ``publish`` and ``announce`` must not run.
5. ``recops_train`` runs (``dag.test()``; a scheduler would start it from the Asset event): pull_data ->
   plan -> features -> train (mapped over the families) -> evaluate -> register -> promote.

Each run prints one line per task (state and seconds). Exit 0 when every run ended as expected, 1 otherwise.
The runs stay in the metadata database: ``infra/scripts/demo_dags.py --ui`` serves them in the Airflow UI
(``airflow api-server`` on 127.0.0.1 reading that database; no scheduler, nothing runs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
BIN = Path(sys.executable).parent
DVC_POOL = "recops_dvc"
BAD_LANDING = "demo-bad"  # under the landing folder


def say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def airflow_env(home: Path, db_url: str) -> dict[str, str]:
    """The Airflow configuration of the demo (also what ``--ui`` serves)."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def configure() -> tuple[Any, Any]:
    """Settings and params; this process's environment set for Airflow (before Airflow is imported)."""
    from core.settings import get_settings
    from pipelines.params import load_params

    settings = get_settings()
    settings.ensure_runtime_dirs()
    os.environ.update(airflow_env(settings.airflow_home, settings.airflow_db_url))
    return settings, load_params(settings.params_file)


def migrate(home: Path) -> None:
    """``airflow db migrate`` (a never-migrated home fails); output in ``<home>/demo-migrate.log``."""
    log = home / "demo-migrate.log"
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        say(log.read_text(encoding="utf-8")[-3000:])
        raise SystemExit(f"airflow db migrate failed (log: {log})")
    say(f"airflow db migrate: {time.perf_counter() - started:.1f} s (log: {log})")


def ensure_pool() -> None:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(
        DVC_POOL,
        slots=1,
        description="DVC tasks of recops: one workspace, one dvc.lock (docs/operations.md)",
        include_deferred=False,
    )


@contextlib.contextmanager
def captured(log: Path) -> Iterator[None]:
    """Append what Airflow and the tasks print during a ``dag.test()`` to ``log`` instead of the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("a", encoding="utf-8") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def parse_dags() -> dict[str, Any]:
    """dag id -> DAG, parsed from dags/ as the DAG processor does (fails on import errors)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS, bundle_path=DAGS, bundle_name="dags-folder")
    if bag.import_errors:
        raise SystemExit(f"the DAG files do not import: {bag.import_errors}")
    return dict(bag.dags)


def task_rows(dag_run: Any) -> list[dict[str, Any]]:
    """Task id, map index (family), state and seconds of every task instance of a DAG run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = sorted(
            dag_run.get_task_instances(session=session), key=lambda t: (t.start_date is None, t.start_date)
        )
        return [
            {"task": t.task_id, "map": t.rendered_map_index if t.map_index >= 0 else None,
             "state": str(t.state), "seconds": float(t.duration or 0.0), "start": t.start_date,
             "end": t.end_date}
            for t in tis
        ]  # fmt: skip


def xcom(dag_run: Any, task_id: str, map_index: int = -1) -> Any:
    """The return value a task pushed in this DAG run (None if none)."""
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
        return None if row is None else XComModel.deserialize_value(row)


def record_real_start(dag_run: Any) -> None:
    """``dag.test()`` records the logical date as the run's start; record when its first task started, so
    the UI shows the run's real duration (a daily run of 2026-03-01 did not run for months)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.get(DagRun, dag_run.id)
        if row is None:
            return
        starts = [t.start_date for t in row.get_task_instances(session=session) if t.start_date is not None]
        if starts:
            row.start_date = min(starts)
            dag_run.start_date = row.start_date


def run(dag_id: str, logical_date: datetime, log: Path, conf: Mapping[str, Any] | None = None) -> Any:
    """``dag.test()`` of one logical date (the DAG parsed afresh: a run with ``conf`` changes its params)."""
    started = time.perf_counter()
    with captured(log):
        dag = parse_dags()[dag_id]
        dag_run = dag.test(logical_date=logical_date, run_after=logical_date, run_conf=dict(conf or {}))
    wall = time.perf_counter() - started
    record_real_start(dag_run)
    rows = task_rows(dag_run)
    say(f"  {dag_id} {dag_run.run_id}: {dag_run.state} in {wall:.1f} s")
    for row in rows:
        name = row["task"] + (f"[{row['map']}]" if row["map"] else "")
        say(f"    {name:<28} {row['state']:<16} {row['seconds']:6.1f} s")
    return dag_run


def expect(ok: bool, what: str, failures: list[str]) -> None:
    if not ok:
        failures.append(what)
        say(f"  UNEXPECTED: {what}")


def write_bad_batch(source: Path, target: Path, day: date) -> None:
    """The batch of ``source`` moved to ``day``, with negative prices and missing user ids."""
    import pandas as pd

    target.mkdir(parents=True, exist_ok=True)
    events = pd.read_parquet(source / "events.parquet")
    shift = pd.Timestamp(day, tz="UTC") - events["ts"].min().normalize()
    events["ts"] = events["ts"] + shift
    events["event_id"] = "bad-" + events["event_id"].astype("string")
    events.loc[events.index[:50], "price"] = -1.0  # negative prices
    events.loc[events.index[50:60], "user_id"] = None  # missing user ids
    events.to_parquet(target / "events.parquet", index=False)
    pd.read_parquet(source / "catalog.parquet").to_parquet(target / "catalog.parquet", index=False)


def at_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def main_demo(dag_days: int) -> int:
    settings, params = configure()
    home: Path = settings.airflow_home
    log = home / "demo-runs.log"
    migrate(home)
    ensure_pool()
    failures: list[str] = []

    from pipelines.orchestration import tasks
    from pipelines.orchestration.sources import generator_cache, generator_period

    first, last = generator_period(params.generate)
    dag_first = max(first, last - timedelta(days=dag_days - 1))
    say(f"Airflow home {home}; task logs of the runs below: {log}")

    if dag_first > first:
        history_last = dag_first - timedelta(days=1)
        say(
            f"\nhistory {first} .. {history_last}: the ingest steps in one go "
            "(pipelines.orchestration.tasks.ingest_history: fetch, gate, one dvc add + push)"
        )
        started = time.perf_counter()
        with captured(log):
            history = tasks.ingest_history(first_day=first.isoformat(), last_day=history_last.isoformat())
        statuses: dict[str, int] = {}
        for batch in history["info"]["batches"]:
            statuses[batch["status"]] = statuses.get(batch["status"], 0) + 1
        shown = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        say(f"  {len(history['info']['batches'])} batches ({shown}) in {time.perf_counter() - started:.1f} s")

    say(f"\nrecops_ingest for {dag_first} .. {last} (dag.test of each logical date)")
    for offset in range((last - dag_first).days + 1):
        dag_run = run("recops_ingest", at_midnight(dag_first + timedelta(days=offset)), log)
        expect(dag_run.state == "success", f"recops_ingest {dag_run.run_id} ended {dag_run.state}", failures)
        published = xcom(dag_run, "publish") or {}
        say(f"    -> publish: {published.get('info', {}).get('status', '?')}")

    bad_day = last + timedelta(days=1)
    landing = settings.landing_dir / BAD_LANDING
    cache = generator_cache(settings, params.generate)
    write_bad_batch(cache / last.isoformat(), landing / bad_day.isoformat(), bad_day)
    say(f"\nrecops_ingest for {bad_day}: a broken batch (negative prices, missing user ids) from {landing}")
    conf = {"source": "landing", "landing": str(landing)}
    dag_run = run("recops_ingest", at_midnight(bad_day), log, conf)
    states = {row["task"]: row["state"] for row in task_rows(dag_run)}
    expect(dag_run.state == "failed", f"the broken batch's run ended {dag_run.state}", failures)
    expect(
        states == {"fetch": "success", "validate": "failed", "publish": "upstream_failed",
                   "announce": "upstream_failed", "online_seed": "upstream_failed"},
        f"the broken batch's tasks: {states}",
        failures,
    )  # fmt: skip
    quarantine = settings.quarantine_dir / bad_day.isoformat()
    expect((quarantine / "data_docs" / "index.html").is_file(), f"no Data Docs in {quarantine}", failures)
    verdict = quarantine / "validation_result.json"
    if verdict.is_file():
        for failure in json.loads(verdict.read_text(encoding="utf-8"))["report"]["failures"]:
            say(f"    FAIL {failure['table']}.{failure['column']}: {failure['detail']}")
    expect(not (settings.data_dir / bad_day.isoformat()).exists(), "the broken batch was published", failures)
    say(f"    -> quarantined: {quarantine}/ (Data Docs: data_docs/index.html); data/ untouched")

    say("\nrecops_train (dag.test; a scheduler starts it from the recops_published_data Asset event)")
    now = datetime.now(UTC).replace(microsecond=0)
    dag_run = run("recops_train", now, log)
    expect(dag_run.state == "success", f"recops_train {dag_run.run_id} ended {dag_run.state}", failures)
    rows = task_rows(dag_run)
    if rows and dag_run.start_date and dag_run.end_date:
        own = sum(r["seconds"] for r in rows)
        wall = (dag_run.end_date - dag_run.start_date).total_seconds()
        say(f"    run {wall:.1f} s, its tasks {own:.1f} s (in-process dag.test; no executor)")
    registered = (xcom(dag_run, "register") or {}).get("info", {})
    promoted = (xcom(dag_run, "promote") or {}).get("info", {})
    say(
        f"    -> register: version {registered.get('version')} of {registered.get('family', '?')} "
        f"({'new' if registered.get('created') else 'already registered'}); "
        f"promote: {promoted.get('outcome', '?')}"
    )
    if failures:
        say(f"\n{len(failures)} unexpected outcome(s): " + "; ".join(failures) + f" (logs: {log})")
        return 1
    return 0


def ensure_password(home: Path) -> Path:
    """The UI's ``admin`` password file (generated once, mode 600, printed that one time), as the stack's."""
    import secrets

    passwords = home / "passwords.json"
    if not passwords.is_file():
        password = secrets.token_urlsafe(18)
        fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"admin": password}, out)
        say(f"Airflow admin password (shown once; kept in {passwords}, mode 600): {password}")
    return passwords


def main_ui(port: int) -> int:
    """Serve the demo's runs in the Airflow UI until interrupted (no scheduler: nothing runs)."""
    settings, _ = configure()
    home: Path = settings.airflow_home
    migrate(home)
    os.environ.update(
        {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(ensure_password(home)),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    say(f"Airflow UI: http://127.0.0.1:{port} (user admin; password in {home / 'passwords.json'})")
    say("It shows the demo's DAG runs; no scheduler runs, so nothing is scheduled. Ctrl-C stops it.")
    command = [str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1"]
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.run(command, check=False).returncode
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dag-days", type=int, default=3, help="last generated days run through the DAG")
    parser.add_argument("--ui", action="store_true", help="serve the demo's runs in the Airflow UI instead")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RECOPS_AIRFLOW_PORT", "8080")))
    args = parser.parse_args()
    if args.ui:
        return main_ui(args.port)
    if args.dag_days < 1:
        parser.error("--dag-days must be at least 1")
    return main_demo(args.dag_days)


if __name__ == "__main__":
    sys.exit(main())
