"""``POST /recommendations`` as a plain ASGI handler in front of FastAPI's router (the hot endpoint).

The route is still declared in :mod:`service.routes` (OpenAPI schema, docs) and both paths run the same
:func:`service.routes.recommend`; this handler only skips the framework's per-request work: route matching,
dependency solving, ``json.loads`` followed by a second validation pass over the resulting dict, and the
``Response`` object. The body (already bounded by :class:`service.limits.BodyLimitMiddleware`) is parsed and
validated in one pass by ``RecommendationRequest.model_validate_json``. Answers keep the API's contract:
200 with the JSON body, 422 in FastAPI's validation-error shape (``loc`` starts with ``"body"``, the input
is never echoed), 503 with ``Retry-After`` when no model is loaded. A request whose ``Content-Type`` is not
JSON is handed on to FastAPI unchanged, so its behaviour there stays the reference.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException
from pydantic import ValidationError

from service.limits import ASGIApp, Receive, Scope, Send
from service.routes import recommend
from service.schemas import RecommendationRequest
from service.state import ServiceState

PATH = "/recommendations"
JSON_HEADERS = [(b"content-type", b"application/json")]


def _is_json(scope: Scope) -> bool:
    """No Content-Type (FastAPI parses the body as JSON then too) or a JSON one (``application/json``,
    ``application/*+json``, parameters allowed)."""
    name: bytes
    value: bytes
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return True


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic errors of the body as FastAPI reports them (``loc`` under ``body``), without the input."""
    return [
        {"loc": ["body", *(str(p) for p in err["loc"])], "msg": str(err["msg"]), "type": str(err["type"])}
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RecommendationsHotPath:
    """Answers ``POST /recommendations`` itself; every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, st: ServiceState) -> None:
        self.app = app
        self.st = st

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        try:
            request = RecommendationRequest.model_validate_json(body)
        except ValidationError as exc:
            await _send(send, 422, orjson.dumps({"detail": validation_detail(exc)}))
            return
        try:
            payload = await recommend(self.st, request, scope.setdefault("state", {}))
        except HTTPException as exc:  # 503: no model loaded yet
            headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            await _send(send, exc.status_code, orjson.dumps({"detail": exc.detail}), headers)
            return
        await _send(send, 200, payload)
