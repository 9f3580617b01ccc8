"""Drift between the champion's training data and recent batches: pure functions (frames in, numbers out).

Four signals, each compared with a threshold from ``params.yaml`` ``monitor:``:

* ``category_mix``: the share of events per catalogue category;
* ``item_popularity``: the share of events per item, over the reference's ``top_items`` most popular
  items plus one ``other`` bucket (new and long-tail items land there);
* ``events_per_user``: how many events a shopper makes in a day, binned (``1``, ``2``, ``3-4``, ...);
* ``new_item_rate``: the share of recent events on items the champion does not know (absent from its
  item index): the part of the traffic it cannot recommend. A rate, not a divergence.

The three distributions are compared with the Population Stability Index (``psi``, the default; 0.1 is
usually read as "moderate", 0.25 as "large") or the Jensen-Shannon divergence (``jensen_shannon``, base 2,
in [0, 1]). Both smooth empty buckets with ``epsilon`` so a bucket missing on one side is finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

DriftMetric = Literal["psi", "jensen_shannon"]
OTHER = "other"
UNKNOWN_CATEGORY = "unknown"
#: Upper edges of the events-per-user-day bins (the last bin is open): 1, 2, 3-4, 5-8, 9-16, 17-32, 33+.
EVENTS_PER_USER_EDGES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
DEFAULT_EPSILON = 1e-4
#: The signals, in report order.
SIGNALS: tuple[str, ...] = ("category_mix", "item_popularity", "events_per_user", "new_item_rate")


# ------------------------------------------------------------------------------------------ divergences


def align(expected: pd.Series, actual: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Two share vectors over the union of their buckets (missing buckets are 0), normalised to sum 1."""
    labels = sorted(set(map(str, expected.index)) | set(map(str, actual.index)))
    p = expected.rename(index=str).reindex(labels, fill_value=0.0).to_numpy(dtype=float)
    q = actual.rename(index=str).reindex(labels, fill_value=0.0).to_numpy(dtype=float)
    if (p < 0).any() or (q < 0).any():
        raise ValueError("shares must be >= 0")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("a distribution with no mass cannot be compared")
    return p / p.sum(), q / q.sum(), labels


def _smooth(p: np.ndarray, epsilon: float) -> np.ndarray:
    smoothed: np.ndarray = np.maximum(p, epsilon)
    return smoothed / float(smoothed.sum())


