"""What most commands start with: settings from the environment, params.yaml, and logging."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.params import Params
    from pipelines.settings import Settings


def command_context() -> tuple[Settings, Params]:
    """Resolve settings, read params.yaml and set up logging (call inside command bodies, not on import)."""
    from pipelines.logging_setup import setup_logging
    from pipelines.params import load_params
    from pipelines.settings import get_settings

    settings = get_settings()
    setup_logging(settings.log_level)
    return settings, load_params(settings.params_file)
