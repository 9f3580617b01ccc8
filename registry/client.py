"""The one MLflow client factory, the retry policy every client shares, and how MLflow errors are told apart.

Everything that talks to MLflow (tracking in ``pipelines``, registration, promotion, rollback, the verified
loader) gets its client from :func:`mlflow_client`, so the tracking and registry URIs only ever come from
settings (checked here: a URI MLflow cannot use is a one-line :class:`RegistryConfigError`), pickle
deserialization is refused in every process, and every HTTP call uses the same bounded retries
(:data:`HTTP_POLICY`): with the server down a call fails in seconds, not the minutes of MLflow's defaults,
so the scorer and ``recops recommend`` fall back to the cached champion quickly.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from core.errors import RecopsError
from core.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
#: Registry error codes that mean "no such alias / model / version" rather than "registry unreachable".
NOT_FOUND_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
#: Retry policy of MLflow's HTTP client, set before the first client is built (an operator's own value in
#: the environment wins). A refused connection costs about ``sum(backoff * 2**(n-1))`` for n in 2..retries
#: plus up to ``jitter`` per retry: ~3 s here (MLflow's defaults, 7 retries with factor 2: ~4 minutes).
#: ``TIMEOUT`` bounds each request (connect, then each wait for data), so a silent host costs at most
#: (retries + 1) * timeout.
HTTP_POLICY = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
#: URI schemes MLflow's tracking and registry stores accept (a bare path is a local file store).
TRACKING_SCHEMES = frozenset(
    {"http", "https", "file", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc"}
)
#: Seconds to wait for a database-backed tracking store before giving up (MLflow itself retries ~1 hour).
DB_CONNECT_TIMEOUT_S = 5
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")


class RegistryConfigError(RecopsError):
    """A tracking or registry URI that MLflow cannot use."""


class RegistryUnreachableError(RecopsError):
    """The MLflow tracking server or registry cannot be reached (or answered with an error)."""


def harden_environment() -> None:
    """Refuse pickle deserialization in MLflow (call before importing or using MLflow); no progress bars;
    the shared bounded retry policy (:data:`HTTP_POLICY`)."""
    os.environ[PICKLE_ENV] = "false"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for key, value in HTTP_POLICY.items():
        os.environ.setdefault(key, value)


def check_uri(uri: str, what: str) -> str:
    """Refuse a tracking or registry URI whose scheme MLflow has no store for (one clear line)."""
    if not uri.strip():
        raise RegistryConfigError(f"{what} is empty")
    match = _SCHEME.match(uri)
    if match is None or (len(match["scheme"]) == 1 and os.name == "nt"):
        return uri  # a bare local path: MLflow's file store
    scheme = match["scheme"].lower()
    base = scheme.split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        known = ", ".join(sorted(TRACKING_SCHEMES))
        raise RegistryConfigError(
            f"{what} {uri!r} has an unsupported scheme {scheme!r} (use one of: {known})"
        )
    if base in ("http", "https") and not re.match(r"^https?://[^/:]+", uri, re.IGNORECASE):
        raise RegistryConfigError(f"{what} {uri!r} names no host")
    return uri


def _check_database(uri: str) -> None:
    """A PostgreSQL / MySQL tracking store: one bounded connection attempt, instead of MLflow's retries."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(uri)
    except sa.exc.ArgumentError as exc:
        raise RegistryConfigError(f"MLflow tracking URI {uri!r} is not a database URL: {exc}") from exc
    engine = sa.create_engine(
        url, connect_args={"connect_timeout": DB_CONNECT_TIMEOUT_S}, poolclass=sa.NullPool
    )
    try:
        with engine.connect():
            pass
    except Exception as exc:  # driver missing, refused, timed out, authentication
        shown = url.render_as_string(hide_password=True)
        raise RegistryUnreachableError(
            f"cannot reach the MLflow tracking database {shown}: {' '.join(str(exc).split())[:200]}"
        ) from exc
    finally:
        engine.dispose()


def mlflow_client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URIs, with pickle loading refused.

    Raises:
        RegistryConfigError: a URI with a scheme MLflow cannot use.
        RegistryUnreachableError: a database-backed tracking store that does not answer.
    """
    harden_environment()
    tracking = check_uri(settings.mlflow_tracking_uri, "RECOPS_MLFLOW_TRACKING_URI")
    registry = check_uri(settings.mlflow_registry_uri, "RECOPS_MLFLOW_REGISTRY_URI")
    if tracking.lower().startswith(("postgresql", "mysql")):
        _check_database(tracking)
    import mlflow
    from mlflow import MlflowClient

    if tracking.startswith("sqlite:"):
        settings.runtime_dir.mkdir(parents=True, exist_ok=True)
    # The registry store resolves `models:/<logged model id>` sources through the *global* tracking URI;
    # left unset, MLflow would look in ./mlflow.db and not find the model.
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    return MlflowClient(tracking_uri=tracking, registry_uri=registry)


def is_embedded(settings: Settings) -> bool:
    """True when the tracking store is a local database (no server that owns artifact locations)."""
    return not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))


def error_code(exc: BaseException) -> str:
    """The MLflow error code name of an exception (empty for non-MLflow errors)."""
    return str(getattr(exc, "error_code", "") or "")


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


_API_REQUEST = re.compile(r"API request to (?P<url>\S+?)/api/\S* failed with exception (?P<cause>.*)", re.S)


def describe_mlflow_error(exc: BaseException) -> str | None:
    """One line for a person when ``exc`` (or what caused it) is an MLflow or connection error; None for
    anything else (a bug keeps its traceback)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        line = _describe_one(current)
        if line is not None:
            return line
        current = current.__cause__ or current.__context__
    return None


def _describe_one(exc: BaseException) -> str | None:
    kind = f"{type(exc).__module__}.{type(exc).__name__}"
    text = " ".join(str(exc).split())
    if kind.startswith("mlflow.") and "Exception" in type(exc).__name__:
        match = _API_REQUEST.search(text)
        if match is not None:
            cause = match["cause"]
            why = (
                "connection refused"
                if "refused" in cause.lower()
                else "timed out"
                if "timeout" in cause.lower() or "timed out" in cause.lower()
                else cause[:160]
            )
            return (
                f"cannot reach the MLflow server at {match['url']} ({why}); check RECOPS_MLFLOW_TRACKING_URI "
                "and that the server is running"
            )
        return f"MLflow: {text[:300]}"
    if kind.startswith(("requests.", "urllib3.")) and "Error" in type(exc).__name__:
        return f"cannot reach the MLflow server: {text[:200]}"
    return None


def ensure_experiment(client: MlflowClient, settings: Settings, name: str, artifact_subdir: str = "") -> str:
    """Id of the experiment ``name``, created on first use (safe when another process creates it too).

    On an embedded store its artifacts go to ``<mlflow_artifact_location>[/<artifact_subdir>]``; a tracking
    server decides the location itself.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    base = settings.mlflow_artifact_location.rstrip("/")
    location = (f"{base}/{artifact_subdir}" if artifact_subdir else base) if is_embedded(settings) else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # created concurrently between the lookup and the create
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
