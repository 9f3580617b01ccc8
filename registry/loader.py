"""The one way to load a registered model: by alias, through the registry, verified, without unpickling.

The scorer, ``recops recommend`` and the promotion gate all call :func:`load_alias`, so the gate tests
exactly what will serve. Steps:

1. resolve the alias with ``MlflowClient.get_model_version_by_alias`` (never stages, never search APIs);
2. read the version's ``MLmodel`` file with ``yaml.safe_load`` to find where the pyfunc stored the
   ``package`` artifact, and download *only* that folder (never ``python_model.pkl`` or anything else);
3. verify every downloaded file against the checksums recorded at registration
   (:mod:`registry.integrity`) *before* anything is opened or cached: a mismatch raises
   :class:`ChecksumMismatchError` naming the file;
4. load it with :meth:`models.package.ModelPackage.load` (JSON, Parquet and safetensors only);
5. keep it under ``<runtime>/model-cache/<name>/<version>/`` with a ``checksum.json`` of every file, plus a
   pointer ``aliases/<alias>.json`` to the last version each alias resolved to and loaded. A cached copy is
   re-hashed on every load and compared with the registry's checksums when the registry is reachable.

**Last good model.** With ``allow_stale=True`` (the default; the scorer and ``recops recommend``),
:func:`load_alias` never hands out an unverified or broken model: when the registry cannot be reached, or
the version the alias now names fails to download, verify or load, it returns the last version the alias
resolved to, from the cache, if that copy still matches its checksums (``LoadedModel.stale`` is True and
``fallback_reason`` says why). With ``allow_stale=False`` (the gate) and in :func:`load_version` (rollback)
the error is raised instead.

``mlflow.pyfunc.load_model``, cloudpickle and ``torch.load`` are never used here, and
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is forced to ``false`` before MLflow is imported.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from models.base import ModelLoadError
from models.package import digest_of, file_checksums
from registry.aliases import resolve_alias
from registry.client import harden_environment, is_not_found, mlflow_client
from registry.fetch import (
    PACKAGE_DIR,
    AliasNotFoundError,
    ChecksumMismatchError,
    ModelLoaderError,
    RegistryUnavailableError,
    UnverifiableModelError,
    download_package,
    one_line,
)
from registry.fetch import safe_relative as _safe_relative
from registry.integrity import ExpectedChecksums, expected_checksums, mismatches
from registry.model_cache import (
    CACHE_FORMAT,
    CHECKSUM_FILE,
    cache_root,
    install,
    local_problems,
    pointer_path,
    read_json,
    read_manifest,
    write_json,
)
from registry.tags import TAG_PACKAGE_DIGEST, TAG_PACKAGE_FILES

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from models.package import ModelPackage

log = logging.getLogger(__name__)

__all__ = [
    "AliasNotFoundError",
    "ChecksumMismatchError",
    "LoadedModel",
    "ModelLoaderError",
    "RegistryUnavailableError",
    "UnverifiableModelError",
    "_safe_relative",
    "cache_root",
    "download_package",
    "load_alias",
    "load_version",
    "peek_alias",
]

#: Files the loader opens; anything else in a package is never opened.
PACKAGE_FILES = ("package.json", "items.parquet", "model/config.json", "model/weights.safetensors")


@dataclass(frozen=True)
class LoadedModel:
    """A model version loaded from its package, with where it came from."""

    name: str
    version: int
    alias: str | None
    package: ModelPackage
    source_run_id: str
    path: Path
    checksum: str  # the package digest (models.package.digest_of its files)
    from_cache: bool = False
    stale: bool = False  # not what the alias names now: the last good version it resolved to
    fallback_reason: str = ""  # why a stale model was returned (registry unreachable, version refused)


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
        allow_stale: when the registry is unreachable, or the version the alias names fails to download,
            verify or load, return the last good version of the alias from the cache instead of raising.
    Raises:
        AliasNotFoundError: the model or alias does not exist.
        RegistryUnavailableError: the registry is unreachable and no verified cached copy exists.
        ChecksumMismatchError: the version's package does not match its recorded checksums (and there is
            no last good version to stand in, or ``allow_stale`` is False).
        ModelLoaderError: the version's artifacts are missing, corrupt or unsafe.
    """
    name = settings.model_name
    try:
        client = client or mlflow_client(settings)
        mv = resolve_alias(client, name, alias)
    except Exception as exc:  # MlflowException, requests/SQLAlchemy errors: the registry is unreachable
        reason = f"model registry unreachable while resolving {name}@{alias}: {one_line(exc)}"
        if not allow_stale:
            raise RegistryUnavailableError(reason) from exc
        return _load_last_good(settings, name, alias, reason, exc)
    if mv is None:
        raise AliasNotFoundError(f"registered model {name!r} has no version with alias {alias!r}")
    try:
        loaded = _load_model_version(client, settings, mv, alias)
    except AliasNotFoundError:
        raise
    except ModelLoaderError as exc:
        if not allow_stale:
            raise
        try:
            fallback = _load_last_good(settings, name, alias, f"{name} v{mv.version} refused: {exc}", exc)
        except RegistryUnavailableError:
            raise exc from None
        if fallback.version == int(mv.version):
            raise  # its cached copy is not what the registry recorded either
        return fallback
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


