"""The HTTP routes: recommendations, events, feedback, forget, probes and metrics."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.feedback import forget_feedback
from service.identity import CHALLENGER, CHAMPION, new_recommendation_id, pseudonym, variant_for
from service.online_store import OnlineEvent, UserState
from service.ranking import RankRequest, rank
from service.schemas import (
    EventsRequest,
    EventsResponse,
    FeedbackRequest,
    FeedbackResponse,
    ForgetResponse,
    Health,
    RecommendationRequest,
    RecommendationResponse,
)
from service.serving import Serving
from service.state import ServiceState, service_state

log = logging.getLogger(__name__)
router = APIRouter()

NOT_READY: dict[int | str, dict[str, Any]] = {503: {"description": "no model loaded yet (retry shortly)"}}
LIMITS: dict[int | str, dict[str, Any]] = {
    413: {"description": "request body over the size limit"},
    429: {"description": "rate limit exceeded; see Retry-After"},
}


def _unavailable(detail: str) -> HTTPException:
    return HTTPException(status_code=503, detail=detail, headers={"Retry-After": "1"})


def _choose_model(st: ServiceState, user: str) -> tuple[Serving, str]:
    variant = variant_for(user, st.settings.serve_challenger_share)
    serving = st.holder.get(variant) if variant == CHALLENGER else None
    if serving is None:
        variant, serving = CHAMPION, st.holder.get(CHAMPION)
    if serving is None:
        raise _unavailable("no model loaded yet")
    return serving, variant


def _store_failed(st: ServiceState, exc: Exception) -> tuple[UserState, dict[str, bool]]:
    st.metrics.fallbacks.labels(reason="online_store").inc()
    log.warning("online store unavailable: %s", type(exc).__name__)
    return UserState(), {}


async def _online_state(st: ServiceState, user: str) -> tuple[UserState, dict[str, bool]]:
    """The shopper's online state, or an empty one when the store is down (the model alone answers).

    A healthy store is read on the event loop, together with every other request of the same loop turn
    (:class:`service.state_reads.CoalescedReads`: one pipelined round trip for all of them, cheaper than
    a thread hop each). After a failure, reads go to the thread pool one by one until one succeeds again,
    so a store that hangs until its socket timeout cannot stall the loop for every request.
    """
    if st.store_suspect:
        try:
            result = await run_in_threadpool(st.store.state, user)
        except Exception as exc:  # still down
            return _store_failed(st, exc)
        st.store_suspect = False
        return result
    try:
        return await st.reads.read(user)
    except Exception as exc:  # the online store is down: answer from the model alone
        st.store_suspect = True
        return _store_failed(st, exc)


@router.post("/recommendations", response_model=RecommendationResponse, responses={**NOT_READY, **LIMITS})
async def recommendations(body: RecommendationRequest, request: Request) -> Response:
    """Top-k items for a shopper, from their online history plus this session's items.

    Served by :class:`service.hot_path.RecommendationsHotPath` (a plain ASGI handler in front of the
    router, same code: :func:`recommend`); this declaration gives the OpenAPI schema and answers when the
    hot path hands a request on (a body that is not JSON).
    """
    payload = await recommend(service_state(request), body, request.scope.setdefault("state", {}))
    return Response(payload, media_type="application/json")


async def recommend(st: ServiceState, body: RecommendationRequest, state: dict[str, Any]) -> bytes:
    """The JSON answer to one recommendation request (``state``: the request's ASGI state, where the
    model version and variant are left for the access log and the ``X-Model-Version`` header).

    ``async``: the work is a few hundred microseconds of CPU, so it runs on the event loop instead of
    paying a thread-pool hop (and the GIL hand-offs it brings) per request. Raises HTTPException 503 when
    no model is loaded yet.
    """
    user = pseudonym(body.user_id, st.settings)
    serving, variant = _choose_model(st, user)
    state["model_version"] = serving.version
    state["variant"] = variant
    started = time.perf_counter()
    stored, stock = await _online_state(st, user)
    ctx = body.context
    history_ids = [*stored.recent, *ctx.session_items]
    history = serving.encode(history_ids)
    unknown = len(history_ids) - len(history)
    blocked = set(stored.bought) | set(ctx.exclude)
    if st.settings.serve_exclude_seen:
        blocked |= stored.seen | set(ctx.session_items)
    exclude = serving.encode_set(blocked)
    req = RankRequest(
        history=history, exclude=exclude, k=body.k, category=ctx.category, stock_overrides=stock
    )
    try:
        scores = await st.scores.score(serving, history) if len(history) else None
        ranking = rank(serving, req, st.settings.serve_mmr_lambda, scores)
    except Exception as exc:  # a model failure must not fail the request: trending items instead
        st.metrics.fallbacks.labels(reason="model_error").inc()
        log.error("%s v%d failed to score; trending items served: %r", serving.name, serving.version, exc)
        empty = np.zeros(0, dtype=np.int64)
        ranking = rank(serving, RankRequest(empty, exclude, body.k, ctx.category, stock), 1.0)
    if ranking.cold:
        st.metrics.fallbacks.labels(reason="cold_start").inc()
    if unknown:
        st.metrics.unknown_items.inc(unknown)
    scoring, served = st.metrics.per_variant(variant)
    scoring.observe(time.perf_counter() - started)
    served.inc()
    rec_id = new_recommendation_id(variant, serving.version)
    ids, cats, brands, prices, stocked = (
        serving.item_ids,
        serving.categories,
        serving.brands,
        serving.prices,
        serving.in_stock,
    )
    items = [
        {
            "item_id": ids[r.item],
            "score": r.score,
            "category": cats[r.item],
            "brand": brands[r.item],
            "price": prices[r.item],
            "in_stock": bool(stock.get(ids[r.item], stocked[r.item])) if stock else bool(stocked[r.item]),
            "explanation": r.reason,
        }
        for r in ranking.items
    ]
    if st.writer is not None:
        row = {
            "recommendation_id": rec_id,
            "user_id": user,
            "model_name": serving.name,
            "model_version": serving.version,
            "variant": variant,
            "items": [i["item_id"] for i in items],
            "created_at": datetime.now(UTC),
        }
        st.writer.submit("recommendation", [row])
    # Serialised here (orjson) instead of through the response model: the body is built from values whose
    # types match RecommendationResponse (the tests validate answers against it), and the model's second
    # validation and serialisation pass was ~5% of a worker's CPU under load (py-spy).
    payload = {
        "recommendation_id": rec_id,
        "model_name": serving.name,
        "model_version": serving.version,
        "variant": CHALLENGER if variant == CHALLENGER else CHAMPION,
        "cold_start": ranking.cold,
        "items": items,
    }
    return orjson.dumps(payload)


def _known(st: ServiceState, item_id: str) -> bool:
    slots = st.holder.snapshot()
    if not slots:
        return True  # no catalogue yet: keep the event, the model will filter what it does not know
    return any(item_id in serving.item_index for serving in slots.values())


def _too_long(field: str, message: str) -> JSONResponse:
    """422 in FastAPI's validation-error shape for a body list over its per-request bound."""
    return JSONResponse(
        status_code=422, content={"detail": [{"loc": ["body", field], "msg": message, "type": "too_long"}]}
    )


