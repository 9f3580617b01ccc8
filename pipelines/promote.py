"""The promotion gate: move ``champion`` to the ``challenger`` only when it is better on today's data.

Both versions are loaded through :func:`service.model_loader.load_alias` (the scorer's own loader) and scored,
together with a freshly fitted ``recent_popularity`` baseline, on the *current* test period of
``artifacts/features`` - logged metrics from older pipeline runs are never trusted. A package trained on an
older catalogue is evaluated through item ids: items it does not know are dropped from its histories and
cannot be recommended by it.

Gate (all must hold; against the baseline when there is no champion yet):

* primary metric improves by at least ``min_relative_improvement`` (relative);
* if ``require_ci_agreement``: the paired-bootstrap interval of challenger minus incumbent lies above 0;
* coverage@k drops at most ``max_coverage_drop`` and cold-user NDCG at most ``max_cold_ndcg_drop`` (relative);
* the p50 latency of single-user predictions through the loaded package is within ``latency_budget_ms``.

On a pass, ``previous`` -> old champion and ``champion`` -> challenger, under the metadata-database lock with
a compare-and-set on the champion (two racing promotions cannot both win). Every decision is logged as an
MLflow run in ``<experiment>-promotions`` (params, metrics, comparison table), tagged on the versions and
appended to the audit trail.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from models.base import FloatArray, IntArray, Recommender
from pipelines.audit import AuditLog, audit_log
from pipelines.errors import RecopsError
from pipelines.params import EvaluateParams, Params, PromoteParams
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    RegistryError,
    alias_version,
    check_name,
    lock_name,
    move_alias,
)
from pipelines.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from models.package import ModelPackage
    from pipelines.evaluate import EvaluationTask
    from pipelines.features import FeatureSet
    from service.model_loader import LoadedModel

log = logging.getLogger(__name__)

Role = Literal["challenger", "champion", "baseline"]
Outcome = Literal["promoted", "blocked", "lost_race", "already_champion"]
LATENCY_CALLS = 7
PROMOTIONS_SUFFIX = "-promotions"


# ------------------------------------------------------------------------------------------ scoring


class PackageInFeatureSpace(Recommender):
    """A model package seen through the current feature set's item index (for evaluation only).

    Histories, exclusions and masks arrive as current item indices; they are translated to the package's
    own index through item ids (unknown items dropped), the package's model ranks, and the result comes
    back as current indices (items the current catalogue lacks become -1 padding, i.e. misses). This is
    what the scorer does with raw item ids, so the gate measures what would serve.
    """

    family = "package"

    def __init__(self, package: ModelPackage, item_ids: Sequence[str]) -> None:
        super().__init__()
        self.package = package
        self.n_items = len(item_ids)
        self.to_package: IntArray = np.array(
            [package.item_index.get(str(i), -1) for i in item_ids], dtype=np.int64
        )
        self.known = self.to_package >= 0
        self.from_package: IntArray = np.full(package.model.n_items, -1, dtype=np.int64)
        self.from_package[self.to_package[self.known]] = np.flatnonzero(self.known)
        self.item_popularity = np.zeros(self.n_items, dtype=np.float32)
        self.item_popularity[self.known] = package.model.item_popularity[self.to_package[self.known]]

    def _translate(self, items: IntArray) -> IntArray:
        mapped = self.to_package[np.asarray(items, dtype=np.int64)]
        return mapped[mapped >= 0]

    def recommend(
        self,
        histories: Sequence[IntArray],
        k: int,
        exclude: Sequence[IntArray] | None = None,
        item_mask: NDArray[np.bool_] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        inner_mask = None
        if item_mask is not None:
            inner_mask = np.ones(self.package.model.n_items, dtype=bool)
            inner_mask[self.to_package[self.known]] = item_mask[self.known]
        ids, scores = self.package.model.recommend(
            [self._translate(h) for h in histories],
            k,
            exclude=None if exclude is None else [self._translate(e) for e in exclude],
            item_mask=inner_mask,
        )
        mapped = np.where(ids >= 0, self.from_package[np.maximum(ids, 0)], -1)
        return mapped.astype(np.int64), scores

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        inner = self.package.model.score([self._translate(h) for h in histories])
        out = np.full((len(histories), self.n_items), -np.inf, dtype=np.float32)
        out[:, self.known] = inner[:, self.to_package[self.known]]
        return out

    def _fit(self, data: Any, on_epoch: Any) -> None:
        raise RecopsError("a registered package is not re-trained by the promotion gate")

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        raise RecopsError("not loadable")


@dataclass(frozen=True)
class ModelScores:
    """One model's results on the current test data."""

    role: Role
    label: str
    version: int | None
    primary: float
    coverage: float
    cold: float  # NaN when there are no cold test users
    warm: float
    per_user: NDArray[np.float64]  # primary metric per evaluated user, in the task's user order
    latency_p50_ms: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def row(self, primary_name: str, coverage_name: str) -> dict[str, Any]:
        return {
            "role": self.role,
            "model": self.label,
            "version": self.version,
            primary_name: self.primary,
            coverage_name: self.coverage,
            f"{primary_name}_cold": self.cold,
            f"{primary_name}_warm": self.warm,
            "latency_p50_ms": self.latency_p50_ms,
        }


