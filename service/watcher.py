"""Follow the registry: load each alias at start-up, then poll it and hot-swap new versions.

Start-up uses the verified loader with ``allow_stale=True``, so the last good version cached on disk serves
when MLflow is down. Each poll asks only which version an alias names (:func:`registry.loader.peek_alias`);
a new version is loaded (verified, no unpickling), precomputed, warmed and smoke-tested in this background
thread, then swapped in. A version that fails any of that is refused (counted, retried only after
``REFUSED_RETRY_POLLS`` polls) while the old one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from registry.loader import (
    AliasNotFoundError,
    LoadedModel,
    RegistryUnavailableError,
    load_alias,
    peek_alias,
)
from registry.model_cache import pointer_path, read_json, write_json
from service.holder import ModelHolder
from service.metrics import ServiceMetrics
from service.serving import build_serving, smoke_test

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

REFUSED_RETRY_POLLS = 20


class ModelWatcher:
    """Loads and hot-swaps the versions of a set of aliases (``role -> registry alias``)."""

    def __init__(
        self, settings: Settings, holder: ModelHolder, metrics: ServiceMetrics, aliases: dict[str, str]
    ) -> None:
        self.settings = settings
        self.holder = holder
        self.metrics = metrics
        self.aliases = aliases
        self.refused: dict[tuple[str, int], float] = {}  # (role, version) -> when it may be tried again
        self._client: MlflowClient | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_up = threading.Event()

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load every alias and poll them in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="recops-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        try:
            self.start_up()
        finally:
            self.started_up.set()
        while not self._stop.wait(self.settings.serve_poll_interval_s):
            try:
                self.poll_once()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("model watcher poll failed")

    # ------------------------------------------------------------------------------------------ steps
    def _mlflow(self) -> MlflowClient:
        if self._client is None:
            from registry.client import mlflow_client

            self._client = mlflow_client(self.settings)
        return self._client

    def start_up(self) -> None:
        """Load each alias once, falling back to the last good cached version when MLflow is down."""
        for role, alias in self.aliases.items():
            try:
                loaded = load_alias(alias, settings=self.settings, allow_stale=True)
            except AliasNotFoundError as exc:
                log.info("%s: %s", role, exc)
                continue
            except Exception as exc:  # registry down and nothing cached, or a broken version: keep polling
                log.warning("%s (%s) not loaded at start-up: %s", role, alias, exc)
                self._client = None
                continue
            if loaded.stale:
                log.warning("%s: serving cached v%d (%s)", role, loaded.version, loaded.fallback_reason)
            self.install(role, loaded)

    def poll_once(self) -> None:
        """Check every alias once and swap in versions that changed."""
        for role, alias in self.aliases.items():
            try:
                version = peek_alias(alias, settings=self.settings, client=self._mlflow())
            except Exception as exc:  # registry unreachable: keep serving what we have
                self.metrics.poll_errors.inc()
                log.warning("cannot poll %s@%s: %s", self.settings.model_name, alias, exc)
                self._client = None
                continue
            self._follow(role, alias, version)

    def _follow(self, role: str, alias: str, version: int | None) -> None:
        current = self.holder.get(role)
        if version is None:
            if current is not None and role != "champion":
                self.holder.drop(role)
                self.metrics.model_version.labels(alias=role).set(0)
                log.info("%s alias %s removed: stopped serving v%d", role, alias, current.version)
            return
        if current is not None and current.version == version:
            return
        retry_at = self.refused.get((role, version))
        if retry_at is not None and time.monotonic() < retry_at:
            return
        pointer = pointer_path(self.settings, self.settings.model_name, alias)
        last_good = read_json(pointer)
        try:
            loaded = load_alias(alias, settings=self.settings, client=self._mlflow(), allow_stale=False)
        except RegistryUnavailableError as exc:
            self.metrics.poll_errors.inc()
            log.warning("registry unreachable while loading %s v%d: %s", alias, version, exc)
            self._client = None
            return
        except Exception as exc:  # checksum mismatch, missing or corrupt files: refuse this version
            self._refuse(role, version, exc)
            return
        if not self.install(role, loaded) and last_good is not None:
            # The loader recorded the version as the alias's last good one before our smoke test refused it:
            # point back at the version that served, so a restart with MLflow down does not pick it up.
            write_json(pointer, last_good)

    def _refuse(self, role: str, version: int, exc: BaseException) -> None:
        self.refused[(role, version)] = (
            time.monotonic() + REFUSED_RETRY_POLLS * self.settings.serve_poll_interval_s
        )
        self.metrics.refused.labels(alias=role).inc()
        current = self.holder.get(role)
        keeps = f"v{current.version} keeps serving" if current else "nothing is served"
        log.error("%s v%d refused (%s): %s", role, version, keeps, exc)

    def install(self, role: str, loaded: LoadedModel) -> bool:
        """Precompute, warm and smoke-test ``loaded``, then swap it in; False when it was refused."""
        try:
            serving = build_serving(loaded, role)
            smoke_test(serving)
        except Exception as exc:
            self._refuse(role, loaded.version, exc)
            return False
        old = self.holder.swap(role, serving)
        self.metrics.model_version.labels(alias=role).set(serving.version)
        if old is not None:
            self.metrics.swaps.labels(alias=role).inc()
        log.info(
            "%s: serving %s v%d (%s%s)", role, serving.name, serving.version, serving.family,
            ", from cache" if serving.loaded_from == "cache" else "",
        )  # fmt: skip
        return True

    def status(self) -> dict[str, Any]:
        """What is served per role (for logs and /readyz)."""
        return {role: serving.version for role, serving in self.holder.snapshot().items()}
