"""Prometheus metrics of one app instance, and what ``GET /metrics`` exports.

One worker (the default): the metrics live in the app's own registry, so several apps in one process (tests)
do not clash. Several uvicorn workers (``python -m service --workers N``): ``service.__main__`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before any worker starts, each worker writes its values to
memory-mapped files there (prometheus_client's multiprocess mode), and ``registry`` holds a
``MultiProcessCollector`` that reads every worker's files, so whichever worker answers ``/metrics`` shows the
figures of all of them: counters and histograms summed, gauges merged by their ``multiprocess_mode``.
A worker marks itself dead on shutdown (:meth:`ServiceMetrics.close`) and, on start-up, marks workers that
died without shutting down, so the "live" gauges only count running workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = logging.getLogger(__name__)

#: The variable prometheus_client reads (once, when it is imported) to switch to multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(?P<pid>\d+)\.db$")


def shared_metrics_dir() -> Path | None:
    """The folder the workers of this start share, or None in single-process mode.

    Multiprocess mode needs both the variable and prometheus_client having seen it at import; a variable set
    after that import is ignored (with a warning), since the values already live in this process's memory.
    """
    value = os.environ.get(MULTIPROC_ENV, "")
    if not value:
        return None
    if values.ValueClass is values.MutexValue:
        log.warning(
            "%s was set after prometheus_client was imported: metrics of this process only", MULTIPROC_ENV
        )
        return None
    path = Path(value)
    if not path.is_dir():
        raise NotADirectoryError(f"{MULTIPROC_ENV}={value} is not a folder (python -m service creates it)")
    return path


def pid_running(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def forget_dead_workers(path: Path) -> list[int]:
    """Mark workers that left live-gauge files but no longer run (killed, crashed) as dead; their pids."""
    dead = set()
    for file in path.iterdir():
        match = _LIVE_GAUGE_FILE.match(file.name)
        if match and not pid_running(int(match["pid"])):
            dead.add(int(match["pid"]))
    for pid in sorted(dead):
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


#: Shoppers per coalesced online-store read (service.state_reads).
READ_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ServiceMetrics:
    """Every metric the scorer exports.

    Attributes:
        registry: what ``GET /metrics`` exports: this instance's metrics, or with a shared folder a collector
            of every worker's files (the metric objects then write to those files, registered nowhere).
        shared_dir: the multiprocess folder (default: :func:`shared_metrics_dir`); None = single process.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    shared_dir: Path | None = field(default_factory=shared_metrics_dir)

    def __post_init__(self) -> None:
        r: CollectorRegistry | None = self.registry
        if self.shared_dir is not None:
            forget_dead_workers(self.shared_dir)
            MultiProcessCollector(self.registry, path=str(self.shared_dir))  # type: ignore[no-untyped-call]
            r = None
        self.latency = Histogram(
            "recops_request_seconds", "Request latency by route", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.scoring = Histogram(
            "recops_scoring_seconds", "In-process ranking time per recommendation", ["variant"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        # Several workers: the highest version a running worker serves (they swap within one poll interval).
        self.model_version = Gauge(
            "recops_model_version", "Model version served", ["alias"], registry=r, multiprocess_mode="livemax"
        )
        self.swaps = Counter("recops_model_swaps_total", "Model versions swapped in", ["alias"], registry=r)
        self.refused = Counter(
            "recops_model_refused_total", "Model versions refused (load or smoke test failed)", ["alias"],
            registry=r,
        )  # fmt: skip
        self.poll_errors = Counter("recops_registry_poll_errors_total", "Failed registry polls", registry=r)
        self.prefetched = Counter(
            "recops_model_prefetched_total", "Versions downloaded and verified ahead of a move", registry=r
        )
        self.notices = Counter(
            "recops_registry_notices_total", "Alias-move notices received (each triggers a poll)", registry=r
        )
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
        self.read_batch = Histogram(
            "recops_online_read_batch", "Shoppers read from the online store per round trip (coalesced)",
            buckets=READ_BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self._variant_children: dict[str, tuple[Any, Any]] = {}

    def per_variant(self, variant: str) -> tuple[Any, Any]:
        """The scoring-time histogram and served counter of one variant (labelled children, cached: a
        ``labels()`` lookup per request is a lock and a dict build)."""
        children = self._variant_children.get(variant)
        if children is None:
            children = (self.scoring.labels(variant=variant), self.recommendations.labels(variant=variant))
            self._variant_children[variant] = children
        return children

    def close(self) -> None:
        """At worker shutdown: drop this process from the live gauges (its counters keep counting)."""
        if self.shared_dir is not None:
            with contextlib.suppress(OSError):
                mark_process_dead(os.getpid(), str(self.shared_dir))  # type: ignore[no-untyped-call]
