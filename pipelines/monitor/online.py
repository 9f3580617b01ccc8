"""Online metrics from the scoring service's feedback store: click-through and conversion per model version
and A/B variant, over the monitor's window.

Counts are of distinct (recommendation id, item) pairs per feedback kind, so a shopper clicking the same
tile twice counts once:

* ``click_through`` = clicked pairs / impressed pairs;
* ``conversion`` = purchased pairs / impressed pairs (the share of shown items that were bought);
* ``served``: recommendation lists served in the window (``recops_recommendations``).

A (version, variant) group with fewer than ``monitor.online_min_impressions`` impressions gets no verdict
(its rates are reported, never judged). The group that serves most shoppers, the ``champion`` variant, is
held to ``monitor.online_min_click_through``; a challenger is only reported (the promotion gate judges it).

:func:`assess_online` is pure (rows in, numbers out); :func:`read_online_metrics` reads the two tables of
:mod:`core.feedback` and returns None when the service never created them (no feedback store yet).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipelines.monitor.drift import Verdict

if TYPE_CHECKING:
    from core.settings import Settings

#: The variant the threshold applies to (``service.identity.CHAMPION``; pipelines never import service).
CHAMPION_VARIANT = "champion"
OnlineStatus = Literal["ok", "below_threshold", "insufficient_feedback"]


@dataclass(frozen=True)
class GroupMetrics:
    """The feedback of one model version and A/B variant over the window."""

    model_version: int
    variant: str
    served: int
    impressions: int
    clicks: int
    add_to_cart: int
    purchases: int
    enough: bool

    @property
    def key(self) -> str:
        """``v<version>.<variant>``: the metric name prefix (``online.v3.champion.click_through``)."""
        return f"v{self.model_version}.{self.variant}"

    @property
    def click_through(self) -> float:
        return self.clicks / self.impressions if self.impressions else math.nan

    @property
    def conversion(self) -> float:
        return self.purchases / self.impressions if self.impressions else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "variant": self.variant,
            "served": self.served,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "add_to_cart": self.add_to_cart,
            "purchases": self.purchases,
            "click_through": None if math.isnan(self.click_through) else self.click_through,
            "conversion": None if math.isnan(self.conversion) else self.conversion,
            "enough_impressions": self.enough,
        }


@dataclass(frozen=True)
class OnlineMetrics:
    """Every group's metrics, the window and the thresholds they were judged by."""

    groups: tuple[GroupMetrics, ...]
    window_start: datetime
    window_end: datetime
    min_impressions: int
    min_click_through: float

    def metrics(self) -> dict[str, float]:
        """``online.<key>.<name>`` -> value (finite values only), for MLflow and the step result."""
        out: dict[str, float] = {}
        for g in self.groups:
            values = {
                "impressions": float(g.impressions),
                "served": float(g.served),
                "click_through": g.click_through,
                "conversion": g.conversion,
            }
            out.update({f"online.{g.key}.{k}": v for k, v in values.items() if math.isfinite(v)})
        return out

    def flagged(self) -> list[GroupMetrics]:
        """Champion groups with enough impressions whose click-through is below the threshold."""
        return [
            g
            for g in self.groups
            if g.variant == CHAMPION_VARIANT and g.enough and g.click_through < self.min_click_through
        ]

    @property
    def status(self) -> OnlineStatus:
        if self.flagged():
            return "below_threshold"
        if any(g.enough for g in self.groups if g.variant == CHAMPION_VARIANT):
            return "ok"
        return "insufficient_feedback"

    def reasons(self) -> list[str]:
        """One line per flagged group (what the verdict records)."""
        return [
            f"online click-through of {g.key} {g.click_through:.4f} < {self.min_click_through:g} "
            f"over {g.impressions} impressions"
            for g in self.flagged()
        ]

    def note(self) -> str:
        """One line for the report when no group could be judged."""
        if not self.groups:
            return "no feedback in the window"
        return (
            f"fewer than {self.min_impressions} impressions for the champion in the window "
            "(monitor.online_min_impressions): no online verdict"
        )


def _distinct_pairs(
    feedback: Iterable[Mapping[str, Any]],
) -> dict[tuple[int, str, str], set[tuple[str, str]]]:
    """(version, variant, kind) -> distinct (recommendation id, item id) pairs."""
    pairs: dict[tuple[int, str, str], set[tuple[str, str]]] = {}
    for row in feedback:
        key = (int(row["model_version"]), str(row["variant"]), str(row["kind"]))
        pairs.setdefault(key, set()).add((str(row["recommendation_id"]), str(row["item_id"])))
    return pairs