def metric_cutoff(primary_metric: str) -> tuple[str, int]:
    """``ndcg_at_10`` -> ``("ndcg", 10)`` (clear error for other shapes)."""
    from pipelines.metrics import RANKING_METRICS, parse_metric_name

    try:
        metric, k = parse_metric_name(primary_metric)
    except ValueError as exc:
        raise RecopsError(f"promote.primary_metric: {exc}") from exc
    if metric not in RANKING_METRICS:
        raise RecopsError(
            f"promote.primary_metric {primary_metric!r}: use one of {RANKING_METRICS} at some k"
        )
    return metric, k


def gate_evaluate_params(params: Params) -> EvaluateParams:
    """The ``evaluate`` settings with the gate's primary metric (and its cut-off) as primary."""
    _, k = metric_cutoff(params.promote.primary_metric)
    return params.evaluate.model_copy(
        update={"primary_metric": params.promote.primary_metric, "ks": sorted({*params.evaluate.ks, k})}
    )


def score_model(
    model: Recommender,
    fs: FeatureSet,
    task: EvaluationTask,
    *,
    role: Role,
    label: str,
    version: int | None,
    evaluate: EvaluateParams,
    seed: int = 0,
) -> ModelScores:
    """Evaluate ``model`` on the shared task exactly like the evaluate stage, and keep the gate's numbers."""
    from pipelines.evaluate import evaluate_model

    result = evaluate_model(model, fs, evaluate, name=label, seed=seed, task=task, progress=False)
    _, k = metric_cutoff(evaluate.primary_metric)
    primary = evaluate.primary_metric
    return ModelScores(
        role=role,
        label=label,
        version=version,
        primary=result.primary,
        coverage=float(result.metrics[f"coverage_at_{k}"]),
        cold=float(result.metrics.get(f"{primary}_cold", math.nan)),
        warm=float(result.metrics.get(f"{primary}_warm", math.nan)),
        per_user=np.asarray(result.primary_values, dtype=np.float64),
        metrics=dict(result.metrics),
    )


def smoke_latency_ms(
    package: ModelPackage, task: EvaluationTask, item_ids: Sequence[str], calls: int = LATENCY_CALLS
) -> float:
    """p50 wall time of single-user ``recommend_ids`` calls on real test histories (after one warm-up)."""
    picks = np.linspace(0, task.n_users - 1, num=min(calls, task.n_users)).astype(np.int64)
    histories = [[str(item_ids[int(j)]) for j in task.histories[i][-50:]] for i in picks]
    package.recommend_ids([histories[0]], k=10)
    times = []
    for history in (histories * calls)[:calls]:
        started = time.perf_counter()
        package.recommend_ids([history], k=10)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(statistics.median(times))


# ------------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


def relative_change(new: float, old: float) -> float:
    """``(new - old) / old``; +inf when old is 0 and new is positive, 0 when both are 0."""
    if old > 0:
        return (new - old) / old
    return math.inf if new > old else 0.0


def gate_checks(
    challenger: ModelScores,
    incumbent: ModelScores,
    params: PromoteParams,
    diff: tuple[float, float, float],
) -> list[GateCheck]:
    """The gate's verdicts, each with a one-line reason (pure: no I/O)."""
    name = params.primary_metric
    rel = relative_change(challenger.primary, incumbent.primary)
    checks = [
        GateCheck(
            "primary_improvement",
            rel >= params.min_relative_improvement and challenger.primary > incumbent.primary,
            f"{name} {challenger.primary:.4f} vs {incumbent.primary:.4f} ({incumbent.label}): "
            f"{rel:+.1%}, need >= +{params.min_relative_improvement:.1%}",
        )
    ]
    mean, low, high = diff
    if params.require_ci_agreement:
        checks.append(
            GateCheck(
                "ci_above_zero",
                math.isfinite(low) and low > 0,
                f"paired bootstrap of {name} difference: {mean:+.4f} [{low:+.4f}, {high:+.4f}], need low > 0",
            )
        )
    cov_floor = incumbent.coverage * (1 - params.max_coverage_drop)
    checks.append(
        GateCheck(
            "coverage_guardrail",
            challenger.coverage >= cov_floor - 1e-12,
            f"coverage {challenger.coverage:.4f} vs {incumbent.coverage:.4f}, "
            f"may drop at most {params.max_coverage_drop:.0%} (floor {cov_floor:.4f})",
        )
    )
    if math.isfinite(challenger.cold) and math.isfinite(incumbent.cold):
        cold_floor = incumbent.cold * (1 - params.max_cold_ndcg_drop)
        checks.append(
            GateCheck(
                "cold_user_guardrail",
                challenger.cold >= cold_floor - 1e-12,
                f"cold-user {name} {challenger.cold:.4f} vs {incumbent.cold:.4f}, "
                f"may drop at most {params.max_cold_ndcg_drop:.0%} (floor {cold_floor:.4f})",
            )
        )
    else:
        checks.append(GateCheck("cold_user_guardrail", True, "no cold users in the test period"))
    latency = challenger.latency_p50_ms
    checks.append(
        GateCheck(
            "latency_budget",
            latency is not None and latency <= params.latency_budget_ms,
            f"p50 single-user prediction {latency if latency is not None else float('nan'):.2f} ms "
            f"through the loader, budget {params.latency_budget_ms:.0f} ms",
        )
    )
    return checks


