"""Everything one app instance holds, built at start-up and reached from a route through the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings
from service.holder import ModelHolder
from service.metrics import ServiceMetrics
from service.online_store import OnlineStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from starlette.requests import Request

    from service.feedback_writer import FeedbackWriter
    from service.watcher import ModelWatcher


@dataclass
class ServiceState:
    settings: Settings
    holder: ModelHolder
    metrics: ServiceMetrics
    store: OnlineStore
    watcher: ModelWatcher | None = None
    engine: Engine | None = None  # the metadata database (None: feedback unavailable)
    writer: FeedbackWriter | None = None
    store_suspect: bool = False  # the last online-store read failed: probe it off the event loop


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.recops
    return state