def assess_online(
    recommendations: Iterable[Mapping[str, Any]],
    feedback: Iterable[Mapping[str, Any]],
    *,
    window_start: datetime,
    window_end: datetime,
    min_impressions: int,
    min_click_through: float,
) -> OnlineMetrics:
    """Group the window's served lists and feedback by (model version, variant) and count them.

    Args:
        recommendations: ``recops_recommendations`` rows (``model_version``, ``variant``).
        feedback: ``recops_feedback`` rows (``recommendation_id``, ``item_id``, ``kind``, ``model_version``,
            ``variant``).
        window_start: start of the window (recorded, the rows are expected to be inside it).
        window_end: its end (exclusive).
        min_impressions: below this many impressions a group gets no verdict.
        min_click_through: the champion's click-through threshold.
    Raises:
        ValueError: ``min_impressions`` < 1 or ``min_click_through`` outside [0, 1].
    """
    if min_impressions < 1:
        raise ValueError("min_impressions must be >= 1")
    if not 0 <= min_click_through <= 1:
        raise ValueError("min_click_through must be in [0, 1]")
    served: dict[tuple[int, str], int] = {}
    for row in recommendations:
        key = (int(row["model_version"]), str(row["variant"]))
        served[key] = served.get(key, 0) + 1
    pairs = _distinct_pairs(feedback)
    keys = sorted(set(served) | {(version, variant) for version, variant, _ in pairs})

    def count(version: int, variant: str, kind: str) -> int:
        return len(pairs.get((version, variant, kind), ()))

    groups = tuple(
        GroupMetrics(
            model_version=version,
            variant=variant,
            served=served.get((version, variant), 0),
            impressions=count(version, variant, "impression"),
            clicks=count(version, variant, "click"),
            add_to_cart=count(version, variant, "add_to_cart"),
            purchases=count(version, variant, "purchase"),
            enough=count(version, variant, "impression") >= min_impressions,
        )
        for version, variant in keys
    )
    return OnlineMetrics(
        groups=groups,
        window_start=window_start,
        window_end=window_end,
        min_impressions=min_impressions,
        min_click_through=min_click_through,
    )


def feedback_store_exists(settings: Settings) -> bool:
    """Whether the metadata database holds the scoring service's feedback tables (read only: creates none)."""
    import sqlalchemy as sa

    from core.feedback import FEEDBACK_TABLE, RECOMMENDATIONS_TABLE, feedback_engine

    if settings.metadata_db_url.startswith("sqlite"):
        database = sa.engine.make_url(settings.metadata_db_url).database
        if database and database != ":memory:" and not Path(database).is_file():
            return False  # do not create an empty SQLite file just to look
    inspector = sa.inspect(feedback_engine(settings))
    return bool(inspector.has_table(FEEDBACK_TABLE) and inspector.has_table(RECOMMENDATIONS_TABLE))


def read_online_metrics(
    settings: Settings, now: datetime, *, window_days: int, min_impressions: int, min_click_through: float
) -> OnlineMetrics | None:
    """The online metrics of the last ``window_days`` before ``now``, or None without a feedback store."""
    from core.feedback import feedback_engine, read_feedback, read_recommendations

    if not feedback_store_exists(settings):
        return None
    engine = feedback_engine(settings)
    start = now - timedelta(days=window_days)
    return assess_online(
        read_recommendations(engine, start, now),
        read_feedback(engine, start, now),
        window_start=start,
        window_end=now,
        min_impressions=min_impressions,
        min_click_through=min_click_through,
    )


def with_online(outcome: Verdict, online: OnlineMetrics | None, *, data_changed: bool) -> Verdict:
    """The monitor's verdict once the online metrics are known.

    A champion below the click-through threshold adds its reasons and requests retraining when the data
    changed since the champion was trained (the exported feedback is new data); otherwise retraining would
    reproduce the same model, which the reasons say. Without a flagged group the verdict is unchanged.
    """
    if online is None or not online.flagged():
        return outcome
    reasons = (*outcome.reasons, *online.reasons())
    if outcome.retrain:
        return Verdict(status=outcome.status, retrain=True, reasons=reasons)
    status = "online_degraded" if outcome.status == "stable" else outcome.status
    if data_changed:
        return Verdict(status="online_degraded", retrain=True, reasons=reasons)
    note = "nothing was published since the champion was trained: retraining would reproduce it"
    return Verdict(status=status, retrain=False, reasons=(*reasons, note))
