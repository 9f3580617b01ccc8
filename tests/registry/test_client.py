"""The MLflow client factory: URIs are checked, every client shares bounded retries, registry errors reach a
person as one line (exit 2), and with the registry down ``recops recommend`` answers from the cache fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from registry.client import (
    HTTP_POLICY,
    RegistryConfigError,
    RegistryUnreachableError,
    check_uri,
    describe_mlflow_error,
    mlflow_client,
)
from tests.registry_helpers import (
    clustered_events,
    fit_package,
    log_package,
    register_run,
    run_recops,
    write_features_for,
)

DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: connection refused


@pytest.mark.parametrize(
    "uri",
    ["http://mlflow.internal:5000", "https://x.example/mlflow", "sqlite:////tmp/m.db", "file:///tmp/mlruns",
     "postgresql+psycopg2://u@db/mlflow", "databricks", "/tmp/mlruns", "mlruns"],
)  # fmt: skip
def test_usable_uris_are_accepted(uri: str) -> None:
    assert check_uri(uri, "RECOPS_MLFLOW_TRACKING_URI") == uri


@pytest.mark.parametrize(
    ("uri", "detail"),
    [("garbage://x", "unsupported scheme 'garbage'"), ("s3://bucket/x", "unsupported scheme 's3'"),
     ("http://", "names no host"), ("", "is empty")],
)  # fmt: skip
def test_unusable_uris_are_one_line_errors(uri: str, detail: str) -> None:
    with pytest.raises(RegistryConfigError, match=detail):
        check_uri(uri, "RECOPS_MLFLOW_TRACKING_URI")


def test_a_dead_database_tracking_store_fails_at_once(recops_settings: Settings) -> None:
    dead = recops_settings.model_copy(update={"mlflow_tracking_uri": "postgresql+psycopg2://u@127.0.0.1:9/x"})
    with pytest.raises(RegistryUnreachableError, match="cannot reach the MLflow tracking database"):
        mlflow_client(dead)


def test_the_retry_policy_is_bounded_and_in_force_before_mlflow_reads_it(tmp_path: Path) -> None:
    retries = int(HTTP_POLICY["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    factor = float(HTTP_POLICY["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    jitter = float(HTTP_POLICY["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"])
    # urllib3 sleeps factor * 2**(n-1) before retry n >= 2 (none before the first), plus up to `jitter`
    refused_worst_s = sum(factor * 2 ** (n - 1) for n in range(2, retries + 1)) + jitter * retries
    assert refused_worst_s <= 10, "a refused connection must fail within seconds"
    assert (retries + 1) * int(HTTP_POLICY["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 90  # a silent host
    # a fresh process without any MLFLOW_HTTP_* setting: MLflow reads the policy once a client exists
    probe = (
        "import json\n"
        "from core.settings import Settings\n"
        "from registry.client import mlflow_client\n"
        "import mlflow.environment_variables as ev\n"
        f"mlflow_client(Settings(mlflow_tracking_uri={DEAD!r}))\n"
        "print(json.dumps({v.name: str(v.get()) for v in (ev.MLFLOW_HTTP_REQUEST_MAX_RETRIES,"
        " ev.MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, ev.MLFLOW_HTTP_REQUEST_BACKOFF_JITTER,"
        " ev.MLFLOW_HTTP_REQUEST_TIMEOUT)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_HTTP_", "RECOPS_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert {k: float(v) for k, v in seen.items()} == {k: float(v) for k, v in HTTP_POLICY.items()}


def test_a_refused_connection_is_described_in_one_line(recops_settings: Settings) -> None:
    dead = recops_settings.model_copy(update={"mlflow_tracking_uri": DEAD, "mlflow_registry_uri": DEAD})
    with pytest.raises(Exception) as caught:  # the session sets MLFLOW_HTTP_REQUEST_MAX_RETRIES=0
        mlflow_client(dead).get_experiment_by_name("x")
    line = describe_mlflow_error(caught.value)
    assert line is not None and "\n" not in line
    assert line.startswith(f"cannot reach the MLflow server at {DEAD} (connection refused)")
    assert describe_mlflow_error(ValueError("a bug")) is None  # bugs keep their traceback


@pytest.mark.parametrize("uri", [DEAD, "garbage://x"])
def test_registry_commands_with_a_bad_uri_print_one_line_and_exit_2(
    recops_settings: Settings, uri: str
) -> None:
    write_features_for(recops_settings)  # so `train` gets as far as MLflow
    env = {"RECOPS_MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    for args in (("register",), ("promote",), ("rollback", "--to", "1"), ("train", "--family", "popularity")):
        result = run_recops(*args, env=env, timeout_s=180)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        expected = "cannot reach the MLflow server" if uri == DEAD else "unsupported scheme 'garbage'"
        assert lines[-1].startswith("error: ") and expected in lines[-1], (args, lines)


def test_recommend_falls_back_to_the_cached_champion_within_seconds(
    recops_settings: Settings, tmp_path: Path
) -> None:
    """Registry down, default retry policy (nothing in the environment): the answer comes from the cache,
    says so, and well within the generous timeout (MLflow's own defaults took about 4 minutes)."""
    from core.privacy import pseudonymize
    from registry.loader import load_alias
    from tests.factories import make_catalog

    settings = recops_settings
    events = clustered_events()
    events["user_id"] = pseudonymize(events["user_id"], settings.pseudonymization_key.get_secret_value())
    batch = settings.data_dir / "2026-01-01"
    batch.mkdir(parents=True)
    events.to_parquet(batch / "events.parquet", index=False)
    make_catalog(40).to_parquet(batch / "catalog.parquet", index=False)
    fs = write_features_for(settings)
    version = register_run(
        settings, log_package(settings, fit_package(fs, "good"), tmp_path, metrics={}), "champion"
    )
    assert load_alias("champion", settings=settings).version == version  # the cache the scorer keeps

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_")}
    env.update(RECOPS_MLFLOW_TRACKING_URI=DEAD, PYTHONPATH="", COLUMNS="250", NO_COLOR="1")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "recops"), "recommend", "--user", "u3", "--k", "5"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"v{version} (itemknn)" in result.stdout and "cat3" in result.stdout
    assert f"warning: served the last good cached champion v{version} (model registry unreachable" in (
        result.stdout
    )
