"""Log lines: the cached-time formatter writes exactly what the standard one writes."""

from __future__ import annotations

import logging

from core.logs import FORMAT, SecondCachedFormatter


def _record(created: float, message: str = "hello") -> logging.LogRecord:
    record = logging.LogRecord("recops.access", logging.INFO, __file__, 1, message, None, None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000)
    return record


def test_lines_equal_the_standard_formatter_across_seconds() -> None:
    ours, standard = SecondCachedFormatter(FORMAT), logging.Formatter(FORMAT)
    times = [1_767_225_600.0, 1_767_225_600.25, 1_767_225_600.999, 1_767_225_601.001, 1_767_225_599.5]
    for created in times:
        record = _record(created)
        assert ours.format(record) == standard.format(_record(created))
    assert ours._cache[0] == 1_767_225_599


def test_an_explicit_date_format_is_honoured() -> None:
    ours = SecondCachedFormatter("%(asctime)s %(message)s", datefmt="%Y")
    assert ours.format(_record(1_767_225_600.0)).split()[0] in {"2025", "2026"}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_buffered_lines_go_out_in_order_at_capacity_on_warnings_and_on_close() -> None:
    from core.logs import BufferedHandler

    target = _Collect()
    buffered = BufferedHandler(target, capacity=3, interval_s=3600)
    log = _logger("recops.test.buffered", buffered)
    try:
        log.info("a")
        log.info("b")
        assert target.lines == []  # held
        log.info("c")
        assert target.lines == ["a", "b", "c"]  # capacity reached: one batch
        log.info("d")
        log.warning("w")
        assert target.lines == ["a", "b", "c", "d", "w"]  # a warning goes out at once, after what waited
        log.info("e")
    finally:
        buffered.close()
    assert target.lines[-1] == "e", "close writes what waits"


def test_buffered_lines_are_at_most_the_interval_late() -> None:
    import time

    from core.logs import BufferedHandler

    target = _Collect()
    buffered = BufferedHandler(target, capacity=1000, interval_s=0.05)
    log = _logger("recops.test.interval", buffered)
    try:
        log.info("x")
        deadline = time.monotonic() + 5
        while not target.lines and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.lines == ["x"]
    finally:
        buffered.close()


def test_flush_buffered_logs_writes_every_buffer_now() -> None:
    from core.logs import BufferedHandler, flush_buffered_logs

    target = _Collect()
    buffered = BufferedHandler(target, capacity=1000, interval_s=3600)
    log = _logger("recops.test.flush", buffered)
    try:
        log.info("before shutdown")
        assert target.lines == []
        flush_buffered_logs()
        assert target.lines == ["before shutdown"]
    finally:
        buffered.close()
