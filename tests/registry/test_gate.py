"""The promotion gate as pure functions: preconditions, comparison checks and the decision."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from registry.gate import (
    GateCheck,
    GateContext,
    ModelScores,
    PromoteParams,
    decide,
    gate_checks,
    precondition_checks,
    refuse,
    relative_change,
)

GATE = PromoteParams()
TEST_START = datetime(2026, 2, 23, tzinfo=UTC)
#: A context in which every precondition holds: plenty of users, trained before the test period, no champion.
FINE = GateContext(n_test_users=500, test_start=TEST_START, challenger_cutoff=TEST_START)


def _scores(
    role: str, primary: float, coverage: float = 0.5, cold: float = 0.2, latency: float = 1.0
) -> ModelScores:
    return ModelScores(
        role=role,  # type: ignore[arg-type]
        label=role,
        version=None,
        primary=primary,
        coverage=coverage,
        cold=cold,
        warm=primary,
        per_user=np.full(10, primary),
        latency_p50_ms=latency,
    )


def _failed(checks: list[GateCheck] | tuple[GateCheck, ...]) -> set[str]:
    return {c.name for c in checks if not c.passed}


def _detail(checks: list[GateCheck] | tuple[GateCheck, ...], name: str) -> str:
    return next(c.detail for c in checks if c.name == name)


# ------------------------------------------------------------------------------------------ comparison


def test_gate_passes_a_clear_improvement() -> None:
    checks = gate_checks(_scores("challenger", 0.33), _scores("champion", 0.30), GATE, (0.03, 0.01, 0.05))
    assert _failed(checks) == set()


@pytest.mark.parametrize(
    ("challenger", "diff", "failed"),
    [
        (_scores("challenger", 0.303), (0.003, 0.001, 0.005), {"primary_improvement"}),  # +1% < +2%
        (_scores("challenger", 0.33), (0.03, -0.01, 0.07), {"ci_above_zero"}),
        (_scores("challenger", 0.33, coverage=0.40), (0.03, 0.01, 0.05), {"coverage_guardrail"}),  # -20%
        (_scores("challenger", 0.33, cold=0.15), (0.03, 0.01, 0.05), {"cold_user_guardrail"}),  # -25%
        (_scores("challenger", 0.33, latency=80.0), (0.03, 0.01, 0.05), {"latency_budget"}),
        (_scores("challenger", 0.25), (-0.05, -0.07, -0.03), {"primary_improvement", "ci_above_zero"}),
    ],
)
def test_gate_blocks_each_failure(
    challenger: ModelScores, diff: tuple[float, float, float], failed: set[str]
) -> None:
    assert _failed(gate_checks(challenger, _scores("champion", 0.30), GATE, diff)) == failed


def test_gate_edges() -> None:
    # coverage drop of exactly 10% and cold drop of exactly 10% are allowed
    ok = gate_checks(
        _scores("challenger", 0.33, coverage=0.45, cold=0.18),
        _scores("champion", 0.30),
        GATE,
        (0.03, 0.01, 0.05),
    )
    assert _failed(ok) == set()
    # without CI agreement the interval is not checked; no cold users -> the cold guardrail is moot
    relaxed = PromoteParams(require_ci_agreement=False)
    checks = gate_checks(
        _scores("challenger", 0.33, cold=math.nan), _scores("champion", 0.30), relaxed, (0.03, -1, 1)
    )
    assert _failed(checks) == set() and "ci_above_zero" not in {c.name for c in checks}
    assert relative_change(0.1, 0.0) == math.inf and relative_change(0.0, 0.0) == 0.0
    # an incumbent scoring 0 is beaten by anything positive, never by another 0
    assert _failed(gate_checks(_scores("challenger", 0.0), _scores("champion", 0.0), relaxed, (0, 0, 0))) == {
        "primary_improvement"
    }


# ------------------------------------------------------------------------------------------ preconditions


def test_preconditions_hold_in_the_normal_case() -> None:
    checks = precondition_checks(GATE, FINE)
    assert [c.name for c in checks] == ["enough_test_users", "training_cutoff"]  # no champion: no load check
    assert _failed(checks) == set()
    with_champion = precondition_checks(GATE, GateContext(500, TEST_START, TEST_START, champion_version=3))
    assert [c.name for c in with_champion][-1] == "champion_loads" and _failed(with_champion) == set()


@pytest.mark.parametrize(("users", "passed"), [(49, False), (50, True), (0, False)])
def test_too_few_test_users_refuse_and_say_why(users: int, passed: bool) -> None:
    checks = precondition_checks(GATE, GateContext(users, TEST_START, TEST_START))
    assert ("enough_test_users" not in _failed(checks)) is passed
    detail = _detail(checks, "enough_test_users")
    assert f"scored {users} test user(s)" in detail and "promote.min_test_users" in detail
    assert ("too few" in detail) is not passed
    assert _failed(
        precondition_checks(PromoteParams(min_test_users=3), GateContext(3, TEST_START, None))
    ) == {"training_cutoff"}


def test_a_challenger_trained_into_the_test_period_is_refused() -> None:
    late = GateContext(500, TEST_START, TEST_START + timedelta(days=1))
    checks = precondition_checks(GATE, late)
    assert _failed(checks) == {"training_cutoff"}
    detail = _detail(checks, "training_cutoff")
    assert "2026-02-24T00:00:00Z" in detail and "2026-02-23T00:00:00Z" in detail
    assert "has seen the test period" in detail
    # trained up to exactly the test start (the refit on train + valid) or earlier (older data): fine
    for cutoff in (TEST_START, TEST_START - timedelta(days=7)):
        assert _failed(precondition_checks(GATE, GateContext(500, TEST_START, cutoff))) == set()
    # no recorded cut-off: cannot be shown to be clean
    unknown = precondition_checks(GATE, GateContext(500, TEST_START, None))
    assert _failed(unknown) == {"training_cutoff"} and "no training cut-off" in _detail(
        unknown, "training_cutoff"
    )


def test_an_unloadable_champion_blocks_and_names_the_remedy() -> None:
    context = GateContext(500, TEST_START, TEST_START, champion_version=4, champion_error="checksum mismatch")
    checks = precondition_checks(GATE, context)
    assert _failed(checks) == {"champion_loads"}
    detail = _detail(checks, "champion_loads")
    assert "champion v4" in detail and "checksum mismatch" in detail
    assert "rollback" in detail and "does not fall back to the baseline" in detail


# ------------------------------------------------------------------------------------------ decide


def test_decide_promotes_against_the_baseline_without_champion() -> None:
    decision = decide(
        "m", 2, challenger=_scores("challenger", 0.33), champion=None, baseline=_scores("baseline", 0.30),
        diff=(0.03, 0.01, 0.05), params=GATE, context=FINE,
    )  # fmt: skip
    assert decision.outcome == "promoted" and decision.compared_with == "baseline"
    assert (decision.champion_before, decision.champion_after) == (None, 2)
    assert [r["role"] for r in decision.table] == ["challenger", "baseline"]
    assert decision.reasons == ()


def test_decide_blocks_on_a_failed_precondition_even_when_the_scores_win() -> None:
    few = GateContext(3, TEST_START, TEST_START)
    decision = decide(
        "m", 2, challenger=_scores("challenger", 0.90), champion=None, baseline=_scores("baseline", 0.10),
        diff=(0.8, 0.7, 0.9), params=GATE, context=few,
    )  # fmt: skip
    assert decision.outcome == "blocked" and decision.champion_after is None
    assert _failed(decision.checks) == {"enough_test_users"}
    assert len(decision.reasons) == 1 and "scored 3 test user(s)" in decision.reasons[0]


def test_decide_with_an_unloadable_champion_does_not_compare_with_the_baseline() -> None:
    context = GateContext(500, TEST_START, TEST_START, champion_version=1, champion_error="no package.json")
    decision = decide(
        "m", 2, challenger=_scores("challenger", 0.9), champion=None, baseline=_scores("baseline", 0.1),
        diff=(math.nan, math.nan, math.nan), params=GATE, context=context, notes=("seen first",),
    )  # fmt: skip
    assert decision.outcome == "blocked" and decision.compared_with == "champion"
    assert (decision.champion_before, decision.champion_after) == (1, 1)
    names = {c.name for c in decision.checks}
    assert "primary_improvement" not in names  # no comparison with the baseline in place of the champion
    assert _failed(decision.checks) == {"champion_loads"}
    assert decision.reasons[0] == "seen first" and "no package.json" in decision.reasons[1]
    assert [r["role"] for r in decision.table] == ["challenger", "baseline"]


def test_decide_against_a_champion_and_json_form() -> None:
    context = GateContext(500, TEST_START, TEST_START, champion_version=1)
    decision = decide(
        "m", 2, challenger=_scores("challenger", 0.303, cold=math.nan), champion=_scores("champion", 0.30),
        baseline=_scores("baseline", 0.1), diff=(0.01, -0.01, 0.03), params=GATE, context=context,
    )  # fmt: skip
    assert decision.outcome == "blocked" and decision.compared_with == "champion"
    assert _failed(decision.checks) == {"primary_improvement", "ci_above_zero"}
    assert [r["role"] for r in decision.table] == ["challenger", "champion", "baseline"]
    data: dict[str, Any] = json.loads(json.dumps(decision.to_dict(), allow_nan=False))  # strict JSON
    assert data["outcome"] == "blocked" and data["table"][0]["ndcg_at_10_cold"] is None
    assert {c["name"] for c in data["checks"] if not c["passed"]} == {"primary_improvement", "ci_above_zero"}


def test_refuse_blocks_before_scoring() -> None:
    check = GateCheck("loads_through_scorer_loader", False, "challenger v5 does not load: corrupt")
    decision = refuse("m", 5, 3, [check])
    assert decision.outcome == "blocked" and decision.champion_after == 3 and decision.table == ()
    assert decision.reasons == ("challenger v5 does not load: corrupt",)
    assert all(math.isnan(v) for v in decision.diff)