def psi(expected: pd.Series, actual: pd.Series, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population Stability Index: sum over buckets of (actual - expected) * ln(actual / expected).

    Symmetric, >= 0, 0 only for identical distributions; empty buckets count as ``epsilon``.
    """
    p, q, _ = align(expected, actual)
    p, q = _smooth(p, epsilon), _smooth(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(expected: pd.Series, actual: pd.Series, epsilon: float = DEFAULT_EPSILON) -> float:
    """Jensen-Shannon divergence in bits: in [0, 1], 0 only for identical distributions."""
    p, q, _ = align(expected, actual)
    p, q = _smooth(p, epsilon), _smooth(q, epsilon)
    m = (p + q) / 2
    value = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    return float(min(max(value, 0.0), 1.0))


def divergence(metric: DriftMetric, expected: pd.Series, actual: pd.Series, epsilon: float) -> float:
    """``psi`` or ``jensen_shannon`` of two share vectors."""
    if metric == "psi":
        return psi(expected, actual, epsilon)
    if metric == "jensen_shannon":
        return jensen_shannon(expected, actual, epsilon)
    raise ValueError(f"unknown drift metric {metric!r}")


# ------------------------------------------------------------------------------------------ distributions


def shares(labels: Iterable[Any]) -> pd.Series:
    """Share of each distinct label (index: the label as text), largest first; empty input -> empty."""
    counts = pd.Series(list(map(str, labels)), dtype="object").value_counts()
    total = counts.sum()
    return (counts / total).astype(float) if total else counts.astype(float)


def category_mix(events: pd.DataFrame, catalog: pd.DataFrame) -> pd.Series:
    """Share of events per category of the item (items missing from the catalogue: ``unknown``)."""
    categories = catalog.drop_duplicates("item_id", keep="last").set_index("item_id")["category"].astype(str)
    mapped = events["item_id"].astype(str).map(categories).fillna(UNKNOWN_CATEGORY)
    return shares(mapped)


def item_popularity(
    reference: pd.DataFrame, current: pd.DataFrame, top_items: int
) -> tuple[pd.Series, pd.Series]:
    """Shares of events over the reference's ``top_items`` most popular items plus ``other``.

    Ties in popularity are broken by item id, so the buckets do not depend on row order.
    """
    if top_items < 1:
        raise ValueError("top_items must be >= 1")
    counts = reference["item_id"].astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    top = {item for item, _ in ranked[:top_items]}

    def bucketed(events: pd.DataFrame) -> pd.Series:
        items = events["item_id"].astype(str)
        return shares(items.where(items.isin(top), OTHER))

    return bucketed(reference), bucketed(current)


def events_per_user_day(events: pd.DataFrame, edges: Sequence[int] = EVENTS_PER_USER_EDGES) -> pd.Series:
    """Share of (shopper, UTC day) pairs by how many events they made, in bins ``1``, ``2``, ``3-4``, ..."""
    if events.empty:
        return pd.Series(dtype=float)
    day = pd.to_datetime(events["ts"], utc=True).dt.floor("D")
    per = events.groupby([events["user_id"].astype(str), day]).size().to_numpy()
    return shares(bin_label(int(n), edges) for n in per)


def bin_label(count: int, edges: Sequence[int] = EVENTS_PER_USER_EDGES) -> str:
    """The bin of ``count`` (>= 1): ``"1"``, ``"2"``, ``"3-4"``, ..., ``"33+"`` for the default edges."""
    if count < 1:
        raise ValueError("count must be >= 1")
    lower = 1
    for upper in edges:
        if count <= upper:
            return str(upper) if lower == upper else f"{lower}-{upper}"
        lower = upper + 1
    return f"{lower}+"


def new_item_rate(events: pd.DataFrame, known_items: Iterable[str]) -> float:
    """Share of ``events`` on items outside ``known_items`` (0.0 for no events)."""
    if events.empty:
        return 0.0
    known = set(map(str, known_items))
    return float((~events["item_id"].astype(str).isin(known)).mean())


# ------------------------------------------------------------------------------------------ assessment


@dataclass(frozen=True)
class DriftSignal:
    """One signal: its value, the threshold it is held to and whether it crossed it."""

    name: str
    value: float
    threshold: float
    measure: str  # "psi", "jensen_shannon" or "rate"

    @property
    def drifted(self) -> bool:
        return math.isfinite(self.value) and self.value > self.threshold

    def reason(self) -> str:
        return f"{self.name} {self.measure} {self.value:.4f} > {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "measure": self.measure,
            "drifted": self.drifted,
        }


@dataclass(frozen=True)
class DriftAssessment:
    """Every signal with the distributions behind it (for the report's plots)."""

    signals: tuple[DriftSignal, ...]
    distributions: dict[str, tuple[pd.Series, pd.Series]] = field(default_factory=dict)
    reference_events: int = 0
    current_events: int = 0

    @property
    def drifted(self) -> list[DriftSignal]:
        return [s for s in self.signals if s.drifted]

    def reasons(self) -> list[str]:
        return [s.reason() for s in self.drifted]

    def metrics(self) -> dict[str, float]:
        return {f"drift.{s.name}": s.value for s in self.signals if math.isfinite(s.value)}


def assess(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    catalog: pd.DataFrame,
    known_items: Iterable[str],
    *,
    metric: DriftMetric,
    thresholds: dict[str, float],
    top_items: int,
    epsilon: float = DEFAULT_EPSILON,
) -> DriftAssessment:
    """Compare ``current`` events with ``reference`` events on the four signals.

    Args:
        reference: events the champion was trained on (or a recent window of them).
        current: the recent events.
        catalog: item -> category (the latest catalogue).
        known_items: the champion's item index.
        metric: the divergence for the distribution signals.
        thresholds: signal name -> threshold (``category_mix``, ``item_popularity``, ``events_per_user``,
            ``new_item_rate``).
        top_items: buckets of the item popularity signal (plus ``other``).
        epsilon: smoothing of empty buckets.
    Raises:
        ValueError: either frame is empty, or a threshold is missing.
    """
    if reference.empty or current.empty:
        raise ValueError("both the reference and the current window need events")
    missing = sorted(set(SIGNALS) - set(thresholds))
    if missing:
        raise ValueError(f"no threshold for {', '.join(missing)}")
    dists = {
        "category_mix": (category_mix(reference, catalog), category_mix(current, catalog)),
        "item_popularity": item_popularity(reference, current, top_items),
        "events_per_user": (events_per_user_day(reference), events_per_user_day(current)),
    }
    signals = [
        DriftSignal(name, divergence(metric, p, q, epsilon), float(thresholds[name]), metric)
        for name, (p, q) in dists.items()
    ]
    rate = new_item_rate(current, known_items)
    signals.append(DriftSignal("new_item_rate", rate, float(thresholds["new_item_rate"]), "rate"))
    return DriftAssessment(
        signals=tuple(signals),
        distributions=dists,
        reference_events=len(reference),
        current_events=len(current),
    )


# ------------------------------------------------------------------------------------------ verdict

Status = Literal[
    "drift", "stable", "drift_no_new_data", "online_degraded", "insufficient_data", "no_champion", "no_data"
]


@dataclass(frozen=True)
class Verdict:
    """What the monitor concludes: a status, whether to request retraining, and why."""

    status: Status
    retrain: bool
    reasons: tuple[str, ...]


Unavailable = Literal["insufficient_data", "no_champion", "no_data"]


def unavailable(status: Unavailable, detail: str) -> Verdict:
    """The verdict when no assessment could be made (no champion, no data, too few events): no retraining."""
    return Verdict(status=status, retrain=False, reasons=(detail,))


def verdict(assessment: DriftAssessment, *, data_changed: bool) -> Verdict:
    """Retrain when a signal drifted and the data changed since the champion was trained.

    Args:
        assessment: the drift assessment.
        data_changed: the published data differs from the version the champion was trained on.
    """
    reasons = tuple(assessment.reasons())
    if not reasons:
        return Verdict(status="stable", retrain=False, reasons=())
    if not data_changed:
        note = "nothing was published since the champion was trained: retraining would reproduce it"
        return Verdict(status="drift_no_new_data", retrain=False, reasons=(*reasons, note))
    return Verdict(status="drift", retrain=True, reasons=reasons)
