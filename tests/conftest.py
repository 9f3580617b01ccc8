"""Shared pytest configuration: tier markers and fixtures for the REAL services tests talk to.

Tiers: a test without ``integration``, ``e2e``, ``slow`` or ``gpu`` is marked ``unit`` automatically, so
``pytest -m unit`` selects the fast ones.

Services (nothing is mocked in-process; each fixture talks to a real server):

* PostgreSQL — ``pg_database`` (one fresh database per session) and ``make_pg_database()`` (more fresh
  databases); all are dropped at session end. Admin URL: ``RECOPS_TEST_PG_ADMIN_URL``
  (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``).
* Redis — ``redis_url``: a :class:`RedisEndpoint` with a fresh key prefix per test on DB 15; the prefix's keys
  are deleted afterwards. Base URL: ``RECOPS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``).
* S3 — ``s3_server``: a moto server over HTTP (so aiobotocore/DVC work too), fake credentials in the env.
* MLflow — ``mlflow_server``: a real ``mlflow server`` process, PostgreSQL backend, artifacts proxied to moto.

A service that cannot be reached skips the test, or fails it when ``CI=true`` (see :func:`require_service`).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from core.settings import Settings

TIER_MARKERS = ("integration", "e2e", "slow", "gpu")
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
FAKE_AWS_KEY = "testing"
FAKE_AWS_SECRET = "testing"
AWS_REGION = "us-east-1"
MLFLOW_START_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------------------------- markers


@pytest.hookimpl(tryfirst=True)  # before `-m` deselection, so `-m unit` sees the marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that carries none of the tier markers as ``unit``."""
    for item in items:
        if not any(item.get_closest_marker(name) for name in TIER_MARKERS):
            item.add_marker(pytest.mark.unit)


def in_ci() -> bool:
    """True when the environment variable ``CI`` is ``true`` (any case)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require_service(name: str, reachable: bool, detail: str) -> None:
    """Skip the test when a service is unreachable, or fail it in CI (``CI=true``), where it must exist."""
    if reachable:
        return
    message = f"{name} is not reachable: {detail}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: required services must run)", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------- session env


@pytest.fixture(scope="session", autouse=True)
def _session_env() -> Iterator[None]:
    """Environment every test gets: no pickle loading, MLflow clients that fail fast instead of retrying."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    patch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    patch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    yield
    patch.undo()


# --------------------------------------------------------------------------------------------- PostgreSQL


