"""MovieLens 100K (RecBole atomic files) and MovieLens latest-small (2016): ratings as graded events.

Inputs: the ``movielens-100k`` folder (``ml-100k.inter`` TSV with typed header ``user_id:token ...``,
``ml-100k.item``) and the ``movielens-latest-small`` folder (``ratings.csv``, ``movies.csv``). GroupLens
licence: research use, no commercial use without permission, cite Harper & Konstan (2015).

Rating mapping (:func:`rating_to_event_type`): every rating is kept as one event (100,000 and 100,004 rows),
and its strength becomes the event type, so the pipeline's event weights rank liked films above watched
ones while the interaction itself is never dropped:

=============  ==============  ===========================================
rating         event type      reading
=============  ==============  ===========================================
>= 4           ``purchase``    liked (the usual positive threshold)
3 to 3.5       ``click``       watched, lukewarm
< 3            ``view``        watched, disliked
=============  ==============  ===========================================

The rating value itself is not kept (the schema has no rating column). ``add_to_cart`` is never produced.
``ts`` = the rating's unix time; ``price``, ``quantity`` null; ``event_id`` = deterministic hash; sessions
come from the 30-minute gap rule (people rate many films in one sitting).

Catalogue: the films that were rated; ``category`` = the film's genres joined with ``|`` in source order
(``Animation|Children's|Comedy``; "(no genres listed)" becomes ``"unknown"``), ``brand`` ``"unknown"``,
price null, ``in_stock`` True, ``created_at`` = first rating.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from pipelines.datasets.loaders.common import (
    UNKNOWN,
    DataFileError,
    LoadNotes,
    finish,
    parse_ids,
    parse_text,
    parse_timestamps,
    read_table,
)

ML100K_RATINGS: Final = "ml-100k.inter"
ML100K_ITEMS: Final = "ml-100k.item"
SMALL_RATINGS: Final = "ratings.csv"
SMALL_MOVIES: Final = "movies.csv"
PURCHASE_MIN_RATING: Final = 4.0
CLICK_MIN_RATING: Final = 3.0


def rating_to_event_type(ratings: pd.Series) -> pd.Series:
    """Map ratings to event types: >= 4 ``purchase``, >= 3 ``click``, below ``view``."""
    values = ratings.to_numpy(dtype="float64")
    types = np.where(
        values >= PURCHASE_MIN_RATING, "purchase", np.where(values >= CLICK_MIN_RATING, "click", "view")
    )
    return pd.Series(types, index=ratings.index, dtype="string")


def load_movielens_100k(
    path: Path, *, key: str | None = None, notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load MovieLens 100K (RecBole format) as schema ``(events, catalog)``.

    Args:
        path: the folder holding ``ml-100k.inter`` and ``ml-100k.item``.
        key: pseudonymisation key for user ids; None keeps the raw ids.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: a file is missing or unreadable, or holds bad values.
    """
    folder = _folder(path)
    ratings_path, items_path = folder / ML100K_RATINGS, folder / ML100K_ITEMS
    ratings = _strip_types(read_table(ratings_path, sep="\t"))
    items = _strip_types(read_table(items_path, sep="\t"))
    events = _events(ratings, ratings_path, user="user_id", item="item_id", rating="rating", ts="timestamp")
    genres = items["class"].astype("string").str.split().str.join("|") if "class" in items.columns else None
    if genres is None:
        raise DataFileError(f"{items_path}: missing column 'class' (the genres)")
    catalog = pd.DataFrame(
        {
            "item_id": parse_ids(items["item_id"], "item_id", items_path),
            "category": parse_text(genres, "class", items_path),
        }
    )
    return finish(events, _seen_only(catalog, events), key=key, notes=notes)


def load_movielens_small(
    path: Path, *, key: str | None = None, notes: LoadNotes | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load MovieLens latest-small (2016 release) as schema ``(events, catalog)``.

    Args:
        path: the folder holding ``ratings.csv`` and ``movies.csv``.
        key: pseudonymisation key for user ids; None keeps the raw ids.
        notes: receives what :func:`~pipelines.datasets.loaders.finishing.finish` did (counts), when given.

    Raises:
        DataFileError: a file is missing or unreadable, or holds bad values.
    """
    folder = _folder(path)
    ratings_path, movies_path = folder / SMALL_RATINGS, folder / SMALL_MOVIES
    ratings = read_table(ratings_path, columns=("userId", "movieId", "rating", "timestamp"))
    movies = read_table(movies_path, columns=("movieId", "genres"))
    events = _events(ratings, ratings_path, user="userId", item="movieId", rating="rating", ts="timestamp")
    genres = movies["genres"].astype("string").str.strip()
    genres = genres.mask(genres == "(no genres listed)", UNKNOWN)
    catalog = pd.DataFrame(
        {
            "item_id": parse_ids(movies["movieId"], "movieId", movies_path),
            "category": parse_text(genres, "genres", movies_path),
        }
    )
    return finish(events, _seen_only(catalog, events), key=key, notes=notes)


def _folder(path: Path) -> Path:
    path = Path(path)
    return path.parent if path.is_file() else path


def _strip_types(df: pd.DataFrame) -> pd.DataFrame:
    """RecBole headers carry types (``user_id:token``): keep the names only."""
    return df.rename(columns=lambda c: str(c).split(":", 1)[0])


def _events(df: pd.DataFrame, source: Path, *, user: str, item: str, rating: str, ts: str) -> pd.DataFrame:
    missing = [c for c in (user, item, rating, ts) if c not in df.columns]
    if missing:
        raise DataFileError(f"{source}: missing column(s) {', '.join(map(repr, missing))}")
    values = pd.to_numeric(df[rating], errors="coerce")
    bad = (values.isna() | (values < 0) | (values > 5)).to_numpy(dtype=bool)
    if bad.any():
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(bad)[:3])
        raise DataFileError(
            f"{source}: column {rating!r}: missing or out-of-range (0..5) rating(s) at row(s) {rows}"
        )
    return pd.DataFrame(
        {
            "user_id": parse_ids(df[user], user, source),
            "item_id": parse_ids(df[item], item, source),
            "event_type": rating_to_event_type(values),
            "ts": parse_timestamps(df[ts], ts, source, unit="s"),
        }
    )


def _seen_only(catalog: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    catalog = catalog.drop_duplicates("item_id")
    return catalog[catalog["item_id"].isin(events["item_id"])].reset_index(drop=True)
