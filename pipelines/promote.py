"""The ``promote`` step: score, decide, apply, log.

1. **score** (:mod:`pipelines.gate_scoring`): the ``challenger`` and ``champion`` are loaded through the
   verified loader (:func:`registry.loader.load_alias`, what the scorer serves) and scored, with a fresh
   recent-popularity baseline, on the current test period;
2. **decide** (:func:`registry.gate.decide`, pure): the preconditions (enough test users, the challenger's
   training cut-off, a loadable champion) and the comparison checks, with their reasons;
3. **apply** (:func:`registry.promotion.apply_decision`): the alias move under the lock with a
   compare-and-set on the champion, audited either way;
4. **log**: a run in ``<experiment>-promotions`` and tags on the versions.

A champion that exists but does not load blocks the promotion (roll it back or fix it first): comparing
with the baseline instead would let a challenger replace a champion it was never measured against.

:func:`run_promote` is the step-contract entry point (what the CLI and an Airflow task call).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.errors import RecopsError
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
from pipelines.steps import StepContext, StepResult
from registry.aliases import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    alias_version,
    check_name,
    settle_pending,
)
from registry.audit import AuditLog, audit_log
from registry.gate import (
    GateCheck,
    GateContext,
    ModelScores,
    PromotionDecision,
    Role,
    decide,
    precondition_checks,
    refuse,
)
from registry.notices import redis_notifier
from registry.promotion import apply_decision, finish_promotion_run, start_promotion_run, tag_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipelines.evaluate import EvaluationTask
    from pipelines.features import FeatureSet
    from registry.loader import LoadedModel

log = logging.getLogger(__name__)

__all__ = ["PromotionDecision", "RegistryError", "promote", "run_promote"]


def run_promote(ctx: StepContext) -> StepResult:
    """The ``promote`` step: :func:`promote` with the step context; the decision as a JSON-able result."""
    decision = promote(settings=ctx.settings, params=ctx.params, actor=ctx.actor)
    summary = decision.summary_metrics()
    return StepResult(
        step="promote",
        outputs={"champion": f"models:/{decision.model_name}@{CHAMPION}"},
        run_ids={"promotion": decision.promotion_run_id} if decision.promotion_run_id else {},
        metrics={
            k: float(v)
            for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        },
        info=decision.to_dict(),
    )


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
    from models.threads import limit_threads
    from pipelines.evaluate import build_task
    from pipelines.features import read_features
    from pipelines.metrics import paired_bootstrap_diff
    from registry.client import mlflow_client
    from registry.loader import AliasNotFoundError, ModelLoaderError, load_alias

    limit_threads()  # score exactly as the evaluate stage does (one BLAS thread)
    name = check_name(settings.model_name, "model name")
    client = client or mlflow_client(settings)
    audit = audit or audit_log(settings)
    metric_cutoff(params.promote.primary_metric)
    settle_pending(client, audit, name)  # a killed earlier move is settled before the gate reads aliases

    challenger_version = alias_version(client, name, CHALLENGER)
    if challenger_version is None:
        raise RegistryError(f"{name} has no {CHALLENGER!r} version: run `recops register` first")
    champion_version = alias_version(client, name, CHAMPION)
    if champion_version == challenger_version:
        return _already_champion(name, challenger_version)

    # ---- load (through the scorer's loader)
    try:
        challenger_loaded = load_alias(CHALLENGER, settings=settings, client=client, allow_stale=False)
    except ModelLoaderError as exc:
        check = GateCheck(
            "loads_through_scorer_loader",
            False,
            f"challenger v{challenger_version} does not load through the scorer's loader: {exc}",
        )
        return _record(
            settings, client, audit, refuse(name, challenger_version, champion_version, [check]), actor
        )
    challenger_version = challenger_loaded.version
    champion_loaded: LoadedModel | None = None
    champion_error = ""
    if champion_version is not None:
        try:
            champion_loaded = load_alias(CHAMPION, settings=settings, client=client, allow_stale=False)
            champion_version = champion_loaded.version
        except AliasNotFoundError:  # the alias was removed while we looked: there is no champion
            champion_version = None
        except ModelLoaderError as exc:
            champion_error = str(exc)

    # ---- score (on the current test period)
    fs = features if features is not None else read_features(settings.artifacts_dir / "features")
    evaluate = gate_evaluate_params(params)
    context = GateContext(
        n_test_users=0,
        test_start=datetime.fromtimestamp(fs.split_info.test_start, UTC),
        challenger_cutoff=challenger_loaded.package.training_cutoff,
        champion_version=champion_version,
        champion_error=champion_error,
    )
    try:
        task = build_task(fs, fs.protocol, evaluate.exclude_seen)
    except RecopsError:  # no test user at all: nothing to score, the preconditions say why
        checks = precondition_checks(params.promote, context)
        return _record(
            settings, client, audit, refuse(name, challenger_version, champion_version, checks), actor
        )
    context = replace(context, n_test_users=task.n_users)
    scorer = _Scorer(fs, task, params)
    challenger = scorer.loaded(challenger_loaded, "challenger")
    baseline = scorer.baseline()
    champion = scorer.loaded(champion_loaded, "champion") if champion_loaded is not None else None
    incumbent = champion if champion_version is not None else baseline
    diff = (math.nan, math.nan, math.nan)
    if incumbent is not None:
        diff = paired_bootstrap_diff(
            challenger.per_user,
            incumbent.per_user,
            samples=max(params.evaluate.bootstrap_samples, 1),
            confidence=params.evaluate.confidence,
            seed=params.seed,
        )

    # ---- decide (pure), then apply and log
    decision = decide(
        name,
        challenger_version,
        challenger=challenger,
        champion=champion,
        baseline=baseline,
        diff=diff,
        params=params.promote,
        context=context,
    )
    return _record(settings, client, audit, decision, actor)


class _Scorer:
    """Scores models on one shared task exactly like the evaluate stage (the gate's primary metric)."""

    def __init__(self, fs: FeatureSet, task: EvaluationTask, params: Params) -> None:
        self.fs, self.task, self.params = fs, task, params
        self.evaluate = gate_evaluate_params(params)
        self.item_ids = [str(i) for i in fs.item_ids]

    def loaded(self, loaded: LoadedModel, role: Role) -> ModelScores:
        """A registered version, seen through the current item index, with its loader latency."""
        scores = score_model(
            PackageInFeatureSpace(loaded.package, self.item_ids),
            self.fs,
            self.task,
            role=role,
            label=f"v{loaded.version} ({loaded.package.family})",
            version=loaded.version,
            evaluate=self.evaluate,
            seed=self.params.seed,
        )
        return replace(scores, latency_p50_ms=smoke_latency_ms(loaded.package, self.task, self.item_ids))

    def baseline(self) -> ModelScores:
        """A recent-popularity baseline fitted now on the current train + valid events."""
        return score_model(
            fit_baseline(self.fs, self.params),
            self.fs,
            self.task,
            role="baseline",
            label="recent_popularity (fresh)",
            version=None,
            evaluate=self.evaluate,
            seed=self.params.seed,
        )


def _record(
    settings: Settings, client: MlflowClient, audit: AuditLog, decision: PromotionDecision, actor: str
) -> PromotionDecision:
    """Apply the decision (alias move under the lock, audit) and log it (promotion run, version tags)."""
    run_id = start_promotion_run(client, settings, decision, actor)
    decision = apply_decision(
        client, audit, decision, decision.champion_before, actor, run_id, redis_notifier(settings)
    )
    finish_promotion_run(client, run_id, decision)
    tag_versions(client, decision)
    if not decision.promoted:
        log.info("promotion of %s v%d %s: %s", decision.model_name, decision.challenger_version,
                 decision.outcome, "; ".join(decision.reasons))  # fmt: skip
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
