"""The ``register`` step: the step-contract wrapper of :func:`registry.register.register_best`.

The family is chosen on the validation split (``valid_<promote.primary_metric>``, see
:func:`registry.register.pick_best`); the pipeline run is ``ctx.pipeline_run_id`` when the context has one
(an orchestrated run registers its own models), else the latest pipeline run.
"""

from __future__ import annotations

import math

from pipelines.steps import StepContext, StepResult
from registry.register import RegisterResult, register_best, selection_metric


def run_register(ctx: StepContext, pipeline_run: str | None = None) -> StepResult:
    """Register the best model of a pipeline run and point ``challenger`` at it.

    Args:
        ctx: the step context; its ``pipeline_run_id`` selects the parent run when set.
        pipeline_run: an explicit MLflow parent run id or orchestrator run id (a person's ``--pipeline-run``);
            wins over ``ctx.pipeline_run_id``.

    Returns:
        ``outputs["model_version"]`` = ``models:/<name>/<version>``; ``run_ids["model"]`` = the version's own
        source run (for a reused version, the run it was registered from, never the new run);
        ``metrics`` = that run's finite logged metrics; ``info`` = version, family, whether it was created,
        the candidate run of this pipeline run, the previous challenger and the selection metric.
    """
    chosen = pipeline_run or ctx.pipeline_run_id or None
    result = register_best(
        chosen,
        settings=ctx.settings,
        primary_metric=ctx.params.promote.primary_metric,
        actor=ctx.actor,
    )
    return register_result(result)


def register_result(result: RegisterResult) -> StepResult:
    """The JSON-able step result of a registration."""
    return StepResult(
        step="register",
        outputs={"model_version": f"models:/{result.name}/{result.version}"},
        run_ids={"model": result.run_id},
        metrics={k: float(v) for k, v in result.metrics.items() if math.isfinite(float(v))},
        info={
            "model_name": result.name,
            "version": result.version,
            "family": result.family,
            "created": result.created,
            "candidate_run_id": result.candidate_run_id or result.run_id,
            "lineage_key": result.lineage_key,
            "previous_challenger": result.previous_challenger,
            "primary_metric": result.primary_metric,
            "selected_on": selection_metric(result.primary_metric),
        },
    )
