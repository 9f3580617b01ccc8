"""The ``monitor`` step: recent batches vs the champion's training data, a report, a retraining verdict.

1. **read**: the published events and catalogue; the champion through the verified loader (its item index
   and ``training_cutoff``) and its version's ``data_md5`` tag;
2. **pure core** (:mod:`pipelines.monitor.drift`): reference = the champion's training data (the last
   ``monitor.reference_days`` before its cut-off), recent = the last ``monitor.recent_batches`` published
   batches; the four signals; the verdict (retrain only when a signal drifted *and* the data changed since
   the champion was trained);
3. **write**: ``<runtime>/monitor/<YYYY-MM-DD>/`` with ``report.html`` (plots embedded), the plots as PNG
   and ``drift.json``;
4. **track**: one run in the ``<experiment>-monitoring`` MLflow experiment (metrics ``drift.<signal>``,
   thresholds as params, the verdict and reasons as tags, the folder as artifacts).

Online metrics per model version and A/B variant (click-through, conversion; :mod:`pipelines.monitor.online`)
join the report, the run and the result when the scoring service's feedback store exists (the last
``monitor.online_window_days`` before the logical date); a champion below ``online_min_click_through`` over
at least ``online_min_impressions`` impressions requests retraining when the data changed (the exported
feedback is new data). Without a feedback store the report says it has none.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.fsio import atomic_write_bytes, atomic_write_text
from core.settings import Settings
from pipelines.monitor.drift import DriftAssessment, Verdict, assess, unavailable, verdict
from pipelines.monitor.online import OnlineMetrics, read_online_metrics, with_online
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

MONITORING_SUFFIX = "-monitoring"
ONLINE_METRICS_NOTE = (
    "no feedback store yet: online metrics per model version and A/B variant are not measured"
)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Champion:
    """What the monitor needs of the champion."""

    version: int
    training_cutoff: datetime | None
    items: frozenset[str]
    data_md5: str


def load_champion(settings: Settings, client: MlflowClient) -> Champion | None:
    """The champion through the scorer's verified loader, or None when there is none."""
    from registry.loader import AliasNotFoundError, load_alias

    try:
        loaded = load_alias("champion", settings=settings, client=client, allow_stale=False)
    except AliasNotFoundError:
        return None
    tags = client.get_model_version(settings.model_name, str(loaded.version)).tags or {}
    return Champion(
        version=loaded.version,
        training_cutoff=loaded.package.training_cutoff,
        items=frozenset(map(str, loaded.package.items["item_id"])),
        data_md5=str(tags.get("data_md5", "")),
    )


