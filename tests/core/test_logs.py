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
