"""The feedback loop: the scoring service's feedback becomes landing batches (:mod:`.export`).

Feedback batch ids are ``<UTC end of the window>-feedback`` (``2026-03-01T120000Z-feedback``): they sort
in time order among the daily ``YYYY-MM-DD`` batches, and :func:`is_feedback_batch` lets the gate judge
their volume against earlier feedback batches only (a feedback batch is much smaller than a day of events).

Importing this package imports nothing heavy.
"""

from __future__ import annotations

from typing import Final

#: Suffix of every feedback batch id.
FEEDBACK_BATCH_SUFFIX: Final = "-feedback"


def is_feedback_batch(batch_id: str) -> bool:
    """Whether ``batch_id`` names a batch exported from the scoring service's feedback."""
    return batch_id.endswith(FEEDBACK_BATCH_SUFFIX)
