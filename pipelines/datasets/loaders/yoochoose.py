"""YOOCHOOSE clicks (RecSys Challenge 2015), 100k-event sample of ``session-rec``: sessions of clicks.

Input: the folder holding ``*_train_full.txt`` and ``*_test.txt`` (TSV ``SessionId ItemId Time``, Time in
unix seconds with milliseconds), or one such file. Research use only (challenge terms). Mapping:

* every row is one ``click`` event; ``item_id`` = ``ItemId``, ``session_id`` = ``SessionId``;
* there are **no user ids**: each session is its own user, ``user_id`` = ``SessionId`` (pseudonymised when a
  key is given; ``session_id`` keeps the raw SessionId, which is not a personal identifier);
* ``ts`` = ``Time`` rounded to the millisecond; ``price`` and ``quantity`` are null;
  ``event_id`` = deterministic hash (the file has one exact duplicate row, kept).

``split`` picks ``train_full`` (70,278 events), ``test`` (13,568) or ``both`` (default; the splits are
consecutive in time and share no session). The ``train_tr`` / ``train_valid`` files are a re-split of
``train_full`` and are never loaded. Catalogue: the items seen, category and brand ``"unknown"``, price null,
``in_stock`` True, ``created_at`` = first click.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

import pandas as pd

from pipelines.datasets.loaders.common import (
    DataFileError,
    LoadNotes,
    finish,
    parse_ids,
    parse_timestamps,
    read_table,
)

Split = Literal["train_full", "test", "both"]
SPLITS: Final[tuple[str, ...]] = ("train_full", "test", "both")
COLUMNS: Final = ("SessionId", "ItemId", "Time")


def split_files(folder: Path, split: str) -> list[Path]:
    """The TSV files of ``split`` in ``folder`` (``*_train_full.txt``, ``*_test.txt``), in time order."""
    if split not in SPLITS:
        raise DataFileError(f"unknown yoochoose split {split!r}: use one of {', '.join(SPLITS)}")
    names = ["train_full", "test"] if split == "both" else [split]
    files = []
    for name in names:
        matches = sorted(folder.glob(f"*_{name}.txt"))
        if len(matches) != 1:
            raise DataFileError(f"{folder}: expected exactly one *_{name}.txt file, found {len(matches)}")
        files.append(matches[0])
    return files


def load_yoochoose(
    path: Path, *, key: str | None = None, split: str = "both", notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load YOOCHOOSE clicks as schema ``(events, catalog)``.

    Args:
        path: the folder of the prepared TSVs, or one TSV file (then ``split`` is ignored).
        key: pseudonymisation key for the session-as-user ids; None keeps the raw ids.
        split: ``train_full``, ``test`` or ``both``.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: missing files or columns, or unparseable values.
    """
    path = Path(path)
    files = [path] if path.is_file() else split_files(path, split)
    frames = []
    for file in files:
        raw = read_table(file, sep="\t", columns=COLUMNS)
        session = parse_ids(raw["SessionId"], "SessionId", file)
        frames.append(
            pd.DataFrame(
                {
                    "user_id": session,
                    "item_id": parse_ids(raw["ItemId"], "ItemId", file),
                    "event_type": "click",
                    "ts": parse_timestamps(raw["Time"], "Time", file, unit="s").dt.round("ms"),
                    "session_id": session,
                }
            )
        )
    events = pd.concat(frames, ignore_index=True)
    return finish(events, None, key=key, notes=notes)
