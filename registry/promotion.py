"""Applying a promotion decision: the alias move under the lock, the promotion run, the version tags.

On a pass, ``previous`` -> old champion and ``champion`` -> challenger, under the metadata-database lock with
a compare-and-set on the champion (two racing promotions cannot both win), each move written as an intent
first (:func:`registry.aliases.move_alias`). Every decision is logged as an
MLflow run in ``<experiment>-promotions`` (params, metrics, comparison table), tagged on the versions and
appended to the audit trail.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from core.settings import Settings
from registry.aliases import CHAMPION, PREVIOUS, alias_lock, alias_version, move_alias
from registry.audit import AuditLog
from registry.client import ensure_experiment
from registry.gate import PromotionDecision
from registry.notices import AliasNotifier

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PROMOTIONS_SUFFIX = "-promotions"


def apply_decision(
    client: MlflowClient,
    audit: AuditLog,
    decision: PromotionDecision,
    champion_seen: int | None,
    actor: str,
    run_id: str,
    notify: AliasNotifier | None = None,
) -> PromotionDecision:
    """Move the aliases under the lock with a compare-and-set on the champion; audit either way.

    ``notify`` is told of each alias move (scorers listen for it: :mod:`registry.notices`).
    """
    name = decision.model_name
    decision = replace(decision, promotion_run_id=run_id)
    metrics = decision.summary_metrics()
    if not decision.promoted:
        audit.record(
            actor=actor,
            model_name=name,
            alias=CHAMPION,
            from_version=decision.champion_before,
            to_version=decision.challenger_version,
            action="blocked",
            reason="; ".join(decision.reasons) + f" (promotion run {run_id})",
            metrics=metrics,
        )
        return decision
    with alias_lock(client, audit, name, notify) as lock:
        current = alias_version(client, name, CHAMPION)
        if current != champion_seen:
            reason = (
                f"champion moved from v{champion_seen} to v{current} while the gate ran "
                "(another promotion or rollback won); re-run the gate"
            )
            audit.record(
                actor=actor,
                model_name=name,
                alias=CHAMPION,
                from_version=current,
                to_version=decision.challenger_version,
                action="blocked",
                reason=f"{reason} (promotion run {run_id})",
                metrics=metrics,
            )
            log.warning("promotion of %s v%d aborted: %s", name, decision.challenger_version, reason)
            return replace(decision, outcome="lost_race", champion_after=current, reasons=(reason,))
        why = (
            f"challenger v{decision.challenger_version} beat the {decision.compared_with} "
            f"(promotion run {run_id})"
        )
        if current is not None:
            move_alias(
                lock, alias=PREVIOUS, to_version=current, actor=actor, action="promote", reason=why,
                metrics=metrics,
            )  # fmt: skip
        move_alias(
            lock, alias=CHAMPION, to_version=decision.challenger_version, actor=actor, action="promote",
            reason=why, metrics=metrics,
        )  # fmt: skip
    return decision


def promotions_experiment(client: MlflowClient, settings: Settings) -> str:
    """Id of the ``<experiment>-promotions`` experiment (created on first use)."""
    return ensure_experiment(client, settings, settings.mlflow_experiment + PROMOTIONS_SUFFIX, "promotions")


def start_promotion_run(
    client: MlflowClient, settings: Settings, decision: PromotionDecision, actor: str
) -> str:
    from mlflow.entities import Metric, Param

    exp = promotions_experiment(client, settings)
    run = client.create_run(
        exp,
        run_name=f"promote {decision.model_name} v{decision.challenger_version}",
        tags={
            "model_name": decision.model_name,
            "challenger_version": str(decision.challenger_version),
            "champion_version": str(decision.champion_before or ""),
            "compared_with": decision.compared_with,
            "actor": actor,
        },
    )
    run_id = str(run.info.run_id)
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, 0)
        for key, value in decision.summary_metrics().items()
        if isinstance(value, int | float) and math.isfinite(float(value))
    ]
    metrics += [Metric(f"check.{c.name}", float(c.passed), now, 0) for c in decision.checks]
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[
            Param("challenger_version", str(decision.challenger_version)),
            Param("champion_version", str(decision.champion_before)),
            Param("compared_with", decision.compared_with),
        ],
    )
    client.log_dict(
        run_id,
        {"table": list(decision.table), "checks": [asdict(c) for c in decision.checks]},
        "comparison.json",
    )
    client.log_text(run_id, comparison_markdown(decision), "comparison.md")
    return run_id


def finish_promotion_run(client: MlflowClient, run_id: str, decision: PromotionDecision) -> None:
    client.set_tag(run_id, "decision", decision.outcome)
    client.set_tag(run_id, "reasons", "; ".join(decision.reasons)[:4900] or "all checks passed")
    client.set_terminated(run_id, status="FINISHED")


def tag_versions(client: MlflowClient, decision: PromotionDecision) -> None:
    """Record the decision on the challenger and the champion it was compared with.

    A promotion that lost a race leaves the tags to the winner. Tags are informational (the audit trail and
    the promotion run are the record), so a failure to write one is logged, not raised.
    """
    if decision.outcome == "lost_race":
        return
    tags: dict[int, str] = {decision.challenger_version: decision.outcome}
    if decision.champion_before is not None and decision.champion_before != decision.challenger_version:
        tags[decision.champion_before] = (
            f"{decision.outcome} (champion vs challenger v{decision.challenger_version})"
        )
    for version, outcome in tags.items():
        for key, value in (("promotion_decision", outcome), ("promotion_run_id", decision.promotion_run_id)):
            for attempt in range(3):
                try:
                    client.set_model_version_tag(decision.model_name, str(version), key, value)
                    break
                except (
                    Exception
                ) as exc:  # a concurrent writer of the same tag (MLflow upserts are not atomic)
                    if attempt == 2:
                        log.warning(
                            "could not tag %s v%d with %s: %s", decision.model_name, version, key, exc
                        )
                    time.sleep(0.2 * (attempt + 1))


def comparison_markdown(decision: PromotionDecision) -> str:
    """The comparison table and checks as markdown (logged with the promotion run, printed by the CLI)."""
    lines = [f"# Promotion of {decision.model_name} v{decision.challenger_version}: {decision.outcome}", ""]
    if decision.table:
        columns = list(decision.table[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in decision.table:
            lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
        lines.append("")
    lines += ["| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.passed else 'NO'} | {c.detail} |" for c in decision.checks]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return str(value)
