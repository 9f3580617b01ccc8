"""Runtime settings: where state lives and which services to talk to.

One pydantic-settings class, environment prefix ``RECOPS_`` (``.env`` is read too). The embedded defaults keep
all state under one gitignored runtime folder (SQLite for MLflow, Airflow and the audit table, local files for
artifacts and the DVC remote, in-memory online store). Production values (PostgreSQL URLs, S3 endpoint and
bucket, Redis URL) come only from the environment. Nothing is created or read at import time: call
:func:`get_settings`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import RecopsError

#: Key used to pseudonymise user ids when none is configured. Fine for generated data on a laptop;
#: refused when ``RECOPS_ENV=production`` (see :meth:`Settings._check_production`).
DEV_PSEUDONYMIZATION_KEY = "recops-dev-only-pseudonymization-key"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@]*):(?P<pw>[^@/]+)@")


def default_project_dir() -> Path:
    """The repository root: the folder that holds ``params.yaml`` next to this package."""
    return Path(__file__).resolve().parent.parent


def redact_url(url: str) -> str:
    """Hide the password part of a ``scheme://user:password@host`` URL."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


class Settings(BaseSettings):
    """All runtime configuration. Override any field with ``RECOPS_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="RECOPS_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    project_dir: Path = Field(default_factory=default_project_dir)
    # Relative paths below resolve against project_dir (data, artifacts, params) or runtime_dir (state).
    runtime_dir: Path = Path("runtime")
    data_dir: Path = Path("data")
    artifacts_dir: Path = Path("artifacts")
    params_file: Path = Path("params.yaml")
    landing_dir: Path = Path("landing")
    quarantine_dir: Path = Path("quarantine")

    mlflow_tracking_uri: str = ""  # default: sqlite:///<runtime>/mlflow.db
    mlflow_registry_uri: str = ""  # default: the tracking URI
    mlflow_artifact_location: str = ""  # default: file://<runtime>/mlartifacts
    mlflow_experiment: str = "recops"
    model_name: str = "recops-recommender"
    metadata_db_url: str = ""  # audit trail etc.; default: sqlite:///<runtime>/recops.db

    airflow_home: Path = Path("airflow")
    airflow_db_url: str = ""  # default: sqlite:///<runtime>/airflow/airflow.db

    dvc_remote: str = "local"  # name of a remote in .dvc/config: "local" (runtime folder) or "s3"
    s3_endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 for MinIO; unset for AWS
    s3_bucket: str | None = None

    redis_url: SecretStr | None = None  # unset: in-memory online store
    redis_prefix: str = "recops:"

    pseudonymization_key: SecretStr = SecretStr(DEV_PSEUDONYMIZATION_KEY)

    # The scoring service (``service/``, ``recops serve``): RECOPS_SERVE_*.
    serve_champion_alias: str = Field("champion", min_length=1, max_length=256)
    serve_challenger_alias: str = Field("challenger", min_length=1, max_length=256)
    serve_poll_interval_s: float = Field(5.0, gt=0, le=3600)  # how often the watcher peeks at the aliases
    serve_challenger_share: float = Field(0.0, ge=0, le=1)  # A/B share of shoppers on the challenger; 0 = off
    serve_mmr_lambda: float = Field(0.8, ge=0, le=1)  # 1 = pure relevance, lower = more category diversity
    serve_exclude_seen: bool = True  # never recommend what the shopper already viewed (bought: always)
    serve_max_events: int = Field(500, ge=1, le=10_000)  # events per POST /events
    serve_history_length: int = Field(50, ge=1, le=1_000)  # recent items kept per shopper (scoring)
    serve_seen_length: int = Field(500, ge=1, le=10_000)  # seen / bought items kept per shopper
    serve_history_ttl_s: int = Field(30 * 86_400, ge=60)  # online state of an inactive shopper expires
    serve_rate_limit_per_s: float = Field(200.0, ge=0)  # token bucket per client; 0 = no limit
    serve_rate_limit_burst: int = Field(400, ge=1)
    serve_max_body_bytes: int = Field(64 * 1024, ge=1_024, le=16 * 1024 * 1024)
    serve_feedback_queue: int = Field(10_000, ge=10)  # pending feedback rows before new ones are dropped

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.project_dir = self.project_dir.expanduser().resolve()
        root = self.project_dir
        for name in ("runtime_dir", "data_dir", "artifacts_dir", "params_file"):
            value: Path = getattr(self, name).expanduser()
            setattr(self, name, value if value.is_absolute() else root / value)
        for name in ("landing_dir", "quarantine_dir", "airflow_home"):
            value = getattr(self, name).expanduser()
            setattr(self, name, value if value.is_absolute() else self.runtime_dir / value)
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"sqlite:///{self.runtime_dir / 'mlflow.db'}"
        if not self.mlflow_registry_uri:
            self.mlflow_registry_uri = self.mlflow_tracking_uri
        if not self.mlflow_artifact_location:
            self.mlflow_artifact_location = (self.runtime_dir / "mlartifacts").as_uri()
        if not self.metadata_db_url:
            self.metadata_db_url = f"sqlite:///{self.runtime_dir / 'recops.db'}"
        if not self.airflow_db_url:
            self.airflow_db_url = f"sqlite:///{self.airflow_home / 'airflow.db'}"
        return self._check_production()

    def _check_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.pseudonymization_key.get_secret_value() == DEV_PSEUDONYMIZATION_KEY:
            problems.append("RECOPS_PSEUDONYMIZATION_KEY must be set (the development key is refused)")
        if self.mlflow_tracking_uri.startswith("sqlite"):
            problems.append("RECOPS_MLFLOW_TRACKING_URI must point at a server or PostgreSQL, not SQLite")
        if problems:
            raise ValueError("production settings are incomplete: " + "; ".join(problems))
        return self

    def redacted(self) -> dict[str, Any]:
        """Every resolved setting as plain strings, with secrets and URL passwords hidden."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                shown: Any = "**********" if value.get_secret_value() else ""
                if name == "redis_url":
                    shown = redact_url(value.get_secret_value())
            elif isinstance(value, Path):
                shown = str(value)
            elif isinstance(value, str):
                shown = redact_url(value)
            else:
                shown = value
            out[name] = shown
        return out

    def ensure_runtime_dirs(self) -> None:
        """Create the local state folders the embedded defaults use (call from commands, never on import)."""
        for path in (self.runtime_dir, self.landing_dir, self.quarantine_dir, self.airflow_home):
            path.mkdir(parents=True, exist_ok=True)


class SettingsError(RecopsError, ValueError):
    """The environment holds an invalid or incomplete ``RECOPS_*`` setting."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use.

    Raises:
        SettingsError: a ``RECOPS_*`` value is invalid, or production settings are incomplete.
    """
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = f"RECOPS_{str(err['loc'][0]).upper()}: " if err["loc"] else ""
            lines.append(where + str(err["msg"]).removeprefix("Value error, "))
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from exc
