"""The one way to load a registered model: by alias, through the registry, without unpickling anything.

The scorer, ``recops recommend`` and the promotion gate all call :func:`load_alias`, so the gate tests
exactly what will serve. Steps:

1. resolve the alias with ``MlflowClient.get_model_version_by_alias`` (never stages, never search APIs);
2. read the version's ``MLmodel`` file with ``yaml.safe_load`` to find where the pyfunc stored the
   ``package`` artifact, and download *only* that folder (never ``python_model.pkl`` or anything else);
3. load it with :meth:`models.package.ModelPackage.load` (JSON, Parquet and safetensors only);
4. keep it under ``<runtime>/model-cache/<name>/<version>/`` with a ``checksum.json`` of every file, plus a
   pointer ``aliases/<alias>.json`` to the last version each alias resolved to.

When the registry cannot be reached, :func:`load_alias` falls back to the last version the alias resolved
to, if its cached copy still matches its checksums (``LoadedModel.stale`` is then True). A missing alias,
a missing or corrupt artifact, or a package that fails to load raises :class:`ModelLoaderError`; callers
that already serve a model keep serving it.

``mlflow.pyfunc.load_model``, cloudpickle and ``torch.load`` are never used here, and
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is forced to ``false`` before MLflow is imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from core.settings import Settings
from models.base import ModelLoadError
from registry.aliases import resolve_alias
from registry.client import harden_environment, is_not_found, mlflow_client

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from models.package import ModelPackage

log = logging.getLogger(__name__)

CACHE_DIR = "model-cache"
ALIASES_DIR = "aliases"
CHECKSUM_FILE = "checksum.json"
PACKAGE_DIR = "package"
MLMODEL_FILE = "MLmodel"
#: Where ``pipelines.train`` logs the package inside the pyfunc model when MLmodel does not say.
DEFAULT_PACKAGE_PATH = "artifacts/package"
#: Files a package folder may hold; anything else is ignored (and reported), never opened.
PACKAGE_FILES = ("package.json", "items.parquet", "model/config.json", "model/weights.safetensors")


class ModelLoaderError(RecopsError):
    """A model version could not be resolved, downloaded, verified or loaded."""


class AliasNotFoundError(ModelLoaderError):
    """The registered model or the alias does not exist."""


class RegistryUnavailableError(ModelLoaderError):
    """The registry could not be reached and no verified cached model could stand in."""


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded from its package, with where it came from."""

    name: str
    version: int
    alias: str | None
    package: ModelPackage
    source_run_id: str
    path: Path
    checksum: str
    from_cache: bool = False
    stale: bool = False  # registry unreachable: this is the last version the alias resolved to