def _expected(client: MlflowClient, settings: Settings, mv: ModelVersion) -> ExpectedChecksums:
    """The checksums ``mv``'s package must match; enforces the policy for versions that record none."""
    name, version = str(mv.name), int(mv.version)
    tags = dict(mv.tags or {})
    run_tags: dict[str, str] | None = None
    if not (tags.get(TAG_PACKAGE_FILES) or tags.get(TAG_PACKAGE_DIGEST)) and mv.run_id:
        try:
            run_tags = dict(client.get_run(str(mv.run_id)).data.tags)
        except Exception as exc:  # a deleted run: nothing to verify against
            log.warning("cannot read the source run of %s v%d: %s", name, version, one_line(exc))
    try:
        expected = expected_checksums(tags, run_tags, f"{name} v{version}")
    except ValueError as exc:
        raise ChecksumMismatchError(str(exc)) from exc
    if not expected.known:
        message = f"{name} v{version} records no package checksums (registered before recops recorded them)"
        if settings.env == "production":
            raise UnverifiableModelError(
                f"{message}: unverified models are refused in production; retrain and register a new version"
            )
        log.warning("%s: loading it unverified (RECOPS_ENV=%s)", message, settings.env)
    return expected


def _load_model_version(
    client: MlflowClient, settings: Settings, mv: ModelVersion, alias: str | None
) -> LoadedModel:
    name, version = str(mv.name), int(mv.version)
    run_id, source = str(mv.run_id or ""), str(mv.source or "")
    expected = _expected(client, settings, mv)
    target = cache_root(settings, name) / str(version)
    manifest = read_manifest(target)
    if manifest is not None and manifest.get("source") == source and manifest.get("run_id") == run_id:
        try:
            return _load_cached(target, manifest, name, alias, expected=expected)
        except ModelLoaderError as exc:
            log.warning("cached copy of %s v%d is unusable (%s); downloading again", name, version, exc)
    return _download_and_load(client, settings, mv, alias, target, expected)


def _download_and_load(
    client: MlflowClient,
    settings: Settings,
    mv: ModelVersion,
    alias: str | None,
    target: Path,
    expected: ExpectedChecksums,
) -> LoadedModel:
    name, version = str(mv.name), int(mv.version)
    what = f"{name} v{version}"
    root = cache_root(settings, name)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
    try:
        base = client.get_model_version_download_uri(name, str(version))
        package_dir = download_package(base, staging, settings, what)
        files = file_checksums(package_dir)
        problems = mismatches(files, expected)
        if problems:
            raise ChecksumMismatchError(
                f"{what}: the downloaded package does not match {expected.source} "
                f"({'; '.join(problems)}); nothing was loaded or cached. The artifact store holds corrupt "
                "or altered files: roll back or retrain and register a new version"
            )
        _report_unopened(files, what, registered=expected.files is not None)
        package = _load_package(package_dir, what)
        manifest = {
            "format": CACHE_FORMAT,
            "name": name,
            "version": version,
            "run_id": str(mv.run_id or ""),
            "source": str(mv.source or ""),
            "downloaded_at": datetime.now(UTC).isoformat(),
            "files": files,
            "checksum": digest_of(files),
            "verified_against": expected.digest or "",
        }
        write_json(staging / CHECKSUM_FILE, manifest)
        install(staging, target)
        staging = target  # moved: nothing to clean up
        return LoadedModel(
            name=name,
            version=version,
            alias=alias,
            package=package,
            source_run_id=str(mv.run_id or ""),
            path=target / PACKAGE_DIR,
            checksum=str(manifest["checksum"]),
        )
    finally:
        if staging != target:
            shutil.rmtree(staging, ignore_errors=True)


