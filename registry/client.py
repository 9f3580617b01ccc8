"""The one MLflow client factory, and how MLflow errors are told apart.

Everything that talks to MLflow (tracking in ``pipelines``, registration, promotion, rollback, the verified
loader) gets its client from :func:`mlflow_client`, so the tracking and registry URIs only ever come from
settings and pickle deserialization is refused in every process.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
#: Registry error codes that mean "no such alias / model / version" rather than "registry unreachable".
NOT_FOUND_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})


def harden_environment() -> None:
    """Refuse pickle deserialization in MLflow (call before importing or using MLflow); no progress bars;
    bounded retries so a dead server fails in seconds, not minutes."""
    os.environ[PICKLE_ENV] = "false"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def mlflow_client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URIs, with pickle loading refused."""
    harden_environment()
    import mlflow
    from mlflow import MlflowClient

    if settings.mlflow_tracking_uri.startswith("sqlite:"):
        settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    # The registry store resolves `models:/<logged model id>` sources through the *global* tracking URI;
    # left unset, MLflow would look in ./mlflow.db and not find the model.
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_registry_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_registry_uri)


def is_embedded(settings: Settings) -> bool:
    """True when the tracking store is a local database (no server that owns artifact locations)."""
    return not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))


def error_code(exc: BaseException) -> str:
    """The MLflow error code name of an exception (empty for non-MLflow errors)."""
    return str(getattr(exc, "error_code", "") or "")


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES
