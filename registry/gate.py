"""The promotion gate as pure functions: scores in, a decision with its reasons out (no I/O).

Gate (all must hold; against the baseline when there is no champion yet):

* primary metric improves by at least ``min_relative_improvement`` (relative);
* if ``require_ci_agreement``: the paired-bootstrap interval of challenger minus incumbent lies above 0;
* coverage@k drops at most ``max_coverage_drop`` and cold-user NDCG at most ``max_cold_ndcg_drop`` (relative);
* the p50 latency of single-user predictions through the loaded package is within ``latency_budget_ms``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def decide(
    model_name: str,
    challenger_version: int,
    champion_version: int | None,
    *,
    challenger: ModelScores,
    incumbent: ModelScores,
    baseline: ModelScores,
    diff: tuple[float, float, float],
    params: PromoteParams,
    notes: Sequence[str] = (),
) -> PromotionDecision:
    """The gate's decision for ``challenger`` against ``incumbent`` (the champion, or the baseline when there
    is none), with the comparison table and every failed check as a reason (pure: no I/O).

    Args:
        notes: reasons known before scoring (e.g. why the champion was not the incumbent), kept first.
    """
    checks = gate_checks(challenger, incumbent, params, diff)
    passed = all(c.passed for c in checks)
    scored = [challenger, incumbent] if incumbent is not baseline else [challenger]
    scored.append(baseline)
    k = params.primary_metric.rsplit("_at_", 1)[-1]
    table = tuple(s.row(params.primary_metric, f"coverage_at_{k}") for s in scored)
    return PromotionDecision(
        model_name=model_name,
        outcome="promoted" if passed else "blocked",
        challenger_version=challenger_version,
        champion_before=champion_version,
        champion_after=challenger_version if passed else champion_version,
        compared_with="champion" if incumbent.role == "champion" else "baseline",
        checks=tuple(checks),
        table=table,
        diff=diff,
        promotion_run_id="",
        reasons=(*notes, *(c.detail for c in checks if not c.passed)),
    )
