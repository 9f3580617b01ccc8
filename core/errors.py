"""Errors that carry a message meant for the person at the terminal (printed without a traceback)."""

from __future__ import annotations


class RecopsError(Exception):
    """Base class: bad input or a refused operation, explained in the message."""

    exit_code: int = 2
