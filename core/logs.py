"""Logging for CLI commands and the scorer (library modules only create loggers)."""

from __future__ import annotations

import logging
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecondCachedFormatter(logging.Formatter):
    """:class:`logging.Formatter` that formats each second's date and time once, not once per line.

    The scorer writes an access line per request; ``time.strftime`` was a fifth of the cost of one. The
    text is the standard one (``2026-03-01 12:00:00,123`` in local time).
    """

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._cache: tuple[int, str] = (-1, "")  # (second, its text), replaced whole: thread-safe reads

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached_second, text = self._cache
        if cached_second != second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._cache = (second, text)
        msec_format = self.default_msec_format or "%s,%03d"
        return msec_format % (text, record.msecs)


def setup_logging(level: str = "INFO") -> None:
    """Plain, timestamped log lines on stderr; quiet noisy libraries."""
    handler = logging.StreamHandler()
    handler.setFormatter(SecondCachedFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("alembic", "urllib3", "botocore", "matplotlib", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