def _pg_admin_url() -> str:
    return os.environ.get("RECOPS_TEST_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL)


def _psycopg2_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg2://...`` -> ``postgresql://...`` (what libpq accepts)."""
    return sqlalchemy_url.replace("postgresql+psycopg2://", "postgresql://", 1)


def _with_database(sqlalchemy_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def make_pg_database() -> Iterator[Callable[[], str]]:
    """Factory: each call creates an empty database ``recops_test_<hex>`` and returns its SQLAlchemy URL
    (``postgresql+psycopg2://...``). Every database is dropped at session end. Session-scoped, so both
    session fixtures and plain tests can use it."""
    import psycopg2

    admin_url = _pg_admin_url()
    try:
        probe = psycopg2.connect(_psycopg2_dsn(admin_url), connect_timeout=3)
        probe.close()
        reachable, detail = True, ""
    except psycopg2.Error as exc:
        reachable, detail = False, f"{admin_url}: {str(exc).strip()}"
    created: list[str] = []

    def _admin(sql: str, *args: Any) -> None:
        conn = psycopg2.connect(_psycopg2_dsn(admin_url), connect_timeout=5)
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args or None)
        finally:
            conn.close()

    def make() -> str:
        require_service("PostgreSQL", reachable, detail)
        name = f"recops_test_{secrets.token_hex(6)}"
        _admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_database(admin_url, name)

    yield make
    for name in created:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            name,
        )
        _admin(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session")
def pg_database(make_pg_database: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for the session, as a ``postgresql+psycopg2://`` URL."""
    return make_pg_database()


# --------------------------------------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisEndpoint:
    """A Redis server URL plus a key prefix that belongs to one test (end your own keys with it)."""

    url: str
    prefix: str


@pytest.fixture(scope="session")
def _redis_base_url() -> str:
    import redis

    url = os.environ.get("RECOPS_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
        reachable, detail = True, ""
    except redis.RedisError as exc:
        reachable, detail = False, f"{url}: {exc}"
    require_service("Redis", reachable, detail)
    return url


@pytest.fixture
def redis_url(_redis_base_url: str) -> Iterator[RedisEndpoint]:
    """Redis on an isolated DB index (15 by default) with a fresh ``recops_test_<hex>:`` key prefix; every key
    under the prefix is deleted after the test."""
    import redis

    endpoint = RedisEndpoint(url=_redis_base_url, prefix=f"recops_test_{secrets.token_hex(4)}:")
    yield endpoint
    client = redis.Redis.from_url(endpoint.url, socket_connect_timeout=3, socket_timeout=10)
    try:
        keys = list(client.scan_iter(match=f"{endpoint.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# --------------------------------------------------------------------------------------------- S3 (moto)


@dataclass(frozen=True)
class S3Endpoint:
    """A moto S3 server reachable over HTTP, with the fake credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def make_bucket(self, name: str = "recops-test") -> str:
        """Create a fresh bucket named ``<name>-<8 hex>`` and return that name."""
        bucket = f"{name}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def env(self) -> dict[str, str]:
        """Environment variables that point AWS SDKs (and MLflow's S3 store) at this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A moto S3 server in a thread on 127.0.0.1 (random port) for the session. Fake AWS credentials are
    exported for the session (and the real AWS config files hidden) and restored afterwards."""
    from moto.server import ThreadedMotoServer

    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", FAKE_AWS_KEY)
    patch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET)
    patch.setenv("AWS_DEFAULT_REGION", AWS_REGION)
    patch.delenv("AWS_SESSION_TOKEN", raising=False)
    patch.delenv("AWS_PROFILE", raising=False)
    nowhere = tmp_path_factory.mktemp("aws") / "absent"
    patch.setenv("AWS_CONFIG_FILE", str(nowhere))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Endpoint(
            endpoint_url=f"http://{host}:{port}",
            access_key=FAKE_AWS_KEY,
            secret_key=FAKE_AWS_SECRET,
            region=AWS_REGION,
        )
    finally:
        server.stop()
        patch.undo()


# --------------------------------------------------------------------------------------------- MLflow server


@dataclass(frozen=True)
class MLflowServer:
    """A running ``mlflow server``: its URI, the S3 bucket behind its artifact proxy, its backend and log."""

    tracking_uri: str
    artifacts_bucket: str
    backend_url: str
    log_path: Path


def _log_tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_healthy(uri: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = _log_tail(log_path)
            raise RuntimeError(f"mlflow server exited with {proc.returncode}; log tail:\n{tail}")
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    tail = _log_tail(log_path)
    raise RuntimeError(f"mlflow server not healthy after {timeout_s:.0f}s ({last}); log tail:\n{tail}")


def _stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    pgid = os.getpgid(proc.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def mlflow_server(
    make_pg_database: Callable[[], str], s3_server: S3Endpoint, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLflowServer]:
    """A real ``mlflow server`` for the session: PostgreSQL backend store (fresh database), artifacts proxied
    (``mlflow-artifacts:/``) to ``s3://<artifacts_bucket>/mlartifacts`` on moto, bound to 127.0.0.1 on a
    free port. Clients only need ``tracking_uri``; the process group is killed at session end."""
    backend_url = make_pg_database()
    bucket = s3_server.make_bucket("mlflow")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    env = {**os.environ, **s3_server.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_url,
        "--artifacts-destination",
        f"s3://{bucket}/mlartifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log_path.parent
        )
    try:
        try:
            _wait_healthy(uri, proc, log_path, MLFLOW_START_TIMEOUT_S)
        except RuntimeError as exc:
            require_service("MLflow server", False, str(exc))
        yield MLflowServer(
            tracking_uri=uri, artifacts_bucket=bucket, backend_url=backend_url, log_path=log_path
        )
    finally:
        _stop_process_group(proc)


# --------------------------------------------------------------------------------------------- settings


@pytest.fixture
def recops_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose state lives in ``tmp_path``: runtime/, data/ and artifacts/ under it, no other
    ``RECOPS_*`` variable from the caller's shell. The settings cache is cleared before and after."""
    from core.settings import get_settings

    for key in list(os.environ):
        if key.startswith("RECOPS_") and key != "RECOPS_SHARED_DATA" and not key.startswith("RECOPS_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RECOPS_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("RECOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECOPS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