def _report_unopened(files: dict[str, str], what: str, *, registered: bool) -> None:
    extra = sorted(rel for rel in files if rel not in PACKAGE_FILES)
    if extra:
        state = "registered with the package" if registered else "unexpected"
        log.warning("%s: files %s (never opened): %s", what, state, ", ".join(extra))


def _load_package(path: Path, what: str) -> ModelPackage:
    from models.package import ModelPackage

    try:
        return ModelPackage.load(path)
    except ModelLoadError as exc:
        raise ModelLoaderError(f"{what}: the model package does not load: {exc}") from exc
    except Exception as exc:  # a corrupt file may surface as any library error
        raise ModelLoaderError(f"{what}: the model package does not load: {exc!r}") from exc


def _load_cached(
    target: Path,
    manifest: dict[str, Any],
    name: str,
    alias: str | None,
    *,
    expected: ExpectedChecksums | None,
    fallback_reason: str = "",
) -> LoadedModel:
    """Load a cached copy after re-hashing it: against its own manifest always, and against the registry's
    checksums when they are known (``expected``; None when the registry cannot be asked)."""
    files, problems = local_problems(target, manifest)
    if problems:
        detail = "; ".join(problems)
        raise ModelLoaderError(f"cached model in {target} does not match its checksums ({detail})")
    version = int(manifest["version"])
    if expected is not None:
        problems = mismatches(files, expected)
        if problems:
            raise ChecksumMismatchError(
                f"cached {name} v{version} does not match {expected.source} ({'; '.join(problems)})"
            )
    package = _load_package(target / PACKAGE_DIR, f"{name} v{version} (cached)")
    return LoadedModel(
        name=name,
        version=version,
        alias=alias,
        package=package,
        source_run_id=str(manifest.get("run_id", "")),
        path=target / PACKAGE_DIR,
        checksum=str(manifest["checksum"]),
        from_cache=True,
        stale=bool(fallback_reason),
        fallback_reason=fallback_reason,
    )


def _write_pointer(settings: Settings, name: str, alias: str, loaded: LoadedModel, mv: ModelVersion) -> None:
    record = {
        "version": loaded.version,
        "source": str(mv.source or ""),
        "run_id": loaded.source_run_id,
        "checksum": loaded.checksum,
        "resolved_at": datetime.now(UTC).isoformat(),
    }
    write_json(pointer_path(settings, name, alias), record)


def _load_last_good(
    settings: Settings, name: str, alias: str, reason: str, cause: BaseException
) -> LoadedModel:
    """The last version ``alias`` resolved to and loaded, from the cache, re-verified (``stale=True``)."""
    record = read_json(pointer_path(settings, name, alias)) or {}
    try:
        version = int(record["version"])
    except (KeyError, TypeError, ValueError):
        raise RegistryUnavailableError(f"{reason}; and no cached model to fall back on") from cause
    target = cache_root(settings, name) / str(version)
    manifest = read_manifest(target)
    if manifest is None or manifest.get("checksum") != record.get("checksum"):
        raise RegistryUnavailableError(
            f"{reason}; and the cached {name} v{version} is missing or was replaced"
        ) from cause
    try:
        loaded = _load_cached(target, manifest, name, alias, expected=None, fallback_reason=reason)
    except ModelLoaderError as exc:
        raise RegistryUnavailableError(f"{reason}; and {exc}") from cause
    log.warning("%s; serving the last good cached %s v%d for @%s", reason, name, version, alias)
    return loaded