@router.post("/events", response_model=EventsResponse, responses={**LIMITS})
def events(body: EventsRequest, request: Request) -> EventsResponse | JSONResponse:
    """Real-time events into the online store; the shopper's next recommendation reflects them."""
    st = service_state(request)
    limit = st.settings.serve_max_events
    if len(body.events) > limit:
        return _too_long("events", f"at most {limit} events per request")
    now = datetime.now(UTC)
    accepted: list[OnlineEvent] = []
    unknown = 0
    for event in body.events:
        if not _known(st, event.item_id):
            unknown += 1
            continue
        accepted.append(
            OnlineEvent(
                user=pseudonym(event.user_id, st.settings),
                item_id=event.item_id,
                event_type=event.event_type,
                ts=(event.ts or now).astimezone(UTC),
                in_stock=event.in_stock,
            )
        )
    try:
        st.store.add_events(accepted)
    except Exception as exc:
        log.error("online store write failed: %s", type(exc).__name__)
        raise _unavailable("online store unavailable") from exc
    st.metrics.events.inc(len(accepted))
    if unknown:
        st.metrics.unknown_items.inc(unknown)
    return EventsResponse(accepted=len(accepted), unknown_items=unknown)


@router.post("/feedback", response_model=FeedbackResponse, status_code=202, responses={**NOT_READY, **LIMITS})
def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse | JSONResponse:
    """Impressions, clicks, add-to-cart and purchases against a recommendation id (stored durably)."""
    st = service_state(request)
    limit = st.settings.serve_max_events
    if len(body.feedback) > limit:
        return _too_long("feedback", f"at most {limit} rows per request")
    if st.writer is None:
        raise _unavailable("feedback store unavailable")
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for fb in body.feedback:
        suffix = fb.recommendation_id.rsplit(".", 1)[1]
        rows.append(
            {
                "recommendation_id": fb.recommendation_id,
                "user_id": pseudonym(fb.user_id, st.settings),
                "item_id": fb.item_id,
                "kind": fb.kind,
                "model_version": int(suffix[1:]),
                "variant": CHALLENGER if suffix[0] == "c" else CHAMPION,
                "ts": (fb.ts or now).astimezone(UTC),
            }
        )
    accepted = st.writer.submit("feedback", list(rows))
    for row in rows[:accepted]:
        st.metrics.feedback.labels(kind=row["kind"]).inc()
    return FeedbackResponse(accepted=accepted, dropped=len(rows) - accepted)


@router.delete("/users/{user_id}", response_model=ForgetResponse, responses={**NOT_READY, **LIMITS})
def forget_user(request: Request, user_id: str = Path(min_length=1, max_length=200)) -> ForgetResponse:
    """Forget a shopper: online state and every stored feedback row and served list."""
    st = service_state(request)
    user = pseudonym(user_id, st.settings)
    try:
        deleted_online = st.store.forget(user)
    except Exception as exc:
        raise _unavailable("online store unavailable; nothing was forgotten yet, retry") from exc
    if st.engine is None or st.writer is None:
        raise _unavailable("feedback store unavailable; online state forgotten, retry for feedback")
    st.writer.flush()
    try:
        rows = forget_feedback(st.engine, user)
    except Exception as exc:
        raise _unavailable("feedback store unavailable; online state forgotten, retry for feedback") from exc
    return ForgetResponse(online_state_deleted=deleted_online, feedback_rows_deleted=rows)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok", checked_at=datetime.now(UTC))


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> Health | JSONResponse:
    """Readiness: a champion is loaded and warmed and the online store answers."""
    st = service_state(request)
    models = {role: s.version for role, s in st.holder.snapshot().items()}
    if CHAMPION not in models:
        body = Health(status="loading", models=models, checked_at=datetime.now(UTC))
        return JSONResponse(status_code=503, content=body.model_dump(mode="json"))
    if not st.store.ping():
        body = Health(status="online store unavailable", models=models, checked_at=datetime.now(UTC))
        return JSONResponse(status_code=503, content=body.model_dump(mode="json"))
    return Health(status="ready", models=models, checked_at=datetime.now(UTC))


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics (of every worker when several run: see service.metrics)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(service_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