def cache_root(settings: Settings, name: str) -> Path:
    """``<runtime>/model-cache/<model name>``."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return settings.runtime_dir / CACHE_DIR / safe


def peek_alias(
    alias: str = "champion", *, settings: Settings, client: MlflowClient | None = None
) -> int | None:
    """The version number ``alias`` points to now (None when unset), without downloading anything.

    For pollers: call :func:`load_alias` only when this differs from the version being served. Registry
    errors propagate (keep serving what you have).
    """
    mv = resolve_alias(client or mlflow_client(settings), settings.model_name, alias)
    return None if mv is None else int(mv.version)


def load_alias(
    alias: str = "champion",
    *,
    settings: Settings,
    client: MlflowClient | None = None,
    allow_stale: bool = True,
) -> LoadedModel:
    """Load the version ``alias`` points to (see the module docstring).

    Args:
        alias: registry alias, e.g. ``champion`` or ``challenger``.
        settings: model name, MLflow URIs and the runtime folder that holds the cache.
        client: an MLflow client to reuse (default: one built from settings).
        allow_stale: when the registry is unreachable, fall back to the cached last-good version.
    Raises:
        AliasNotFoundError: the model or alias does not exist.
        RegistryUnavailableError: the registry is unreachable and no verified cached copy exists.
        ModelLoaderError: the version's artifacts are missing, corrupt or unsafe.
    """
    name = settings.model_name
    try:
        client = client or mlflow_client(settings)
        mv = resolve_alias(client, name, alias)
    except Exception as exc:  # MlflowException, requests/SQLAlchemy errors: the registry is unreachable
        if not allow_stale:
            raise RegistryUnavailableError(
                f"model registry unreachable while resolving {name}@{alias}: {exc}"
            ) from exc
        return _load_stale(settings, name, alias, exc)
    if mv is None:
        raise AliasNotFoundError(f"registered model {name!r} has no version with alias {alias!r}")
    loaded = _load_model_version(client, settings, mv, alias)
    _write_pointer(settings, name, alias, loaded, mv)
    return loaded


def load_version(version: int, *, settings: Settings, client: MlflowClient | None = None) -> LoadedModel:
    """Load one version by number (used to check a rollback target before moving aliases)."""
    harden_environment()
    from mlflow.exceptions import MlflowException

    client = client or mlflow_client(settings)
    name = settings.model_name
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as exc:
        if is_not_found(exc):
            raise AliasNotFoundError(f"registered model {name!r} has no version {version}") from exc
        raise
    return _load_model_version(client, settings, mv, None)


# ----------------------------------------------------------------------------------------- internals


def _load_model_version(
    client: MlflowClient, settings: Settings, mv: ModelVersion, alias: str | None
) -> LoadedModel:
    name, version = str(mv.name), int(mv.version)
    run_id, source = str(mv.run_id or ""), str(mv.source or "")
    target = cache_root(settings, name) / str(version)
    manifest = _read_manifest(target)
    if manifest is not None and manifest.get("source") == source and manifest.get("run_id") == run_id:
        try:
            return _load_cached(target, manifest, name, alias, from_cache=True, stale=False)
        except ModelLoaderError as exc:
            log.warning("cached copy of %s v%d is unusable (%s); downloading again", name, version, exc)
    return _download_and_load(client, settings, name, version, run_id, source, alias, target)


def _download_and_load(
    client: MlflowClient,
    settings: Settings,
    name: str,
    version: int,
    run_id: str,
    source: str,
    alias: str | None,
    target: Path,
) -> LoadedModel:
    harden_environment()
    import mlflow.artifacts

    root = cache_root(settings, name)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        base = client.get_model_version_download_uri(name, str(version)).rstrip("/")
        rel = _package_path(base, staging, settings)
        try:
            fetched = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{base}/{rel}",
                    dst_path=str(staging / "download"),
                    tracking_uri=settings.mlflow_tracking_uri,
                )
            )
        except Exception as exc:  # MlflowException, OSError, boto errors: all mean "not downloadable"
            raise ModelLoaderError(f"cannot download the package of {name} v{version}: {exc}") from exc
        package_dir = staging / PACKAGE_DIR
        fetched.rename(package_dir)
        package = _load_package(package_dir, f"{name} v{version}")
        files = _hash_files(package_dir)
        manifest = {
            "name": name,
            "version": version,
            "run_id": run_id,
            "source": source,
            "package_path": rel,
            "downloaded_at": datetime.now(UTC).isoformat(),
            "files": files,
            "checksum": _combined(files),
        }
        for scratch in ("download", "mlmodel"):
            shutil.rmtree(staging / scratch, ignore_errors=True)
        (staging / CHECKSUM_FILE).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _install(staging, target)
        staging = target  # moved: nothing to clean up
        return LoadedModel(
            name=name,
            version=version,
            alias=alias,
            package=package,
            source_run_id=run_id,
            path=target / PACKAGE_DIR,
            checksum=str(manifest["checksum"]),
        )
    finally:
        if staging != target:
            shutil.rmtree(staging, ignore_errors=True)


def _package_path(base: str, staging: Path, settings: Settings) -> str:
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
    return _safe_relative(str(path))


def _safe_relative(path: str) -> str:
    """Refuse artifact paths that could leave the model's folder (absolute, ``..``, schemes, backslashes)."""
    pure = PurePosixPath(path)
    if not path or "\\" in path or ":" in path or pure.is_absolute() or ".." in pure.parts:
        raise ModelLoaderError(f"refusing unsafe package path {path!r} in MLmodel")
    return str(pure)


