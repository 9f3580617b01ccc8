"""The step contract: the context every step takes and the JSON-able result it hands on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import Params
from pipelines.steps import LOGICAL_DATE_ENV, PIPELINE_RUN_ENV, StepContext, StepResult, project_relative


def test_explicit_arguments_win_over_the_environment(recops_settings: Settings) -> None:
    env = {PIPELINE_RUN_ENV: "from-env", LOGICAL_DATE_ENV: "2026-03-01T00:00:00Z"}
    ctx = StepContext.from_environment(
        recops_settings,
        Params(),
        pipeline_run_id="scheduled__2026-03-02",
        logical_date=datetime(2026, 3, 2, tzinfo=UTC),
        environ=env,
    )
    assert ctx.pipeline_run_id == "scheduled__2026-03-02"
    assert ctx.logical_date == datetime(2026, 3, 2, tzinfo=UTC)


def test_the_environment_is_the_channel_through_dvc(recops_settings: Settings) -> None:
    """What an orchestrator's context puts into the environment comes back as the same context."""
    sent = StepContext(
        recops_settings,
        Params(),
        pipeline_run_id="manual__2026-03-02T10:00:00+00:00",
        logical_date=datetime(2026, 3, 2, 10, tzinfo=timezone(timedelta(hours=2))),
    )
    received = StepContext.from_environment(recops_settings, Params(), environ=sent.environment())
    assert received.pipeline_run_id == sent.pipeline_run_id
    assert received.logical_date == sent.logical_date
    assert received.now() == sent.logical_date


def test_no_orchestrator_means_an_empty_run_id_and_the_wall_clock(recops_settings: Settings) -> None:
    ctx = StepContext.from_environment(recops_settings, Params(), environ={})
    assert ctx.pipeline_run_id == "" and ctx.logical_date is None
    assert abs((ctx.now() - datetime.now(UTC)).total_seconds()) < 60
    assert ctx.environment() == {PIPELINE_RUN_ENV: ""}


def test_a_naive_logical_date_is_refused_and_a_bad_one_explained(recops_settings: Settings) -> None:
    with pytest.raises(RecopsError, match="timezone-aware"):
        StepContext(recops_settings, Params(), logical_date=datetime(2026, 3, 2))
    with pytest.raises(RecopsError, match=f"{LOGICAL_DATE_ENV}='yesterday' is not an ISO 8601"):
        StepContext.from_environment(recops_settings, Params(), environ={LOGICAL_DATE_ENV: "yesterday"})
    naive_env = StepContext.from_environment(
        recops_settings, Params(), environ={LOGICAL_DATE_ENV: "2026-03-02T00:00:00"}
    )
    assert naive_env.logical_date == datetime(2026, 3, 2, tzinfo=UTC)  # UTC assumed for a bare date-time


def test_a_result_survives_json_and_drops_what_json_cannot_hold() -> None:
    result = StepResult(
        step="evaluate",
        outputs={"metrics": "artifacts/metrics/metrics.json"},
        run_ids={"parent": "abc"},
        metrics={"als.ndcg_at_10": 0.25, "als.ndcg_at_10_cold": float("nan")},
        info={"users": 12},
    )
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert "als.ndcg_at_10_cold" not in payload["metrics"]
    back = StepResult.from_dict(payload)
    assert back.metrics == {"als.ndcg_at_10": 0.25}
    assert (back.step, back.outputs, back.run_ids, back.info) == (
        result.step,
        result.outputs,
        result.run_ids,
        result.info,
    )


def test_results_carry_project_relative_paths(recops_settings: Settings) -> None:
    inside = recops_settings.project_dir / "artifacts" / "features"
    assert project_relative(inside, recops_settings) == "artifacts/features"
    outside = recops_settings.runtime_dir / "x"
    assert project_relative(outside, recops_settings) == str(outside.resolve())
