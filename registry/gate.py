"""The promotion gate as pure functions: scores in, a decision with its reasons out (no I/O).

Preconditions (:func:`precondition_checks`; the comparison means nothing without them):

* the current test period has at least ``min_test_users`` scored users;
* the challenger's training cut-off (the first instant not in its training data) is not after the current
  test start: a challenger that has seen the test period would be judged on its own training data;
* when a champion exists it loads through the scorer's loader: an unloadable champion blocks the promotion
  (roll it back or fix it first); the gate never silently compares with the baseline instead.

Comparison (:func:`gate_checks`; all must hold; against the baseline when there is no champion yet):

* primary metric improves by at least ``min_relative_improvement`` (relative);
* if ``require_ci_agreement``: the paired-bootstrap interval of challenger minus incumbent lies above 0;
* coverage@k drops at most ``max_coverage_drop`` and cold-user NDCG at most ``max_cold_ndcg_drop`` (relative);
* the p50 latency of single-user predictions through the loaded package is within ``latency_budget_ms``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

Role = Literal["challenger", "champion", "baseline"]
Outcome = Literal["promoted", "blocked", "lost_race", "already_champion"]


class PromoteParams(BaseModel):
    """The ``promote:`` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: str = "ndcg_at_10"
    min_relative_improvement: float = Field(0.02, ge=0)
    require_ci_agreement: bool = True
    max_coverage_drop: float = Field(0.10, ge=0, le=1)
    max_cold_ndcg_drop: float = Field(0.10, ge=0, le=1)
    latency_budget_ms: float = Field(50.0, gt=0)
    min_test_users: int = Field(50, ge=1)


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


@dataclass(frozen=True)
class GateCheck:
    """One verdict of the gate: its name, whether it passed, and a one-line reason for a person."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateContext:
    """What the gate knows besides the scores.

    Attributes:
        n_test_users: users scored on the current test period (0 when there were none).
        test_start: first instant of the current test period (UTC).
        challenger_cutoff: the challenger package's training cut-off; None when it records none.
        champion_version: the version holding ``champion`` when the gate started (None: no champion yet).
        champion_error: why the champion could not be loaded; empty when it loaded (or there is none).
    """

    n_test_users: int
    test_start: datetime
    challenger_cutoff: datetime | None
    champion_version: int | None = None
    champion_error: str = ""


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def precondition_checks(params: PromoteParams, context: GateContext) -> list[GateCheck]:
    """The checks that must hold before any comparison means something (pure: no I/O).

    ``enough_test_users``, ``training_cutoff`` and, when there is a champion, ``champion_loads``.
    """
    n, need = context.n_test_users, params.min_test_users
    checks = [
        GateCheck(
            "enough_test_users",
            n >= need,
            f"scored {n} test user(s) on the current test period, need >= {need} (promote.min_test_users)"
            + ("" if n >= need else ": too few to judge a promotion; wait for more data"),
        )
    ]
    cutoff, start = context.challenger_cutoff, context.test_start
    if cutoff is None:
        checks.append(
            GateCheck(
                "training_cutoff",
                False,
                "the challenger records no training cut-off, so it cannot be shown not to have seen the "
                f"test period (starts {_iso(start)}): retrain it with the current pipeline",
            )
        )
    else:
        checks.append(
            GateCheck(
                "training_cutoff",
                cutoff <= start,
                f"challenger trained on events before {_iso(cutoff)}, "
                f"current test period starts {_iso(start)}"
                + (
                    ""
                    if cutoff <= start
                    else ": it has seen the test period, so its test score says nothing; retrain it on "
                    "the current features (train + valid only)"
                ),
            )
        )
    if context.champion_version is not None:
        version = context.champion_version
        checks.append(
            GateCheck(
                "champion_loads",
                not context.champion_error,
                f"champion v{version} loads through the scorer's loader"
                if not context.champion_error
                else f"champion v{version} exists but does not load through the scorer's loader "
                f"({context.champion_error}); the gate does not fall back to the baseline: roll back "
                "(`recops rollback`, or `--to VERSION`) or fix the champion, then run promote again",
            )
        )
    return checks


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
    """The comparison checks of ``challenger`` against ``incumbent``, each with a one-line reason (pure).

    The preconditions (test users, training cut-off, champion loads) are :func:`precondition_checks`.
    """
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers become None), e.g. for a step result handed on via XCom."""
        return {
            "model_name": self.model_name,
            "outcome": self.outcome,
            "challenger_version": self.challenger_version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "compared_with": self.compared_with,
            "checks": [asdict(c) for c in self.checks],
            "table": [{k: _json_value(v) for k, v in row.items()} for row in self.table],
            "diff": [_json_value(v) for v in self.diff],
            "promotion_run_id": self.promotion_run_id,
            "reasons": list(self.reasons),
        }

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


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def decide(
    model_name: str,
    challenger_version: int,
    *,
    challenger: ModelScores,
    champion: ModelScores | None,
    baseline: ModelScores,
    diff: tuple[float, float, float],
    params: PromoteParams,
    context: GateContext,
    notes: Sequence[str] = (),
) -> PromotionDecision:
    """The gate's decision for ``challenger`` (pure: no I/O).

    The incumbent is the champion when there is one (``context.champion_version``), else the baseline. When
    the champion exists but did not load (``champion`` None, ``context.champion_error`` set), the comparison
    checks are not run and the decision is ``blocked`` by ``champion_loads``.

    Args:
        diff: paired bootstrap of challenger minus incumbent on the primary metric (NaN without incumbent).
        notes: reasons known before scoring, kept first.
    """
    checks = precondition_checks(params, context)
    has_champion = context.champion_version is not None
    incumbent = champion if has_champion else baseline
    if incumbent is not None:
        checks += gate_checks(challenger, incumbent, params, diff)
    passed = all(c.passed for c in checks)
    scored = [challenger] + ([champion] if has_champion and champion is not None else []) + [baseline]
    k = params.primary_metric.rsplit("_at_", 1)[-1]
    table = tuple(s.row(params.primary_metric, f"coverage_at_{k}") for s in scored)
    return PromotionDecision(
        model_name=model_name,
        outcome="promoted" if passed else "blocked",
        challenger_version=challenger_version,
        champion_before=context.champion_version,
        champion_after=challenger_version if passed else context.champion_version,
        compared_with="champion" if has_champion else "baseline",
        checks=tuple(checks),
        table=table,
        diff=diff,
        promotion_run_id="",
        reasons=(*notes, *(c.detail for c in checks if not c.passed)),
    )


def refuse(
    model_name: str,
    challenger_version: int,
    champion_version: int | None,
    checks: Sequence[GateCheck],
) -> PromotionDecision:
    """A ``blocked`` decision taken before anything could be scored (e.g. the challenger does not load, or
    the test period has no user), with the failed checks as reasons (pure: no I/O)."""
    return PromotionDecision(
        model_name=model_name,
        outcome="blocked",
        challenger_version=challenger_version,
        champion_before=champion_version,
        champion_after=champion_version,
        compared_with="champion" if champion_version is not None else "baseline",
        checks=tuple(checks),
        table=(),
        diff=(math.nan, math.nan, math.nan),
        promotion_run_id="",
        reasons=tuple(c.detail for c in checks if not c.passed),
    )