def _load_package(path: Path, what: str) -> ModelPackage:
    from models.package import ModelPackage

    extra = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file() and str(p.relative_to(path)) not in PACKAGE_FILES
    )
    if extra:
        log.warning("%s: ignoring unexpected files in the package (never opened): %s", what, ", ".join(extra))
    try:
        return ModelPackage.load(path)
    except ModelLoadError as exc:
        raise ModelLoaderError(f"{what}: the model package does not load: {exc}") from exc
    except Exception as exc:  # a corrupt file may surface as any library error
        raise ModelLoaderError(f"{what}: the model package does not load: {exc!r}") from exc


def _hash_files(folder: Path) -> dict[str, str]:
    """sha256 of each file the loader reads (only known package files)."""
    out = {}
    for rel in PACKAGE_FILES:
        path = folder / rel
        if path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _combined(files: dict[str, str]) -> str:
    payload = json.dumps(files, sort_keys=True).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def _install(staging: Path, target: Path) -> None:
    """Move a verified staging folder to ``target`` (replacing a stale copy; a concurrent winner is kept)."""
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        if not (target / CHECKSUM_FILE).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another process installed the same version first


def _read_manifest(target: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((target / CHECKSUM_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _load_cached(
    target: Path, manifest: dict[str, Any], name: str, alias: str | None, *, from_cache: bool, stale: bool
) -> LoadedModel:
    package_dir = target / PACKAGE_DIR
    files = _hash_files(package_dir)
    if files != manifest.get("files") or _combined(files) != manifest.get("checksum"):
        raise ModelLoaderError(f"cached model in {target} does not match its checksums")
    version = int(manifest["version"])
    package = _load_package(package_dir, f"{name} v{version} (cached)")
    return LoadedModel(
        name=name,
        version=version,
        alias=alias,
        package=package,
        source_run_id=str(manifest.get("run_id", "")),
        path=package_dir,
        checksum=str(manifest["checksum"]),
        from_cache=from_cache,
        stale=stale,
    )


def _pointer_path(settings: Settings, name: str, alias: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in alias)
    return cache_root(settings, name) / ALIASES_DIR / f"{safe}.json"


def _write_pointer(settings: Settings, name: str, alias: str, loaded: LoadedModel, mv: ModelVersion) -> None:
    path = _pointer_path(settings, name, alias)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "version": loaded.version,
        "source": str(mv.source or ""),
        "run_id": loaded.source_run_id,
        "checksum": loaded.checksum,
        "resolved_at": datetime.now(UTC).isoformat(),
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _load_stale(settings: Settings, name: str, alias: str, cause: BaseException) -> LoadedModel:
    pointer = _pointer_path(settings, name, alias)
    try:
        record = json.loads(pointer.read_text(encoding="utf-8"))
        version = int(record["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryUnavailableError(
            f"model registry unreachable while resolving {name}@{alias} ({cause}) "
            "and no cached model to fall back on"
        ) from exc
    target = cache_root(settings, name) / str(version)
    manifest = _read_manifest(target)
    if manifest is None or manifest.get("checksum") != record.get("checksum"):
        raise RegistryUnavailableError(
            f"model registry unreachable ({cause}) and the cached {name} v{version} "
            "is missing or was replaced"
        )
    try:
        loaded = _load_cached(target, manifest, name, alias, from_cache=True, stale=True)
    except ModelLoaderError as exc:
        raise RegistryUnavailableError(f"model registry unreachable ({cause}) and {exc}") from exc
    log.warning("model registry unreachable (%s); serving cached %s v%d for @%s", cause, name, version, alias)
    return loaded
