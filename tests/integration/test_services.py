"""The real-service fixtures of tests/conftest.py work: each service stores something another client reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import MLflowServer, RedisEndpoint, S3Endpoint

pytestmark = pytest.mark.integration


def test_postgres_row_written_on_one_connection_is_read_on_another(pg_database: str) -> None:
    assert pg_database.startswith("postgresql+psycopg2://")
    writer = sa.create_engine(pg_database)
    reader = sa.create_engine(pg_database, poolclass=sa.pool.NullPool)
    try:
        with writer.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id int PRIMARY KEY, note text NOT NULL)"))
            conn.execute(sa.text("INSERT INTO probe VALUES (1, 'hello'), (2, 'world')"))
        with reader.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, note FROM probe ORDER BY id")).all()
            other_backend = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with writer.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != other_backend
    finally:
        writer.dispose()
        reader.dispose()
    assert [tuple(r) for r in rows] == [(1, "hello"), (2, "world")]


def test_make_pg_database_gives_distinct_empty_databases(make_pg_database: Callable[[], str]) -> None:
    first, second = make_pg_database(), make_pg_database()
    assert first != second
    engine = sa.create_engine(first)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert tables == 0


def test_redis_set_get_and_expiry_under_prefix(redis_url: RedisEndpoint) -> None:
    import redis

    client = redis.Redis.from_url(redis_url.url, decode_responses=True)
    other = redis.Redis.from_url(redis_url.url, decode_responses=True)
    try:
        key, short = f"{redis_url.prefix}greeting", f"{redis_url.prefix}short-lived"
        client.set(key, "hello")
        client.set(short, "soon gone", px=200)
        assert other.get(key) == "hello"
        assert other.get(short) == "soon gone"
        assert 0 < other.pttl(short) <= 200
        time.sleep(0.4)
        assert other.get(short) is None
        assert sorted(other.scan_iter(match=f"{redis_url.prefix}*")) == [key]
    finally:
        client.close()
        other.close()


def test_s3_object_written_and_read_back(s3_server: S3Endpoint) -> None:
    bucket = s3_server.make_bucket("probe")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello s3")
    body = client.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read()
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert body == b"hello s3"
    assert listed == ["dir/hello.txt"]
    assert bucket != s3_server.make_bucket("probe")


def test_mlflow_run_visible_through_rest_api_and_artifact_in_s3(
    mlflow_server: MLflowServer, s3_server: S3Endpoint, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    experiment_id = client.create_experiment(f"probe-{time.time_ns()}")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_param(run_id, "family", "als")
    client.log_metric(run_id, "ndcg_at_10", 0.25)
    note = tmp_path / "note.txt"
    note.write_text("artifact body\n")
    client.log_artifact(run_id, str(note), artifact_path="notes")
    client.set_terminated(run_id)

    response = httpx.get(
        f"{mlflow_server.tracking_uri}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10
    )
    response.raise_for_status()
    data = response.json()["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"family": "als"}
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"ndcg_at_10": 0.25}
    assert response.json()["run"]["info"]["status"] == "FINISHED"

    objects = s3_server.client().list_objects_v2(Bucket=mlflow_server.artifacts_bucket, Prefix="mlartifacts/")
    keys = [o["Key"] for o in objects.get("Contents", [])]
    matching = [k for k in keys if run_id in k and k.endswith("notes/note.txt")]
    assert len(matching) == 1, keys
    stored = s3_server.client().get_object(Bucket=mlflow_server.artifacts_bucket, Key=matching[0])
    assert stored["Body"].read() == b"artifact body\n"


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_stack_script_starts_airflow_and_mlflow_and_stops_every_process(
    tmp_path: Path, make_pg_database: Callable[[], str]
) -> None:
    """`make stack-up` / `stack-down` in miniature: every component healthy on 127.0.0.1 with its own process
    group, auth on with a password printed once, and nothing left running after `down`. (The full flow with
    REST-triggered DAG runs is tests/dags/test_stack.py, marked slow.)"""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    af_port, mlflow_port = _free_ports(2)
    runtime = tmp_path / "runtime"
    env = {
        **os.environ,
        "RECOPS_PROJECT_DIR": str(repo),
        "RECOPS_RUNTIME_DIR": str(runtime),
        "RECOPS_AIRFLOW_PORT": str(af_port),
        "RECOPS_MLFLOW_PORT": str(mlflow_port),
        "RECOPS_AIRFLOW_DB_URL": make_pg_database(),
        "RECOPS_MLFLOW_BACKEND_URI": make_pg_database(),
        "RECOPS_AIRFLOW_PARALLELISM": "2",
    }

    def stack(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(repo / "infra" / "scripts" / "stack.sh"), action],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert stack("status").returncode == 3
    pids: dict[str, int] = {}
    try:
        up = stack("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Airflow admin password (shown once" in up.stdout
        assert "Airflow admin password" not in stack("up").stdout  # printed only the first time
        for pid_file in (runtime / "stack" / "pids").glob("*.pid"):
            pids[pid_file.stem] = int(pid_file.read_text())
        assert set(pids) == {"mlflow", "api-server", "scheduler", "dag-processor", "triggerer"}, pids
        for name, pid in pids.items():
            assert os.getpgid(pid) == pid, f"{name} leads its own process group"
        status = stack("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert oct((runtime / "airflow" / "passwords.json").stat().st_mode & 0o777) == "0o600"

        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{mlflow_port}")
        run = client.create_run(client.create_experiment("stack-probe"))
        note = tmp_path / "note.txt"
        note.write_text("via stack\n")
        client.log_artifact(run.info.run_id, str(note))
        stored = list((runtime / "mlartifacts").rglob("note.txt"))
        assert [p.read_text() for p in stored] == ["via stack\n"]
    finally:
        down = stack("down")
    assert down.returncode == 0, down.stderr
    assert stack("status").returncode == 3
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