def windows(
    events: pd.DataFrame, cutoff: datetime, *, reference_days: int, recent_batches: int
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(reference, recent, recent batch ids): the ``reference_days`` before ``cutoff`` and the last
    ``recent_batches`` published batches (by batch id)."""
    import pandas as pd

    end = pd.Timestamp(cutoff)
    start = end - pd.Timedelta(days=reference_days)
    reference = events[(events["ts"] >= start) & (events["ts"] < end)]
    recent_ids = sorted(map(str, events["batch_id"].unique()))[-recent_batches:]
    recent = events[events["batch_id"].astype(str).isin(recent_ids)]
    return reference, recent, recent_ids


def run_monitor(ctx: StepContext) -> StepResult:
    """Measure drift, write and log the report, and say whether to request retraining.

    Returns:
        ``outputs``: ``report`` (the HTML page), ``summary`` (``drift.json``); ``run_ids["monitor"]``: the
        MLflow run; ``metrics``: ``drift.<signal>``; ``info``: ``status``, ``retrain``, ``reasons``,
        ``champion_version``, the windows and the data versions.
    """
    from pipelines.datastore import published_batches, read_published
    from pipelines.lineage import data_md5
    from registry.client import mlflow_client

    settings, params = ctx.settings, ctx.params.monitor
    client = mlflow_client(settings)
    current_md5 = data_md5(settings.project_dir)
    summary: dict[str, Any] = {
        "dag_run_id": ctx.pipeline_run_id,
        "checked_at": ctx.now().isoformat(),
        "data_md5": current_md5,
        "metric": params.metric,
        "recent_batches": params.recent_batches,
        "reference_days": params.reference_days,
        "online_metrics": ONLINE_METRICS_NOTE,
    }
    assessment: DriftAssessment | None = None
    champion = load_champion(settings, client)
    if not published_batches(settings.data_dir):
        outcome = unavailable("no_data", f"no published batches in {settings.data_dir}")
    elif champion is None:
        outcome = unavailable("no_champion", f"{settings.model_name} has no champion to compare with")
    elif champion.training_cutoff is None:
        detail = f"champion v{champion.version} records no training cut-off"
        outcome = unavailable("insufficient_data", detail)
    else:
        events, catalog = read_published(settings.data_dir)
        reference, recent, recent_ids = windows(
            events,
            champion.training_cutoff,
            reference_days=params.reference_days,
            recent_batches=params.recent_batches,
        )
        summary.update(
            {
                "champion_version": champion.version,
                "champion_data_md5": champion.data_md5,
                "champion_training_cutoff": champion.training_cutoff.isoformat(),
                "reference_window": (
                    f"{(champion.training_cutoff - timedelta(days=params.reference_days)).isoformat()} .. "
                    f"{champion.training_cutoff.isoformat()}"
                ),
                "recent_batch_ids": f"{recent_ids[0]} .. {recent_ids[-1]}" if recent_ids else "",
                "reference_events": len(reference),
                "recent_events": len(recent),
            }
        )
        if min(len(reference), len(recent)) < params.min_events:
            outcome = unavailable(
                "insufficient_data",
                f"{len(reference)} reference and {len(recent)} recent events; "
                f"monitor.min_events = {params.min_events}",
            )
        else:
            assessment = assess(
                reference,
                recent,
                catalog,
                champion.items,
                metric=params.metric,
                thresholds=dict(params.thresholds),
                top_items=params.top_items,
            )
            outcome = verdict(assessment, data_changed=champion.data_md5 != current_md5)
    online, online_note = _online(settings, ctx)
    summary["online_metrics"] = online.status if online is not None else online_note
    if champion is not None and outcome.status not in ("no_data", "no_champion"):
        outcome = with_online(outcome, online, data_changed=champion.data_md5 != current_md5)
    summary.update({"status": outcome.status, "retrain": outcome.retrain})
    folder = settings.runtime_dir / "monitor" / _SAFE.sub("_", ctx.now().date().isoformat())
    report, summary_path = _write_report(folder, summary, outcome, assessment, online, online_note)
    run_id = _track(client, settings, ctx, params.thresholds, summary, outcome, assessment, online, folder)
    metrics = assessment.metrics() if assessment is not None else {}
    metrics.update(online.metrics() if online is not None else {})
    log.info("monitor: %s%s", outcome.status, "".join(f"\n  {r}" for r in outcome.reasons))
    return StepResult(
        step="monitor",
        outputs={
            "report": project_relative(report, settings),
            "summary": project_relative(summary_path, settings),
        },
        run_ids={"monitor": run_id},
        metrics=metrics,
        info={
            "status": outcome.status,
            "online_status": online.status if online is not None else None,
            "retrain": outcome.retrain,
            "reasons": list(outcome.reasons),
            "champion_version": champion.version if champion is not None else None,
            "data_md5": current_md5,
            "champion_data_md5": champion.data_md5 if champion is not None else "",
        },
    )


def _online(settings: Settings, ctx: StepContext) -> tuple[OnlineMetrics | None, str]:
    """The online metrics over the monitor's window, or None and why (no store, database unreachable)."""
    import sqlalchemy as sa

    params = ctx.params.monitor
    try:
        online = read_online_metrics(
            settings,
            ctx.now(),
            window_days=params.online_window_days,
            min_impressions=params.online_min_impressions,
            min_click_through=params.online_min_click_through,
        )
    except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as exc:  # the drift report still stands
        detail = " ".join(str(getattr(exc, "orig", exc)).split())[:200]
        log.warning("monitor: online metrics unavailable: %s", detail)
        return None, f"online metrics unavailable: the metadata database cannot be read ({detail})"
    if online is None:
        return None, ONLINE_METRICS_NOTE
    return online, "" if online.status != "insufficient_feedback" else online.note()


def _write_report(
    folder: Path,
    summary: dict[str, Any],
    outcome: Verdict,
    assessment: DriftAssessment | None,
    online: OnlineMetrics | None = None,
    online_note: str = "",
) -> tuple[Path, Path]:
    """Write ``report.html``, the plots and ``drift.json`` into ``folder`` (each file atomically)."""
    from pipelines.monitor.report import drift_figures, png_bytes, render_html

    (folder / "plots").mkdir(parents=True, exist_ok=True)
    images = {name: png_bytes(fig) for name, fig in drift_figures(assessment).items()} if assessment else {}
    for name, data in images.items():
        atomic_write_bytes(folder / "plots" / f"{name}.png", data)
    payload = {
        "summary": summary,
        "verdict": {"status": outcome.status, "retrain": outcome.retrain, "reasons": list(outcome.reasons)},
        "signals": [s.to_dict() for s in assessment.signals] if assessment else [],
        "online": [g.to_dict() for g in online.groups] if online is not None else [],
    }
    summary_path = folder / "drift.json"
    summary_text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_text(summary_path, summary_text)
    report = folder / "report.html"
    atomic_write_bytes(
        report, render_html(summary, outcome, assessment, images, online, online_note).encode()
    )
    return report, summary_path


def monitoring_experiment(client: MlflowClient, settings: Settings) -> str:
    """Id of the ``<experiment>-monitoring`` experiment (created on first use)."""
    from registry.client import ensure_experiment

    return ensure_experiment(client, settings, settings.mlflow_experiment + MONITORING_SUFFIX, "monitoring")


def _track(
    client: MlflowClient,
    settings: Settings,
    ctx: StepContext,
    thresholds: dict[str, float],
    summary: dict[str, Any],
    outcome: Verdict,
    assessment: DriftAssessment | None,
    online: OnlineMetrics | None,
    folder: Path,
) -> str:
    """One MLflow run for this check: drift metrics, thresholds, the verdict and the report folder."""
    import time

    from mlflow.entities import Metric, Param

    tags = {
        "recops.kind": "monitor",
        "recops.monitor.status": outcome.status,
        "recops.monitor.retrain": str(outcome.retrain).lower(),
        "recops.monitor.reasons": "; ".join(outcome.reasons)[:5000],
        "recops.monitor.online_status": online.status if online is not None else "unavailable",
        "actor": ctx.actor,
    }
    if ctx.pipeline_run_id:
        tags["orchestrator_run_id"] = ctx.pipeline_run_id
    if "champion_version" in summary:
        tags["champion_version"] = str(summary["champion_version"])
    run = client.create_run(
        monitoring_experiment(client, settings), run_name=f"monitor {folder.name}", tags=tags
    )
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    metrics = [
        Metric(k, float(v), now, 0)
        for k, v in (assessment.metrics() if assessment else {}).items()
        if math.isfinite(v)
    ]
    if online is not None:
        metrics += [Metric(k, float(v), now, 0) for k, v in online.metrics().items()]
    for key in ("reference_events", "recent_events"):
        if key in summary:
            metrics.append(Metric(key, float(summary[key]), now, 0))
    params = [Param(f"threshold.{k}", str(v)) for k, v in sorted(thresholds.items())]
    params += [Param(k, str(summary[k])) for k in ("metric", "recent_batches", "reference_days")]
    if online is not None:
        params += [
            Param("online_window_days", str((online.window_end - online.window_start).days)),
            Param("online_min_impressions", str(online.min_impressions)),
            Param("online_min_click_through", str(online.min_click_through)),
        ]
    client.log_batch(run_id, metrics=metrics, params=params)
    client.log_artifacts(run_id, str(folder))
    client.set_terminated(run_id, status="FINISHED")
    return run_id
