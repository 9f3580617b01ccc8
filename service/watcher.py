"""Follow the registry: load each alias at start-up, then poll it and hot-swap new versions.

Start-up uses the verified loader with ``allow_stale=True``, so the last good version cached on disk serves
when MLflow is down. Each poll asks only which version an alias names (:func:`registry.loader.peek_alias`);
a new version is loaded (verified, no unpickling), precomputed, warmed and smoke-tested in this background
thread, then swapped in. A version that fails any of that is refused (counted, retried only after
``REFUSED_RETRY_POLLS`` polls) while the old one keeps serving.

When a poll happens: every ``serve_poll_interval_s`` from the start of the previous one (a fixed rate, so a
slow load does not push the next poll back), and at once when an alias-move notice arrives on the Redis
channel ``<redis_prefix>registry:aliases`` (:mod:`registry.notices`, published by the registry steps
that move aliases; only when ``RECOPS_REDIS_URL`` is set).
A notice is only a hint to poll now: its content is not trusted, the registry is asked as on any poll, so a
lost or forged notice costs at most one extra peek. Without notices (no Redis, or the channel
down) a move is seen within one interval plus the peek and the load; with one, within the load time.
The load is short when the new version was prefetched: each poll also downloads and verifies, into the
disk cache only, the version the ``challenger`` alias names (registration sets it; promotion then moves
champion to it), so a promotion costs a registry call and a local load, not a download.
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
from registry.notices import notice_channel
from service.holder import ModelHolder
from service.metrics import ServiceMetrics
from service.serving import build_serving, smoke_test

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

REFUSED_RETRY_POLLS = 20
#: Aliases whose version is downloaded and verified ahead of a move (when they are not served already).
PREFETCH_ALIASES = ("challenger",)
NOTICE_RETRY_S = 5.0


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
        self.prefetched: dict[str, int] = {}  # alias -> the version last prefetched (or tried)
        self._client: MlflowClient | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by a notice (or stop): poll now
        self._thread: threading.Thread | None = None
        self._listener: threading.Thread | None = None
        self.started_up = threading.Event()
        self.listening = threading.Event()  # subscribed to the notice channel
        self.last_load_s = 0.0  # download + verify + load of the last version followed
        self.last_warm_s = 0.0  # precompute + smoke test of the last version installed

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Load every alias and poll them in a daemon thread until :meth:`stop`."""
        url = self.settings.redis_url.get_secret_value() if self.settings.redis_url is not None else ""
        if url:
            self._listener = threading.Thread(
                target=self._listen, args=(url,), name="recops-alias-notices", daemon=True
            )
            self._listener.start()
        self._thread = threading.Thread(target=self._run, name="recops-model-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout=timeout_s)

    def _run(self) -> None:
        try:
            self.start_up()
        finally:
            self.started_up.set()
        interval = self.settings.serve_poll_interval_s
        next_poll = time.monotonic() + interval
        while True:
            self._wake.wait(max(0.0, next_poll - time.monotonic()))
            if self._stop.is_set():
                return
            self._wake.clear()  # before polling: a notice that arrives during this poll triggers another
            started = time.monotonic()
            next_poll = started + interval  # fixed rate from the start of this poll
            try:
                self.poll_once()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("model watcher poll failed")

    def _listen(self, url: str) -> None:
        """Wake the poll loop on each alias-move notice; reconnect after a failure until :meth:`stop`."""
        import redis

        channel = notice_channel(self.settings)
        while not self._stop.is_set():
            client: Any = redis.Redis.from_url(url, socket_connect_timeout=2, health_check_interval=30)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                self.listening.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.metrics.notices.inc()
                        self._wake.set()
            except Exception as exc:  # Redis down: polling still follows the registry; try again later
                log.warning("alias notices unavailable (%s); polling only", type(exc).__name__)
                self._stop.wait(NOTICE_RETRY_S)
            finally:
                self.listening.clear()
                client.close()

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
        """Check every alias once and swap in versions that changed; then prefetch what may come next."""
        for role, alias in self.aliases.items():
            try:
                version = peek_alias(alias, settings=self.settings, client=self._mlflow())
            except Exception as exc:  # registry unreachable: keep serving what we have
                self.metrics.poll_errors.inc()
                log.warning("cannot poll %s@%s: %s", self.settings.model_name, alias, exc)
                self._client = None
                continue
            self._follow(role, alias, version)
        for alias in PREFETCH_ALIASES:
            if alias not in self.aliases.values():
                self._prefetch(alias)

    def _prefetch(self, alias: str) -> None:
        """Download and verify the version ``alias`` names into the disk cache, without serving it.

        The promotion step moves champion to the challenger's version: with the package already cached and
        verified, following that move costs one registry call and a local load instead of a download, so
        the swap lands well within one poll interval of the move. Failures are logged only (the version is
        verified again when an alias that is served names it)."""
        try:
            version = peek_alias(alias, settings=self.settings, client=self._mlflow())
        except Exception as exc:  # the next poll tries again
            log.debug("cannot peek %s@%s: %s", self.settings.model_name, alias, exc)
            return
        served = {serving.version for serving in self.holder.snapshot().values()}
        if version is None or version in served or self.prefetched.get(alias) == version:
            return
        self.prefetched[alias] = version  # tried once per version, whatever the outcome
        started = time.perf_counter()
        try:
            load_alias(alias, settings=self.settings, client=self._mlflow(), allow_stale=False)
        except Exception as exc:
            log.warning("prefetch of %s@%s v%d failed: %s", self.settings.model_name, alias, version, exc)
            return
        self.metrics.prefetched.inc()
        log.info("prefetched %s v%d (%s) in %.2f s", self.settings.model_name, version, alias,
                 time.perf_counter() - started)  # fmt: skip

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
        started = time.perf_counter()
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
        self.last_load_s = time.perf_counter() - started
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
        started = time.perf_counter()
        try:
            serving = build_serving(loaded, role)
            smoke_test(serving)
        except Exception as exc:
            self._refuse(role, loaded.version, exc)
            return False
        self.last_warm_s = time.perf_counter() - started
        old = self.holder.swap(role, serving)
        self.metrics.model_version.labels(alias=role).set(serving.version)
        if old is not None:
            self.metrics.swaps.labels(alias=role).inc()
        log.info(
            "%s: serving %s v%d (%s%s; load %.2f s, warm-up %.2f s)", role, serving.name, serving.version,
            serving.family, ", from cache" if serving.loaded_from == "cache" else "", self.last_load_s,
            self.last_warm_s,
        )  # fmt: skip
        return True

    def status(self) -> dict[str, Any]:
        """What is served per role (for logs and /readyz)."""
        return {role: serving.version for role, serving in self.holder.snapshot().items()}
