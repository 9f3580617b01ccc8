"""Settings: defaults under runtime/, environment overrides, path resolution, production checks, redaction."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.errors import RecopsError
from core.settings import (
    DEV_PSEUDONYMIZATION_KEY,
    Settings,
    SettingsError,
    default_project_dir,
    get_settings,
    redact_url,
)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No RECOPS_* variable from the caller's shell, and a working directory without a ``.env`` file."""
    for key in list(os.environ):
        if key.startswith("RECOPS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def make(project: Path, **values: object) -> Settings:
    return Settings(_env_file=None, project_dir=project, **values)  # type: ignore[call-arg]


def test_default_project_dir_is_the_repository_root() -> None:
    root = default_project_dir()
    assert (root / "params.yaml").is_file()
    assert (root / "core" / "settings.py").is_file()


def test_defaults_keep_all_state_under_runtime(clean_env: Path) -> None:
    project = clean_env / "project"
    s = make(project)
    runtime = project / "runtime"
    assert s.env == "dev"
    assert s.runtime_dir == runtime
    assert s.data_dir == project / "data"
    assert s.artifacts_dir == project / "artifacts"
    assert s.params_file == project / "params.yaml"
    assert s.landing_dir == runtime / "landing"
    assert s.quarantine_dir == runtime / "quarantine"
    assert s.airflow_home == runtime / "airflow"
    assert s.mlflow_tracking_uri == f"sqlite:///{runtime / 'mlflow.db'}"
    assert s.mlflow_registry_uri == s.mlflow_tracking_uri
    assert s.mlflow_artifact_location == (runtime / "mlartifacts").as_uri()
    assert s.metadata_db_url == f"sqlite:///{runtime / 'recops.db'}"
    assert s.airflow_db_url == f"sqlite:///{runtime / 'airflow' / 'airflow.db'}"
    assert s.redis_url is None
    assert s.pseudonymization_key.get_secret_value() == DEV_PSEUDONYMIZATION_KEY
    assert not project.exists(), "building settings must not create anything"


def test_ensure_runtime_dirs_creates_the_state_folders(clean_env: Path) -> None:
    s = make(clean_env)
    s.ensure_runtime_dirs()
    for path in (s.runtime_dir, s.landing_dir, s.quarantine_dir, s.airflow_home):
        assert path.is_dir()


def test_environment_overrides_fields(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOPS_PROJECT_DIR", str(clean_env))
    monkeypatch.setenv("RECOPS_MLFLOW_EXPERIMENT", "exp-from-env")
    monkeypatch.setenv("RECOPS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("RECOPS_REDIS_PREFIX", "shop42:")
    monkeypatch.setenv("RECOPS_MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    monkeypatch.setenv("RECOPS_RUNTIME_DIR", str(clean_env / "state"))
    s = get_settings()
    assert s.project_dir == clean_env.resolve()
    assert s.mlflow_experiment == "exp-from-env"
    assert s.log_level == "DEBUG"
    assert s.redis_prefix == "shop42:"
    assert s.mlflow_tracking_uri == "http://127.0.0.1:5999"
    assert s.mlflow_registry_uri == "http://127.0.0.1:5999", "registry follows the tracking URI"
    assert s.metadata_db_url == f"sqlite:///{clean_env / 'state' / 'recops.db'}"
    assert get_settings() is s, "cached until cache_clear()"


def test_dotenv_file_in_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text("RECOPS_MODEL_NAME=from-dotenv\n")
    assert get_settings().model_name == "from-dotenv"


def test_relative_paths_resolve_against_project_or_runtime(clean_env: Path) -> None:
    project = clean_env / "p"
    s = make(project, data_dir=Path("lake/data"), runtime_dir=Path("var/run"), landing_dir=Path("inbox"))
    assert s.data_dir == project / "lake" / "data"
    assert s.runtime_dir == project / "var" / "run"
    assert s.landing_dir == project / "var" / "run" / "inbox", "state folders resolve under runtime_dir"
    assert s.quarantine_dir == project / "var" / "run" / "quarantine"


def test_absolute_and_home_paths_are_kept(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(clean_env / "home"))
    elsewhere = clean_env / "elsewhere"
    s = make(
        clean_env / "p", artifacts_dir=elsewhere / "art", quarantine_dir=elsewhere / "q", data_dir=Path("~/d")
    )
    assert s.artifacts_dir == elsewhere / "art"
    assert s.quarantine_dir == elsewhere / "q"
    assert s.data_dir == clean_env / "home" / "d"


def test_relative_project_dir_is_made_absolute(clean_env: Path) -> None:
    (clean_env / "rel").mkdir()
    s = make(Path("rel"))
    assert s.project_dir.is_absolute()
    assert s.project_dir == (clean_env / "rel").resolve()


def test_production_refuses_dev_key_and_sqlite(clean_env: Path) -> None:
    with pytest.raises(ValidationError) as info:
        make(clean_env, env="production")
    message = str(info.value)
    assert "RECOPS_PSEUDONYMIZATION_KEY" in message
    assert "RECOPS_MLFLOW_TRACKING_URI" in message


def test_production_refuses_sqlite_even_with_a_real_key(clean_env: Path) -> None:
    with pytest.raises(ValidationError) as info:
        make(clean_env, env="production", pseudonymization_key="a-real-key")
    assert "RECOPS_MLFLOW_TRACKING_URI" in str(info.value)
    assert "RECOPS_PSEUDONYMIZATION_KEY" not in str(info.value)


def test_production_accepts_complete_settings(clean_env: Path) -> None:
    s = make(
        clean_env,
        env="production",
        pseudonymization_key="a-real-key",
        mlflow_tracking_uri="postgresql+psycopg2://mlflow:pw@db:5432/mlflow",
    )
    assert s.env == "production"


def test_get_settings_turns_bad_environment_into_a_recops_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOPS_ENV", "production")
    with pytest.raises(SettingsError) as info:
        get_settings()
    assert isinstance(info.value, RecopsError)
    assert "RECOPS_PSEUDONYMIZATION_KEY" in str(info.value)
    monkeypatch.setenv("RECOPS_ENV", "dev")
    monkeypatch.setenv("RECOPS_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError, match="RECOPS_LOG_LEVEL"):
        get_settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg2://mlflow:s3cr3t@db:5432/mlflow",
            "postgresql+psycopg2://mlflow:***@db:5432/mlflow",
        ),
        ("redis://:s3cr3t@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:s3cr3t@cache:6379/0", "redis://user:***@cache:6379/0"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
    ],
)
def test_redact_url_hides_only_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redacted_hides_secrets_and_url_passwords(clean_env: Path) -> None:
    s = make(
        clean_env,
        pseudonymization_key="very-secret-key",
        redis_url="redis://shop:redispw@cache:6379/0",
        mlflow_tracking_uri="postgresql+psycopg2://ml:dbpw@db/mlflow",
        metadata_db_url="postgresql+psycopg2://meta:metapw@db/recops",
    )
    shown = s.redacted()
    assert set(shown) == set(Settings.model_fields)
    assert shown["pseudonymization_key"] == "**********"
    assert shown["redis_url"] == "redis://shop:***@cache:6379/0"
    assert shown["mlflow_tracking_uri"] == "postgresql+psycopg2://ml:***@db/mlflow"
    assert shown["mlflow_registry_uri"] == "postgresql+psycopg2://ml:***@db/mlflow"
    assert shown["metadata_db_url"] == "postgresql+psycopg2://meta:***@db/recops"
    assert shown["runtime_dir"] == str(clean_env / "runtime")
    text = json.dumps(shown)
    for secret in ("very-secret-key", "redispw", "dbpw", "metapw"):
        assert secret not in text


def test_redacted_without_optional_secrets(clean_env: Path) -> None:
    shown = make(clean_env).redacted()
    assert shown["redis_url"] is None
    assert shown["pseudonymization_key"] == "**********"
    assert DEV_PSEUDONYMIZATION_KEY not in json.dumps(shown)


def test_recops_settings_fixture_points_state_into_tmp(recops_settings: Settings, tmp_path: Path) -> None:
    assert recops_settings.runtime_dir == tmp_path / "runtime"
    assert recops_settings.data_dir == tmp_path / "data"
    assert recops_settings.artifacts_dir == tmp_path / "artifacts"
    assert recops_settings.mlflow_tracking_uri.endswith(str(tmp_path / "runtime" / "mlflow.db"))
    assert get_settings() is recops_settings


def test_env_example_lists_every_setting() -> None:
    text = (default_project_dir() / ".env.example").read_text()
    listed = {m.lower() for m in re.findall(r"^#?\s*RECOPS_([A-Z0-9_]+)=", text, flags=re.MULTILINE)}
    missing = {name for name in Settings.model_fields if name not in listed}
    assert not missing, f".env.example has no RECOPS_ line for: {sorted(missing)}"
    assert not re.search(r"^RECOPS_", text, flags=re.MULTILINE), "keep every value commented out"
