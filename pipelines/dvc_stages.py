"""How an orchestrator runs a DVC-tracked step, so that ``dvc.lock`` stays the truth.

The rule: a task that stands for a DVC stage (``features``, ``train@<family>``, ``evaluate``) calls
:func:`repro_stage`, which runs ``dvc repro --single-item <stage>``; it never calls the step function
(``run_features``, ``run_train``, ``run_evaluate``) itself. DVC then decides whether the stage must run
(inputs changed), can be restored from its run cache, or is up to date, and records what produced the
outputs in ``dvc.lock``. Calling the step function directly would write ``artifacts/`` behind DVC's back:
``dvc status`` would call the workspace modified and the next ``dvc repro`` would redo or undo the work.

The step context reaches the ``recops`` process that DVC starts through the environment
(:meth:`pipelines.steps.StepContext.environment`), the one channel a DVC stage command has. ``--single-item``
keeps one task to one stage (upstream stages are their own tasks); DVC's repository lock serialises DVC
commands in one workspace, and ``--wait-for-lock`` (added by :func:`pipelines.dvc_ops.run_dvc`) makes a
second task wait instead of failing.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from core.errors import RecopsError
from pipelines.dvc_ops import run_dvc
from pipelines.steps import StepContext, StepResult

LOCK_FILE = "dvc.lock"
PIPELINE_FILE = "dvc.yaml"
_RAN = re.compile(r"Running stage '([^']+)'")


def pipeline_stages(project_dir: Path) -> list[str]:
    """The stage names of ``dvc.yaml`` with ``foreach`` expanded (``train@als``), in file order."""
    out = run_dvc(["stage", "list", "--name-only"], project_dir, timeout_s=120)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def locked_outputs(project_dir: Path, stage: str) -> dict[str, str]:
    """Output path -> md5 of ``stage`` as recorded in ``dvc.lock`` (empty when it was never run)."""
    lock_path = project_dir / LOCK_FILE
    if not lock_path.is_file():
        return {}
    lock: dict[str, Any] = yaml.safe_load(lock_path.read_text(encoding="utf-8")) or {}
    entry = (lock.get("stages") or {}).get(stage) or {}
    return {str(o["path"]): str(o.get("md5", "")) for o in entry.get("outs", [])}


def stage_environment(ctx: StepContext) -> dict[str, str]:
    """Environment of the ``dvc repro`` process: the context's variables, and this interpreter's ``bin``
    first on ``PATH`` so the stage commands (``recops ...``) run from the same environment."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**ctx.environment(), "PATH": f"{bin_dir}{os.pathsep}{path}" if path else bin_dir}


def repro_stage(ctx: StepContext, stage: str, *, force: bool = False) -> StepResult:
    """Bring one DVC stage up to date through ``dvc repro --single-item`` (see the module docstring).

    Args:
        ctx: the step context; its pipeline run id and logical date reach the stage's ``recops`` process.
        stage: a stage name of ``dvc.yaml`` (``features``, ``train@als``, ``evaluate``).
        force: run it even when DVC considers it up to date (``--force``; upstream stages untouched).
    Returns:
        ``outputs``: each output path of the stage -> its md5 in ``dvc.lock``; ``info["ran"]``: whether the
        stage command ran (False: up to date, or restored from DVC's run cache).
    Raises:
        RecopsError: ``stage`` is not a stage of ``dvc.yaml``.
        pipelines.dvc_ops.DvcError: DVC or the stage command failed (its message is in the error).
    """
    project = ctx.settings.project_dir
    known = pipeline_stages(project)
    if stage not in known:
        raise RecopsError(f"{stage!r} is not a stage of {PIPELINE_FILE}; stages: {', '.join(known)}")
    args = ["repro", "--single-item", stage]
    if force:
        args.append("--force")
    out = run_dvc(args, project, env=stage_environment(ctx))
    ran = stage in _RAN.findall(out.stdout + out.stderr)
    return StepResult(step=stage, outputs=locked_outputs(project, stage), info={"ran": ran})
