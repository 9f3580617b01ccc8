"""The ``promote`` step: score, decide, apply, log.

1. **score** (:mod:`pipelines.gate_scoring`): the ``challenger`` and ``champion`` are loaded through the
   verified loader (:func:`registry.loader.load_alias`, what the scorer serves) and scored, with a fresh
   recent-popularity baseline, on the current test period;
2. **decide** (:func:`registry.gate.decide`, pure): the gate's checks and their reasons;
3. **apply** (:func:`registry.promotion.apply_decision`): the alias move under the lock with a
   compare-and-set on the champion, audited either way;
4. **log**: a run in ``<experiment>-promotions`` and tags on the versions.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import TYPE_CHECKING

from core.settings import Settings
from pipelines.gate_scoring import (
    PackageInFeatureSpace,
    fit_baseline,
    gate_evaluate_params,
    metric_cutoff,
    score_model,
    smoke_latency_ms,
)
from pipelines.params import Params
from registry.aliases import CHALLENGER, CHAMPION, RegistryError, alias_version, check_name
from registry.audit import AuditLog, audit_log
from registry.gate import GateCheck, ModelScores, PromotionDecision, Role, decide
from registry.promotion import apply_decision, finish_promotion_run, start_promotion_run, tag_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipelines.features import FeatureSet
    from registry.loader import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["PromotionDecision", "RegistryError", "promote"]


def promote(
    *,
    settings: Settings,
    params: Params,
    actor: str,
    client: MlflowClient | None = None,
    audit: AuditLog | None = None,
    features: FeatureSet | None = None,
) -> PromotionDecision:
    """Run the gate for the current ``challenger`` and move the aliases if it passes (see module docs).

    Raises:
        RegistryError: there is no challenger, or the registry cannot be reached.
    """
    from pipelines.evaluate import build_task
    from pipelines.features import read_features
    from pipelines.metrics import paired_bootstrap_diff
    from registry.client import mlflow_client
    from registry.loader import AliasNotFoundError, ModelLoaderError, load_alias

    name = check_name(settings.model_name, "model name")
    client = client or mlflow_client(settings)
    audit = audit or audit_log(settings)
    gate = params.promote
    metric_cutoff(gate.primary_metric)

    challenger_version = alias_version(client, name, CHALLENGER)
    if challenger_version is None:
        raise RegistryError(f"{name} has no {CHALLENGER!r} version: run `recops register` first")
    champion_version = alias_version(client, name, CHAMPION)
    if champion_version == challenger_version:
        return _already_champion(name, challenger_version)

    fs = features if features is not None else read_features(settings.artifacts_dir / "features")
    evaluate = gate_evaluate_params(params)
    task = build_task(fs, "temporal", evaluate.exclude_seen)
    item_ids = [str(i) for i in fs.item_ids]
    reasons: list[str] = []
    try:
        challenger_loaded = load_alias(CHALLENGER, settings=settings, client=client, allow_stale=False)
    except ModelLoaderError as exc:
        return _blocked_unloadable(
            settings, client, audit, name, challenger_version, champion_version, actor, exc
        )
    challenger_version = challenger_loaded.version
    champion_loaded: LoadedModel | None = None
    if champion_version is not None:
        try:
            champion_loaded = load_alias(CHAMPION, settings=settings, client=client, allow_stale=False)
            champion_version = champion_loaded.version
        except AliasNotFoundError:
            champion_version = None
        except ModelLoaderError as exc:
            reasons.append(f"champion v{champion_version} does not load ({exc}); compared with the baseline")

    def score_loaded(loaded: LoadedModel, role: Role) -> ModelScores:
        scores = score_model(
            PackageInFeatureSpace(loaded.package, item_ids),
            fs,
            task,
            role=role,
            label=f"v{loaded.version} ({loaded.package.family})",
            version=loaded.version,
            evaluate=evaluate,
            seed=params.seed,
        )
        return replace(scores, latency_p50_ms=smoke_latency_ms(loaded.package, task, item_ids))

    challenger = score_loaded(challenger_loaded, "challenger")
    baseline = score_model(
        fit_baseline(fs, params),
        fs,
        task,
        role="baseline",
        label="recent_popularity (fresh)",
        version=None,
        evaluate=evaluate,
        seed=params.seed,
    )
    incumbent = baseline if champion_loaded is None else score_loaded(champion_loaded, "champion")
    scored = [challenger, incumbent] if incumbent is not baseline else [challenger]
    scored.append(baseline)

    diff = paired_bootstrap_diff(
        challenger.per_user,
        incumbent.per_user,
        samples=max(params.evaluate.bootstrap_samples, 1),
        confidence=params.evaluate.confidence,
        seed=params.seed,
    )
    decision = decide(
        name,
        challenger_version,
        champion_version,
        challenger=challenger,
        incumbent=incumbent,
        baseline=baseline,
        diff=diff,
        params=gate,
        notes=reasons,
    )
    run_id = start_promotion_run(client, settings, decision, actor)
    decision = apply_decision(client, audit, decision, champion_version, actor, run_id)
    finish_promotion_run(client, run_id, decision)
    tag_versions(client, decision)
    return decision


def _already_champion(name: str, version: int) -> PromotionDecision:
    return PromotionDecision(
        model_name=name,
        outcome="already_champion",
        challenger_version=version,
        champion_before=version,
        champion_after=version,
        compared_with="champion",
        checks=(),
        table=(),
        diff=(math.nan, math.nan, math.nan),
        promotion_run_id="",
        reasons=(f"challenger v{version} is already the champion: nothing to do",),
    )


def _blocked_unloadable(
    settings: Settings,
    client: MlflowClient,
    audit: AuditLog,
    name: str,
    challenger_version: int,
    champion_version: int | None,
    actor: str,
    exc: Exception,
) -> PromotionDecision:
    decision = PromotionDecision(
        model_name=name,
        outcome="blocked",
        challenger_version=challenger_version,
        champion_before=champion_version,
        champion_after=champion_version,
        compared_with="champion" if champion_version is not None else "baseline",
        checks=(GateCheck("loads_through_scorer_loader", False, str(exc)),),
        table=(),
        diff=(math.nan, math.nan, math.nan),
        promotion_run_id="",
        reasons=(f"challenger v{challenger_version} does not load through the scorer's loader: {exc}",),
    )
    run_id = start_promotion_run(client, settings, decision, actor)
    decision = apply_decision(client, audit, decision, champion_version, actor, run_id)
    finish_promotion_run(client, run_id, decision)
    tag_versions(client, decision)
    return decision
