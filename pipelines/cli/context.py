"""What most commands start with: settings from the environment, params.yaml, and logging."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings
    from pipelines.params import Params
    from pipelines.steps import StepContext


def command_context() -> tuple[Settings, Params]:
    """Resolve settings, read params.yaml, set up logging and the process's thread limits (call inside
    command bodies, not on import)."""
    from core.logs import setup_logging
    from core.settings import get_settings
    from models.threads import limit_threads
    from pipelines.params import load_params

    settings = get_settings()
    setup_logging(settings.log_level)
    limit_threads()  # once per process: one BLAS thread (models.threads explains why)
    return settings, load_params(settings.params_file)


def step_context(actor: str = "recops") -> StepContext:
    """The step context of this process: settings, params, and the orchestrator's run id and logical date
    when ``dvc repro`` was started by one (see :meth:`pipelines.steps.StepContext.from_environment`)."""
    from pipelines.steps import StepContext

    settings, params = command_context()
    return StepContext.from_environment(settings, params, actor=actor)
