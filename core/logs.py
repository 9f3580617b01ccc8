"""Logging for CLI commands (library modules only create loggers)."""

from __future__ import annotations

import logging


def setup_logging(level: str = "INFO") -> None:
    """Plain, timestamped log lines on stderr; quiet noisy libraries."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("alembic", "urllib3", "botocore", "matplotlib", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
