"""The step contract: what every batch step (publish, features, train, evaluate, register, promote) takes
and hands back, so the CLI, ``dvc repro`` and an Airflow task call the same function the same way.

A step is ``run_<step>(ctx: StepContext, ...) -> StepResult``. Inside, it is written in three parts:

1. a **pure core** (data and params in, data out; no files, no MLflow, no clock);
2. **I/O**: read its inputs and write its outputs (DVC outputs are atomic and a pure function of data, code
   and params: no run ids, times or commits inside them);
3. **tracking**: MLflow runs, tags and artifacts (lineage and run ids live here, never in DVC outputs).

The context is passed in explicitly. Only the edge that starts a process (the ``recops`` CLI, which is what
``dvc repro`` runs) reads the orchestrator's run id from the environment (:data:`PIPELINE_RUN_ENV`), because
DVC stage commands cannot take per-run arguments; everything below takes it from :class:`StepContext`.

A :class:`StepResult` is small and JSON-able (paths relative to the project or URIs, run ids, metrics), so
an Airflow task can hand it on through XCom; data frames never travel in it.

How an orchestrator runs a DVC-tracked step: it calls :func:`pipelines.dvc_ops.repro_stage` (``dvc repro
--single-item STAGE``), never the step function directly, so ``dvc.lock`` stays the record of what produced
``artifacts/``. Steps outside DVC (publish, register, promote) are called directly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import Params

#: Environment variable through which an orchestrator hands its run id to a ``recops`` process that
#: ``dvc repro`` starts. Read only by :meth:`StepContext.from_environment`.
PIPELINE_RUN_ENV = "RECOPS_PIPELINE_RUN_ID"
#: The logical date of the orchestrator's run (ISO 8601), read the same way.
LOGICAL_DATE_ENV = "RECOPS_LOGICAL_DATE"


@dataclass(frozen=True)
class StepContext:
    """Everything a step needs to know about the run it belongs to.

    Attributes:
        settings: where things are (data, artifacts, MLflow, metadata database).
        params: the pipeline's tunables (params.yaml).
        pipeline_run_id: the orchestrator's run id (an Airflow DAG run id); empty when a person runs the
            pipeline, and then the MLflow parent run is keyed by the code and data versions.
        logical_date: the moment the run stands for (UTC). Steps that need "now" use it, so reruns of the
            same DAG run are deterministic; None means the wall clock at the edge that asks.
        actor: who asked (recorded in the audit trail).
    """

    settings: Settings
    params: Params
    pipeline_run_id: str = ""
    logical_date: datetime | None = None
    actor: str = "recops"

    def __post_init__(self) -> None:
        if self.logical_date is not None and self.logical_date.tzinfo is None:
            raise RecopsError(f"logical_date must be timezone-aware (UTC), got {self.logical_date!r}")

    @classmethod
    def from_environment(
        cls,
        settings: Settings,
        params: Params,
        *,
        pipeline_run_id: str | None = None,
        logical_date: datetime | None = None,
        actor: str = "recops",
        environ: Mapping[str, str] | None = None,
    ) -> StepContext:
        """The context at a process edge: explicit arguments first, then :data:`PIPELINE_RUN_ENV` and
        :data:`LOGICAL_DATE_ENV` (how ``dvc repro`` started by an orchestrator passes them on)."""
        env = os.environ if environ is None else environ
        run_id = pipeline_run_id if pipeline_run_id is not None else env.get(PIPELINE_RUN_ENV, "").strip()
        if logical_date is None and env.get(LOGICAL_DATE_ENV, "").strip():
            raw = env[LOGICAL_DATE_ENV].strip()
            try:
                logical_date = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError as exc:
                raise RecopsError(f"{LOGICAL_DATE_ENV}={raw!r} is not an ISO 8601 date-time") from exc
            if logical_date.tzinfo is None:
                logical_date = logical_date.replace(tzinfo=UTC)
        return cls(settings, params, pipeline_run_id=run_id, logical_date=logical_date, actor=actor)

    def now(self) -> datetime:
        """The logical date when there is one, else the wall clock (UTC)."""
        return self.logical_date if self.logical_date is not None else datetime.now(UTC)

    def environment(self) -> dict[str, str]:
        """The variables a child process (``dvc repro``) needs to rebuild this context."""
        env = {PIPELINE_RUN_ENV: self.pipeline_run_id}
        if self.logical_date is not None:
            env[LOGICAL_DATE_ENV] = self.logical_date.isoformat()
        return env


@dataclass(frozen=True)
class StepResult:
    """What a step hands on: small, JSON-able, safe to pass through XCom.

    Attributes:
        step: the step's name (``features``, ``train@als``, ``evaluate``, ``register``, ...).
        outputs: name -> path relative to the project, or a URI (``models:/name/3``, ``runs:/...``).
        run_ids: name -> MLflow run id (``parent``, ``model``, ``promotion``, ...).
        metrics: name -> finite number.
        info: other small JSON values (counts, versions, decisions).
    """

    step: str
    outputs: dict[str, str] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of JSON types (non-finite metrics are dropped: JSON has no NaN)."""
        return {
            "step": self.step,
            "outputs": dict(self.outputs),
            "run_ids": dict(self.run_ids),
            "metrics": {k: float(v) for k, v in self.metrics.items() if math.isfinite(float(v))},
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> StepResult:
        """Rebuild a result handed on through XCom."""
        return cls(
            step=str(payload["step"]),
            outputs={str(k): str(v) for k, v in payload.get("outputs", {}).items()},
            run_ids={str(k): str(v) for k, v in payload.get("run_ids", {}).items()},
            metrics={str(k): float(v) for k, v in payload.get("metrics", {}).items()},
            info=dict(payload.get("info", {})),
        )


def project_relative(path: Path, settings: Settings) -> str:
    """``path`` relative to the project folder when it lies inside it (what results carry), else absolute."""
    try:
        return path.resolve().relative_to(settings.project_dir.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())