@dataclass(frozen=True)
class PromotionDecision:
    """What the gate decided and why (also logged to MLflow and the audit trail)."""

    model_name: str
    outcome: Outcome
    challenger_version: int
    champion_before: int | None
    champion_after: int | None
    compared_with: Literal["champion", "baseline"]
    checks: tuple[GateCheck, ...]
    table: tuple[dict[str, Any], ...]
    diff: tuple[float, float, float]
    promotion_run_id: str
    reasons: tuple[str, ...]

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    def summary_metrics(self) -> dict[str, Any]:
        """The numbers recorded with the audit row."""
        out: dict[str, Any] = {
            "diff_mean": self.diff[0],
            "diff_ci_low": self.diff[1],
            "diff_ci_high": self.diff[2],
        }
        for row in self.table:
            for key, value in row.items():
                if key not in ("role", "model", "version") and isinstance(value, int | float):
                    out[f"{row['role']}.{key}"] = value
        return out


# ------------------------------------------------------------------------------------------ orchestration


def fit_baseline(fs: FeatureSet, params: Params) -> Recommender:
    """The recent-popularity baseline fitted on the current train + valid events."""
    from models import create_model

    hyper = params.train.family_params("recent_popularity")
    return create_model("recent_popularity", hyper).fit(fs.interactions("train_valid"))


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
    from service.model_loader import AliasNotFoundError, ModelLoaderError, load_alias, registry_client

    name = check_name(settings.model_name, "model name")
    client = client or registry_client(settings)
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
    checks = gate_checks(challenger, incumbent, gate, diff)
    passed = all(c.passed for c in checks)
    reasons += [c.detail for c in checks if not c.passed]
    _, k = metric_cutoff(gate.primary_metric)
    table = tuple(s.row(gate.primary_metric, f"coverage_at_{k}") for s in scored)
    compared_with: Literal["champion", "baseline"] = (
        "champion" if incumbent.role == "champion" else "baseline"
    )
    decision = PromotionDecision(
        model_name=name,
        outcome="promoted" if passed else "blocked",
        challenger_version=challenger_version,
        champion_before=champion_version,
        champion_after=challenger_version if passed else champion_version,
        compared_with=compared_with,
        checks=tuple(checks),
        table=table,
        diff=diff,
        promotion_run_id="",
        reasons=tuple(reasons),
    )
    run_id = _start_promotion_run(client, settings, decision, actor)
    decision = _apply(client, audit, decision, champion_version, actor, run_id)
    _finish_promotion_run(client, run_id, decision)
    _tag_versions(client, decision)
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
    run_id = _start_promotion_run(client, settings, decision, actor)
    decision = _apply(client, audit, decision, champion_version, actor, run_id)
    _finish_promotion_run(client, run_id, decision)
    _tag_versions(client, decision)
    return decision


def _apply(
    client: MlflowClient,
    audit: AuditLog,
    decision: PromotionDecision,
    champion_seen: int | None,
    actor: str,
    run_id: str,
) -> PromotionDecision:
    """Move the aliases under the lock with a compare-and-set on the champion; audit either way."""
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
    with audit.lock(lock_name(name)) as conn:
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
                conn=conn,
            )
            log.warning("promotion of %s v%d aborted: %s", name, decision.challenger_version, reason)
            return replace(decision, outcome="lost_race", champion_after=current, reasons=(reason,))
        why = (
            f"challenger v{decision.challenger_version} beat the {decision.compared_with} "
            f"(promotion run {run_id})"
        )
        if current is not None:
            move_alias(
                client, audit, conn, name=name, alias=PREVIOUS, to_version=current, actor=actor,
                action="promote", reason=why, metrics=metrics,
            )  # fmt: skip
        move_alias(
            client, audit, conn, name=name, alias=CHAMPION, to_version=decision.challenger_version,
            actor=actor, action="promote", reason=why, metrics=metrics,
        )  # fmt: skip
    return decision


def promotions_experiment(client: MlflowClient, settings: Settings) -> str:
    """Id of the ``<experiment>-promotions`` experiment (created on first use)."""
    name = settings.mlflow_experiment + PROMOTIONS_SUFFIX
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    embedded = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
    location = f"{settings.mlflow_artifact_location.rstrip('/')}/promotions" if embedded else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # created concurrently by another promotion
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def _start_promotion_run(
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


def _finish_promotion_run(client: MlflowClient, run_id: str, decision: PromotionDecision) -> None:
    client.set_tag(run_id, "decision", decision.outcome)
    client.set_tag(run_id, "reasons", "; ".join(decision.reasons)[:4900] or "all checks passed")
    client.set_terminated(run_id, status="FINISHED")


def _tag_versions(client: MlflowClient, decision: PromotionDecision) -> None:
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
