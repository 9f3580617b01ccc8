"""Amazon Beauty as preprocessed by the BERT4Rec authors (``beauty.txt``): reviews as implicit purchases.

Input: ``beauty.txt`` (or its folder): one ``user_id item_id`` pair per line, each user's lines in
chronological order, no timestamps. Research / non-commercial use. Mapping:

* every line is one ``purchase`` event (a review is taken as evidence of a purchase; the file has no
  ratings), all 353,962 lines kept; ``price``, ``quantity`` null; ``event_id`` = deterministic hash;
* synthetic clock: a user's *k*-th line (``k`` = 0, 1, ... in file order) happens at
  :data:`ANCHOR` + ``k`` days (2014-01-01T00:00Z, 2014-01-02T00:00Z, ...). Per user, time therefore
  strictly increases in file order, so leave-last-out by ``ts`` equals leave-last-out by file order (the
  protocol of the published numbers on this file); all users start on the same day;
* no sessions in the source: sessions come from the 30-minute gap rule, which on this clock makes every
  event its own session.

Catalogue: the items seen, category and brand ``"unknown"``, price null, ``in_stock`` True,
``created_at`` = first interaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from pipelines.datasets.loaders.common import LoadNotes, finish, parse_ids, read_table

FILE_NAME: Final = "beauty.txt"
ANCHOR: Final = pd.Timestamp("2014-01-01", tz="UTC")
STEP: Final = pd.Timedelta(days=1)


def load_amazon_beauty(
    path: Path, *, key: str | None = None, notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load the BERT4Rec Beauty file as schema ``(events, catalog)`` on the synthetic clock above.

    Args:
        path: ``beauty.txt`` or the folder holding it.
        key: pseudonymisation key for user ids; None keeps the raw ids.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: the file is missing, unreadable or has lines without two fields.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE_NAME
    raw = read_table(path, sep=" ", names=("user_id", "item_id"))
    user_id = parse_ids(raw["user_id"], "user_id", path)
    item_id = parse_ids(raw["item_id"], "item_id", path)
    position = user_id.groupby(user_id.to_numpy(), sort=False).cumcount().to_numpy(dtype=np.int64)
    events = pd.DataFrame(
        {
            "user_id": user_id,
            "item_id": item_id,
            "event_type": "purchase",
            "ts": ANCHOR + pd.to_timedelta(position * STEP.value, unit="ns"),
        }
    )
    return finish(events, None, key=key, notes=notes)
