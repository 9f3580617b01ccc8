"""The FastAPI app: built by :func:`create_app`, started by ``python -m service`` (``recops serve``).

Start-up (lifespan): the online store (Redis when ``RECOPS_REDIS_URL`` is set, else in memory) and its seed,
the feedback tables and their background writer, then the model watcher thread, which loads the aliases
(from the disk cache when MLflow is down) and hot-swaps new versions. ``/readyz`` answers 503 until a
champion is loaded and warmed. Shutdown stops the watcher and drains the feedback queue.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.settings import Settings, get_settings
from service.holder import ModelHolder
from service.hot_path import RecommendationsHotPath
from service.identity import CHALLENGER, CHAMPION
from service.limits import BodyLimitMiddleware, RateLimitMiddleware
from service.metrics import ServiceMetrics
from service.observe import ObserveMiddleware
from service.online_store import InMemoryStore, OnlineStore, StoreLimits
from service.routes import router
from service.state import ServiceState

log = logging.getLogger(__name__)


def store_limits(settings: Settings) -> StoreLimits:
    return StoreLimits(
        history_length=settings.serve_history_length,
        seen_length=settings.serve_seen_length,
        ttl_s=settings.serve_history_ttl_s,
    )


def make_store(settings: Settings) -> OnlineStore:
    """Redis when ``RECOPS_REDIS_URL`` is set, else a process-local store."""
    if settings.redis_url is not None and settings.redis_url.get_secret_value():
        from service.redis_store import RedisStore

        return RedisStore(
            settings.redis_url.get_secret_value(), settings.redis_prefix, store_limits(settings)
        )
    return InMemoryStore(store_limits(settings))


def watched_aliases(settings: Settings) -> dict[str, str]:
    """Role -> registry alias: the champion always, the challenger only when the A/B split is on."""
    aliases = {CHAMPION: settings.serve_champion_alias}
    if settings.serve_challenger_share > 0:
        aliases[CHALLENGER] = settings.serve_challenger_alias
    return aliases


def _start_feedback(st: ServiceState) -> None:
    from core.feedback import create_feedback_tables, feedback_engine
    from service.feedback_writer import FeedbackWriter

    try:
        engine = feedback_engine(st.settings)
        create_feedback_tables(engine)
    except Exception as exc:  # the service still recommends; feedback routes answer 503
        log.error("feedback store unavailable (%s): POST /feedback will answer 503", type(exc).__name__)
        return
    st.engine = engine
    st.writer = FeedbackWriter(engine, st.metrics, st.settings.serve_feedback_queue)


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 without echoing the input back (it may hold a user id or be large)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type")),
        }
        for err in errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def create_app(
    settings: Settings | None = None, *, store: OnlineStore | None = None, watch: bool = True
) -> FastAPI:
    """Build the scoring app.

    Args:
        settings: default :func:`core.settings.get_settings`.
        store: an online store to use instead of the one settings name (tests).
        watch: start the model watcher (False: the caller installs models into ``app.state.recops.holder``).
    """
    settings = settings or get_settings()
    metrics = ServiceMetrics()
    holder = ModelHolder()
    st = ServiceState(settings=settings, holder=holder, metrics=metrics, store=store or make_store(settings))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from core.logs import flush_buffered_logs
        from service.seed import load_online_seed
        from service.watcher import ModelWatcher

        try:
            load_online_seed(settings, st.store)
        except Exception as exc:  # e.g. Redis down at start-up: serve without the seed
            log.error("online seed not loaded: %s", exc)
        _start_feedback(st)
        if watch:
            st.watcher = ModelWatcher(settings, holder, metrics, watched_aliases(settings))
            st.watcher.start()
        try:
            yield
        finally:
            if st.watcher is not None:
                st.watcher.stop()
            if st.writer is not None:
                st.writer.close()
            st.store.close()
            metrics.close()  # several workers: leave the live gauges
            flush_buffered_logs()  # uvicorn re-raises SIGTERM after this: no exit hooks would run

    app = FastAPI(
        title="recops scorer",
        version="1",
        summary="Real-time recommendations from the model the registry's champion alias names",
        lifespan=lifespan,
    )
    app.state.recops = st
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)

    def default_version() -> str:
        serving = holder.get(CHAMPION)
        return str(serving.version) if serving is not None else "none"

    # Added last = outermost: observe (header, log, metrics) -> rate limit -> body limit -> the hot path of
    # POST /recommendations (service.hot_path) -> FastAPI's router for everything else.
    app.add_middleware(RecommendationsHotPath, st=st)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve_max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        rate=settings.serve_rate_limit_per_s,
        burst=settings.serve_rate_limit_burst,
        on_limited=metrics.rate_limited.inc,
    )
    app.add_middleware(ObserveMiddleware, metrics=metrics, default_version=default_version)
    return app


def app_factory() -> Any:
    """What ``uvicorn --factory`` calls in each worker: logging, no pickle, one BLAS thread, the app."""
    from core.logs import setup_logging
    from models.threads import limit_threads
    from registry.client import harden_environment
    from service.observe import ACCESS_LOGGER

    settings = get_settings()
    setup_logging(settings.log_level, buffered=(ACCESS_LOGGER,), lean=True)
    harden_environment()
    limit_threads()
    return create_app(settings)
