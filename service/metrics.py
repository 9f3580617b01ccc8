"""Prometheus metrics of one app instance (its own registry, so several apps in one process do not clash).

With several uvicorn workers each process counts on its own; scrape each worker or run one per container.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class ServiceMetrics:
    """Every metric the scorer exports."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.latency = Histogram(
            "recops_request_seconds", "Request latency by route", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.scoring = Histogram(
            "recops_scoring_seconds", "In-process ranking time per recommendation", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_version = Gauge("recops_model_version", "Model version served", ["alias"], registry=r)
        self.swaps = Counter("recops_model_swaps_total", "Model versions swapped in", ["alias"], registry=r)
        self.refused = Counter(
            "recops_model_refused_total", "Model versions refused (load or smoke test failed)", ["alias"],
            registry=r,
        )  # fmt: skip
        self.poll_errors = Counter("recops_registry_poll_errors_total", "Failed registry polls", registry=r)
        self.fallbacks = Counter(
            "recops_fallbacks_total", "Recommendations served from the trending list", ["reason"], registry=r
        )
        self.recommendations = Counter(
            "recops_recommendations_total", "Recommendations served", ["variant"], registry=r
        )
        self.events = Counter(
            "recops_events_ingested_total", "Events written to the online store", registry=r
        )
        self.unknown_items = Counter(
            "recops_unknown_items_total", "Events or context items naming items the model does not know",
            registry=r,
        )  # fmt: skip
        self.feedback = Counter("recops_feedback_total", "Feedback rows accepted", ["kind"], registry=r)
        self.feedback_dropped = Counter(
            "recops_feedback_dropped_total",
            "Feedback or served-list rows dropped (queue full or write failed)", registry=r,
        )  # fmt: skip
        self.rate_limited = Counter("recops_rate_limited_total", "Requests refused with 429", registry=r)
