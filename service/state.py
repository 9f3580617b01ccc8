"""Everything one app instance holds, built at start-up and reached from a route through the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.settings import Settings
from service.batch_scoring import CoalescedScores
from service.holder import ModelHolder
from service.metrics import ServiceMetrics
from service.online_store import OnlineStore
from service.state_reads import CoalescedReads

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
    reads: CoalescedReads = field(init=False)  # the requests of one event-loop turn read in one round trip
    scores: CoalescedScores = field(init=False)  # ... and are scored in one product over the item factors

    def __post_init__(self) -> None:
        self.reads = CoalescedReads(lambda: self.store, self.metrics.read_batch.observe)
        self.scores = CoalescedScores()


def service_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.recops
    return state
