"""The outermost middleware: ``X-Model-Version`` on every response, latency metrics and one structured
access-log line per request. Neither the log nor the metric labels hold a user id: the route is the path
template (``/users/{user_id}``), never the raw path, and no query string or body is logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from service.limits import ASGIApp, Message, Receive, Scope, Send
from service.metrics import ServiceMetrics

ACCESS_LOGGER = "recops.access"
access_log = logging.getLogger(ACCESS_LOGGER)

VERSION_HEADER = b"x-model-version"
KNOWN_ROUTES = ("/recommendations", "/events", "/feedback", "/healthz", "/readyz", "/metrics", "/docs",
                "/openapi.json", "/redoc")  # fmt: skip


def route_template(scope: Scope) -> str:
    """The route's path template, or a fixed bucket for unknown paths (no raw path ever leaves here)."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = str(scope.get("path", ""))
    if path.startswith("/users/"):
        return "/users/{user_id}"
    return path if path in KNOWN_ROUTES else "other"


class ObserveMiddleware:
    """Adds the model version header, records latency and writes the access log."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, default_version: Callable[[], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.default_version = default_version
        self._latency: dict[tuple[str, int], Any] = {}  # (route, status) -> labelled histogram child

    def _observe(self, route: str, status: int, elapsed: float) -> None:
        child = self._latency.get((route, status))
        if child is None:  # routes are templates and statuses few: this stays small
            child = self.metrics.latency.labels(route=route, status=str(status))
            self._latency[(route, status)] = child
        child.observe(elapsed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})

        async def send_with_version(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                version = state.get("model_version")
                value = str(version) if version is not None else self.default_version()
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != VERSION_HEADER]
                headers.append((VERSION_HEADER, value.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_version)
        finally:
            elapsed = time.perf_counter() - start
            route = route_template(scope)
            self._observe(route, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                line = {
                    "method": scope.get("method"),
                    "route": route,
                    "status": status,
                    "ms": round(elapsed * 1000, 3),
                    "model_version": state.get("model_version"),
                    "variant": state.get("variant"),
                }
                access_log.info(orjson.dumps(line).decode())
