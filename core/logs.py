"""Logging for CLI commands and the scorer (library modules only create loggers)."""

from __future__ import annotations

import logging
import logging.handlers
import threading
import time
import weakref
from collections.abc import Sequence

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


_BUFFERED: weakref.WeakSet[BufferedHandler] = weakref.WeakSet()


class BufferedHandler(logging.handlers.MemoryHandler):
    """Hands lines to ``target`` in batches: when ``capacity`` lines wait, at once for a WARNING or worse,
    and at least every ``interval_s`` (a timer thread), so a line is at most that late. On close (also at
    interpreter exit) what waits is written. Like nginx's ``access_log ... buffer= flush=``: one write per
    batch instead of one per request; a process killed with SIGKILL loses at most ``interval_s`` of lines.
    """

    def __init__(self, target: logging.Handler, capacity: int = 256, interval_s: float = 1.0) -> None:
        super().__init__(capacity, flushLevel=logging.WARNING, target=target, flushOnClose=True)
        _BUFFERED.add(self)
        self._stopped = threading.Event()
        self._timer = threading.Thread(
            target=self._flush_every, args=(interval_s,), name="recops-log-flush", daemon=True
        )
        self._timer.start()

    def _flush_every(self, interval_s: float) -> None:
        while not self._stopped.wait(interval_s):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        super().close()


def flush_buffered_logs() -> None:
    """Write every :class:`BufferedHandler`'s waiting lines now (a server's shutdown: a process that ends by
    a re-raised signal runs no exit hooks)."""
    for handler in list(_BUFFERED):
        handler.flush()


def setup_logging(level: str = "INFO", buffered: Sequence[str] = (), lean: bool = False) -> None:
    """Plain, timestamped log lines on stderr; quiet noisy libraries.

    Args:
        level: the root level.
        buffered: loggers whose lines go out in batches (:class:`BufferedHandler`, at most a second late):
            the scorer's per-request access log.
        lean: a process that logs only in :data:`FORMAT` (the scorer's workers): records skip looking up
            the calling source line, thread and process, which the format never shows (the Logging HOWTO's
            "Optimization"). Not for processes that share logging with others (an Airflow task's format
            shows the file and line).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(SecondCachedFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if lean:
        logging._srcfile = None  # documented in the Logging HOWTO, "Optimization"
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
    for name in buffered:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, BufferedHandler):
                logger.removeHandler(old)
                old.close()
        logger.addHandler(BufferedHandler(handler))
        logger.propagate = False
    for noisy in ("alembic", "urllib3", "botocore", "matplotlib", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
