"""Downloading a model's ``package`` folder, and the loader's errors.

Only the package folder of a pyfunc model is ever downloaded: its place inside the model is read from
``MLmodel`` with ``yaml.safe_load``, and a path that could leave the model's folder is refused. Nothing
downloaded here is opened; :mod:`registry.loader` verifies the files before loading them, and
:mod:`registry.register` hashes them at registration.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path, PurePosixPath

from core.errors import RecopsError
from core.settings import Settings
from registry.client import harden_environment

log = logging.getLogger(__name__)

PACKAGE_DIR = "package"
MLMODEL_FILE = "MLmodel"
#: Where ``pipelines.train`` logs the package inside the pyfunc model when MLmodel does not say.
DEFAULT_PACKAGE_PATH = "artifacts/package"


class ModelLoaderError(RecopsError):
    """A model version could not be resolved, downloaded, verified or loaded."""


class AliasNotFoundError(ModelLoaderError):
    """The registered model or the alias does not exist."""


class RegistryUnavailableError(ModelLoaderError):
    """The registry could not be reached and no verified cached model could stand in."""


class ChecksumMismatchError(ModelLoaderError):
    """The package's bytes differ from the checksums recorded at registration (corrupt or tampered)."""


class UnverifiableModelError(ModelLoaderError):
    """The version records no checksums, and unverified models are refused (``RECOPS_ENV=production``)."""


def download_package(base_uri: str, dest: Path, settings: Settings, what: str) -> Path:
    """Download only the ``package`` folder of the pyfunc model at ``base_uri`` into ``dest/package``.

    The folder's place inside the model is read from ``MLmodel`` (safe YAML); paths that could leave the
    model's folder are refused. Nothing is opened. Used by the loader and by registration.
    """
    harden_environment()
    import mlflow.artifacts

    base = base_uri.rstrip("/")
    rel = package_path(base, dest, settings)
    try:
        fetched = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/{rel}",
                dst_path=str(dest / "download"),
                tracking_uri=settings.mlflow_tracking_uri,
            )
        )
    except Exception as exc:  # MlflowException, OSError, boto errors: all mean "not downloadable"
        raise ModelLoaderError(f"cannot download the package of {what}: {one_line(exc)}") from exc
    package_dir = dest / PACKAGE_DIR
    fetched.rename(package_dir)
    for scratch in ("download", "mlmodel"):
        shutil.rmtree(dest / scratch, ignore_errors=True)
    return package_dir


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of at most 300 characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


def package_path(base: str, staging: Path, settings: Settings) -> str:
    """The package folder inside the model artifacts, read from MLmodel (YAML, parsed safely)."""
    import mlflow.artifacts
    import yaml

    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{MLMODEL_FILE}",
            dst_path=str(staging / "mlmodel"),
            tracking_uri=settings.mlflow_tracking_uri,
        )
        doc = yaml.safe_load(Path(local).read_text(encoding="utf-8")) or {}
        path = doc["flavors"]["python_function"]["artifacts"][PACKAGE_DIR]["path"]
    except Exception as exc:  # no MLmodel, not a pyfunc, no package artifact: use the known layout
        log.debug("MLmodel did not name the package artifact (%s); using %s", exc, DEFAULT_PACKAGE_PATH)
        return DEFAULT_PACKAGE_PATH
    return safe_relative(str(path))


def safe_relative(path: str) -> str:
    """Refuse artifact paths that could leave the model's folder (absolute, ``..``, schemes, backslashes)."""
    pure = PurePosixPath(path)
    if not path or "\\" in path or ":" in path or pure.is_absolute() or ".." in pure.parts:
        raise ModelLoaderError(f"refusing unsafe package path {path!r} in MLmodel")
    return str(pure)
